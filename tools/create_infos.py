"""Write the info files (nuscenes_radar_5sweeps_infos_<split>.pkl) of a nuScenes root.

Index a nuScenes root into one pickle per split: per sample every camera, the LiDAR and every
radar channel (radar: key frame + 4 previous sweeps when on disk), with calibration and ego
poses. Splits: the devkit's official scene splits (v1.0-trainval -> train, val; v1.0-test ->
test; v1.0-mini -> mini_train, mini_val) or those of --splits-file. See docs/data.md."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.cli import make_parser  # noqa: E402

from datasets.infos import (VERSION_SPLITS, create_infos, infos_filename, load_nuscenes,  # noqa: E402
                            save_infos, split_scenes)


EXAMPLES = """
python tools/create_infos.py --data-root data/nuscenes --version v1.0-trainval --out-dir data/
python tools/create_infos.py --data-root data/synthetic --splits-file data/synthetic/splits.json --out-dir data/synthetic
"""


def parse_args(argv=None) -> argparse.Namespace:
    parser = make_parser(__doc__, EXAMPLES)
    parser.add_argument("--data-root", required=True, help="nuScenes root holding samples/, sweeps/, v1.0-*/")
    parser.add_argument("--version", default="v1.0-trainval", choices=sorted(VERSION_SPLITS),
                        help="table set to load")
    parser.add_argument("--out-dir", default="data", help="where the .pkl files go")
    parser.add_argument("--splits-file", default=None,
                        help='JSON {"train": [scene names], "val": [...], "test": [...]} replacing the '
                             "official splits (e.g. the synthetic world's splits.json)")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        nusc = load_nuscenes(args.data_root, args.version)
        infos = create_infos(nusc, split_scenes(args.version, args.splits_file),
                             require_scenes=args.splits_file is not None)
    except (OSError, ValueError) as error:      # DataFileError (tables), splits, scene names
        sys.exit(f"error: {error}")
    for split, records in infos.items():
        path = Path(args.out_dir) / infos_filename(split)
        save_infos(records, path)
        short = sum(bool(r["radar_sweeps_short"]) for r in records)
        print(f"{path}: {len(records)} records ({short} with fewer than 5 radar sweeps on disk)")


if __name__ == "__main__":
    main()
