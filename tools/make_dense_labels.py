"""Dense training labels as prior work builds them, for the key frames of an info file.

Accumulates the LiDAR sweeps around each key frame (datasets/dense_labels.py; presets in
configs/dense_labels/, key=value overrides any recipe key) into the image of each --cameras camera
(default CAM_FRONT; `all`: the six, as data.cameras=all) and writes <root>/<label dir>/<image>.png
(uint16 mm, 0 = no label; atomic), <label dir>/recipe.yaml (the recipe; a folder built with
another recipe is refused) and <label dir>/frames.jsonl (a line per frame: sweeps used and why any
are missing, point and pixel counts, and where the root has the exact truth depth_dense/, the
label's error against it). Resumable: frames already listed with their PNG are skipped. Where
sweeps are missing (not on disk, or the chain ends) the frame uses what exists and says so.
Train on the labels with data.label_kind=depth_png data.label_dir=<label dir> (docs/science.md).
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.infos import CAMERA, CAMERAS  # noqa: E402
from datasets.label_builder import LabelBuildError, build_labels  # noqa: E402
from utils.cli import make_parser  # noqa: E402


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    parser = make_parser(__doc__, """
        python tools/make_dense_labels.py --data-root data/synthetic \\
            --infos data/synthetic/nuscenes_radar_5sweeps_infos_train.pkl --preset accum_boxes
        python tools/make_dense_labels.py --data-root data/nuscenes --infos data/nuscenes_radar_5sweeps_infos_train.pkl \\
            --preset accum_static --workers 8 sweeps_before=5 sweeps_after=5
        python tools/make_dense_labels.py --data-root data/nuscenes --infos data/nuscenes_radar_5sweeps_infos_train.pkl \\
            --preset accum_boxes --cameras all
        """)
    parser.add_argument("--data-root", required=True, help="nuScenes-format root (tables, samples/, sweeps/)")
    parser.add_argument("--infos", required=True, help="info file whose key frames get labels")
    parser.add_argument("--preset", required=True, help="configs/dense_labels/<NAME>.yaml or a YAML path")
    parser.add_argument("--label-dir", help="folder under the data root (default: dense_labels/<preset>)")
    parser.add_argument("--version", default="v1.0-trainval", help="table folder")
    parser.add_argument("--cameras", nargs="+", default=[CAMERA], choices=("all", *CAMERAS), metavar="CAMERA",
                        help="the cameras whose images get labels (as data.cameras); `all`: the six; "
                             "give it after any key=value override")
    parser.add_argument("--workers", type=int, default=1, help="processes building labels")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    try:
        return build_labels(args.data_root, args.infos, args.preset, args.label_dir, args.version,
                            args.workers, args.overrides, progress=not args.no_progress,
                            cameras=CAMERAS if "all" in args.cameras else args.cameras)
    except (LabelBuildError, ValueError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
