"""Does sparse beat dense? SpaDe trained on single-sweep LiDAR, on dense labels built as prior
work builds them, on the exact truth, and with multi-sweep radar, several seeds each (docs/science.md).

Rows: configs/science/rows.yaml. For each row that trains on accumulated labels, the labels of the
train and val key frames are built first (tools/make_dense_labels.py, into <data.root>/dense_labels/
<preset>; built once, reused). Each row x seed trains in OUT/runs/<row>/seed<N> (train.seed=N; a
finished run is only evaluated, a partial one resumed) and is evaluated on data.val_infos. key=value
overrides apply to every run (train.max_steps=100 for a shorter budget). Writes OUT/table.md (the
table, the gaps that are beyond or within seed noise, on nuScenes the paper's numbers beside ours),
OUT/table.json and OUT/labels_and_predictions.png (one val frame: single-sweep label, accumulated
label, exact truth, predictions of sparse- and dense-trained models). On nuScenes
(--base configs/spade_nuscenes.yaml data.root=...) rows needing the exact truth are skipped.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, Dict, List

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # as tools/demo.py: robust on a busy CPU

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from utils.cli import make_parser, positive_int  # noqa: E402
from utils.config import ConfigError  # noqa: E402
from utils.engine.science import run_science, science_rows  # noqa: E402


def main(argv=None) -> List[Dict[str, Any]]:
    parser = make_parser(__doc__, """
        python tools/science.py --jobs 2             (what `make science` runs: every row, 3 seeds)
        python tools/science.py --rows sparse_released dense_accum_boxes --seeds 5 train.max_steps=1000
        python tools/science.py --base configs/spade_nuscenes.yaml --label-workers 16 --out outputs/science_nuscenes \\
            data.root=data/nuscenes data.train_infos=data/nuscenes_radar_5sweeps_infos_train.pkl \\
            data.val_infos=data/nuscenes_radar_5sweeps_infos_val.pkl
        """)
    parser.add_argument("--base", default=str(REPO / "configs" / "synthetic_demo.yaml"),
                        help="base config of every row (configs/spade_nuscenes.yaml for nuScenes)")
    parser.add_argument("--rows", nargs="*", help="rows of configs/science/rows.yaml to run (default all)")
    parser.add_argument("--seeds", type=positive_int, default=3, help="seeds per row: train.seed = 0 .. N-1")
    parser.add_argument("--out", default="outputs/science", help="runs, table.md/.json and the picture")
    parser.add_argument("--version", default="v1.0-trainval", help="nuScenes table folder for the labels")
    parser.add_argument("--jobs", type=positive_int, default=1,
                        help="runs trained at once, each in its own process with cpu_count/jobs "
                             "threads (2 on a 2-core CPU: 1.84x the throughput; console in <run>/console.log)")
    parser.add_argument("--label-workers", type=int, default=1, help="processes building labels")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="overrides of every run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        science_rows(args.rows)
    except ValueError as err:
        sys.exit(f"error: {err}")
    try:                                    # bad overrides, a data.root that is not a synthetic world
        return run_science(Path(args.base), args.rows, args.seeds, Path(args.out), args.overrides,
                           args.version, args.label_workers, args.jobs)
    except ConfigError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
