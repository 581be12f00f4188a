"""Write ADE20K-150 semantic masks (seg_mask/<image basename>.png) for the images of the chosen
cameras (default CAM_FRONT) of an info file, with a Hugging Face segmenter. See docs/tools.md,
section "Semantic masks"."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.infos import CAMERA, CAMERAS, InfoFileError  # noqa: E402
from datasets.workers import error_message  # noqa: E402
from utils.cli import make_parser  # noqa: E402
from utils.deps import MissingDependencyError  # noqa: E402
from datasets.seg_masks import (DEFAULT_MODEL, MIT_SIZES, SegMaskError,  # noqa: E402
                             build_random_segformer, camera_images, generate_masks,
                             load_segmenter, require_images, resolve_device)


EXAMPLES = """
python tools/gen_seg_masks.py --data-root data/nuscenes --infos data/nuscenes_radar_5sweeps_infos_train.pkl
python tools/gen_seg_masks.py --data-root data/nuscenes --infos data/nuscenes_radar_5sweeps_infos_train.pkl \\
    --cameras all      (the six cameras, for training with data.cameras=all)
python tools/gen_seg_masks.py --data-root data/nuscenes --infos data/nuscenes_radar_5sweeps_infos_val.pkl \\
    --model /models/segformer-b5-ade --device cuda --batch-size 16
python tools/gen_seg_masks.py --data-root data/synthetic --infos data/synthetic/nuscenes_radar_5sweeps_infos_val.pkl \\
    --out-dir /tmp/masks --random-init --config-size b0      (no download: meaningless masks, for timing)
"""


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = make_parser(
        "Write <out-dir>/<image basename>.png (8-bit, ADE20K-150 class id 0..149 per pixel, same size "
        "as the image) for every image of the --cameras of an info file. Existing masks are skipped, so an "
        "interrupted run resumes where it stopped. Needs the masks extra: pip install -e \".[masks]\".",
        EXAMPLES)
    parser.add_argument("--data-root", required=True, type=Path,
                        help="nuScenes root; image paths resolve to <data-root>/samples/...")
    parser.add_argument("--infos", required=True, type=Path,
                        help="info pickle (list of dicts with cam_infos.<camera>.filename)")
    parser.add_argument("--cameras", nargs="+", default=[CAMERA], choices=("all", *CAMERAS),
                        metavar="CAMERA", help="the cameras whose images get masks (as data.cameras "
                                               "of the training config); `all`: the six")
    parser.add_argument("--out-dir", type=Path, help="output folder (default <data-root>/seg_mask)")
    parser.add_argument("--model", help=f"Hugging Face id or save_pretrained folder of an ADE20K "
                                        f"semantic-segmentation model (default {DEFAULT_MODEL})")
    parser.add_argument("--batch-size", type=int, default=4, help="images per forward pass")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (GPU when present)")
    parser.add_argument("--workers", type=int, default=2, help="image-decoding processes")
    parser.add_argument("--random-init", action="store_true",
                        help="SegFormer with random weights, no download (meaningless masks: for "
                             "tests and timing)")
    parser.add_argument("--config-size", choices=sorted(MIT_SIZES),
                        help="MiT size of the --random-init model (default b5, the architecture "
                             "of the default checkpoint)")
    args = parser.parse_args(argv)
    if args.random_init and args.model:
        parser.error("--random-init builds its own model; drop --model")
    if args.config_size and not args.random_init:
        parser.error("--config-size applies to --random-init only")
    return args


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    try:
        images = camera_images(args.infos, args.data_root,
                               CAMERAS if "all" in args.cameras else args.cameras)
        require_images(images)                      # fail before loading a model
        device = resolve_device(args.device)
        segmenter = (build_random_segformer(args.config_size or "b5") if args.random_init
                     else load_segmenter(args.model or DEFAULT_MODEL))
        counts = generate_masks(images, args.out_dir or args.data_root / "seg_mask",
                                segmenter.to(device), batch_size=args.batch_size,
                                workers=args.workers)
    except (SegMaskError, MissingDependencyError, InfoFileError, OSError) as err:   # OSError: DataFileError
        sys.exit(f"error: {error_message(err)}")
    print(f"{counts['written']} masks written, {counts['skipped']} already present")


if __name__ == "__main__":
    main()
