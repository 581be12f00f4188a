"""Measure what the LiDAR occlusion filter removes for several radii (the data behind the default
data.occlusion_radius_px, docs/data.md): for the in-canvas LiDAR points (0 < z < data.max_depth_m)
of the first --frames samples, the spacing of neighbouring projected points (px) and, per radius,
the share of points the filter drops (data.occlusion_rel_threshold)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.cli import make_parser  # noqa: E402

EXAMPLES = """
python tools/occlusion_radius.py --data-root data/nuscenes --infos data/nuscenes_radar_5sweeps_infos_val.pkl
python tools/occlusion_radius.py --data-root data/synthetic --infos data/synthetic/nuscenes_radar_5sweeps_infos_val.pkl \\
    --radii 4 8 10 12 16 --frames 10
"""


def parse_args(argv=None) -> argparse.Namespace:
    parser = make_parser(__doc__, EXAMPLES)
    parser.add_argument("--data-root", required=True, help="nuScenes root holding samples/")
    parser.add_argument("--infos", required=True, help="info file made by tools/create_infos.py")
    parser.add_argument("--radii", type=float, nargs="+", default=[2, 4, 6, 8, 10, 12, 16, 20],
                        help="radii in pixels at 1600 px image width")
    parser.add_argument("--frames", type=int, default=40, help="samples to use")
    parser.add_argument("overrides", nargs="*", help="config overrides key=value")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    import numpy as np
    from scipy.spatial import cKDTree
    from tqdm import tqdm

    from datasets.build import build_dataset
    from datasets.occlusion import occlusion_keep, scaled_radius_px
    from utils.config import ConfigError, load_config

    try:
        cfg = load_config(None, args.overrides)
    except ConfigError as err:
        sys.exit(f"error: {err}")
    dataset = build_dataset(cfg, "val", infos=args.infos, data_root=args.data_root)
    spacing, dropped, total = [], np.zeros(len(args.radii)), 0
    for index in tqdm(range(min(args.frames, len(dataset))), desc="frames"):
        frame = dataset.load_frame(index)
        u, v, z = frame.lidar_uvz
        near = (z > 0) & (z < cfg.data.max_depth_m)
        u, v, z = u[near], v[near], z[near]
        width_scale = scaled_radius_px(1.0, frame.img.shape[1])
        spacing.append(cKDTree(np.stack([u, v], 1)).query(np.stack([u, v], 1), k=2)[0][:, 1] / width_scale)
        total += len(z)
        for j, radius in enumerate(args.radii):
            keep = occlusion_keep(u, v, z, radius * width_scale, cfg.data.occlusion_rel_threshold)
            dropped[j] += np.count_nonzero(~keep)
    p10, p50, p90 = np.percentile(np.concatenate(spacing), [10, 50, 90])
    print(f"{total / (index + 1):.0f} LiDAR points per frame; nearest projected neighbour "
          f"(px at 1600 wide): p10 {p10:.1f}, median {p50:.1f}, p90 {p90:.1f}")
    print(f"{'radius px':>9}  {'dropped':>8}")
    for radius, n in zip(args.radii, dropped):
        print(f"{radius:>9g}  {100 * n / total:>7.2f}%")


if __name__ == "__main__":
    main()
