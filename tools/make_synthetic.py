"""Write the synthetic nuScenes-format world (docs/synthetic.md).

Render procedural street scenes into a nuScenes root that the stock devkit loads
(NuScenes('v1.0-trainval', OUT)): CAM_FRONT images (12 Hz), LIDAR_TOP (20 Hz) and RADAR_FRONT
(13 Hz) sweeps, 2 Hz key frames with annotations, plus dense truth per key image
(seg_mask/<image>.png ADE20K ids, depth_dense/<image>.png uint16 mm) and splits.json for
tools/create_infos.py --splits-file. rig=surround (configs/synthetic_world_surround.yaml) writes
all six cameras and five radars of nuScenes instead. The same seed writes the same bytes. Flags
override the config file; key=value overrides (e.g. lidar.beams=64 radar.clutter=20
world.object_density=2 camera.haze_per_m=0.02) override both."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.synthetic import generate, load_synthetic_config  # noqa: E402
from utils.cli import make_parser  # noqa: E402
from utils.config import ConfigError  # noqa: E402

EXAMPLES = """
python tools/make_synthetic.py --out data/synthetic          (the demo world: 8 scenes x 20 key frames, 225x400)
python tools/make_synthetic.py --out data/synthetic_hd --height 900 --width 1600 --scenes 4 \\
    --samples-per-scene 40 --seed 7 lidar.beams=64 radar.clutter=20
python tools/make_synthetic.py --config configs/synthetic_world_surround.yaml --out data/synthetic_surround
"""
FLAGS = {"scenes": "scenes", "samples_per_scene": "samples_per_scene", "height": "camera.height",
         "width": "camera.width", "seed": "seed", "workers": "workers"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = make_parser(__doc__, EXAMPLES)
    parser.add_argument("--out", required=True, help="root folder to write (created if missing)")
    parser.add_argument("--config", default=None,
                        help="YAML of knobs (default: built-in defaults = configs/synthetic_world.yaml)")
    parser.add_argument("--scenes", type=int, default=None, help="number of scenes (default 8)")
    parser.add_argument("--samples-per-scene", type=int, default=None,
                        help="2 Hz key frames per scene (default 20)")
    parser.add_argument("--height", type=int, default=None, help="image height in pixels (default 225)")
    parser.add_argument("--width", type=int, default=None, help="image width in pixels (default 400)")
    parser.add_argument("--seed", type=int, default=None, help="world seed (default 0)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default 2)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a world already in --out (only the generator's own outputs)")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    values: dict = {}
    for flag, key in FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            node = values
            *parents, leaf = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
    try:
        cfg = load_synthetic_config(args.config, args.overrides, values)
    except ConfigError as err:
        sys.exit(f"error: {err}")
    start = time.perf_counter()
    try:
        root = generate(cfg, Path(args.out), overwrite=args.overwrite)
    except FileExistsError as err:
        sys.exit(f"error: {err}")
    frames = cfg.scenes * cfg.samples_per_scene
    seconds = time.perf_counter() - start
    print(f"{root}: {cfg.scenes} scenes, {frames} key frames ({cfg.rig} rig) at "
          f"{cfg.camera.height}x{cfg.camera.width} "
          f"in {seconds:.1f} s ({frames / seconds:.2f} key frames/s incl. sweeps)")


if __name__ == "__main__":
    main()
