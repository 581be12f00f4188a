"""Surround view: a network trained on CAM_FRONT only vs one trained on all six cameras, each scored
per camera on the surround val split (README "Surround view"; engine utils/engine/surround.py).

Arms: configs/surround/front_only.yaml and all_cameras.yaml (radar input from all five radars in
both). On the synthetic surround world (configs/synthetic_world_surround.yaml, generated into
data/synthetic_surround on first use) by default; on nuScenes with data.root / infos overrides.
Each arm x seed trains in OUT/runs/<arm>/seed<N>; a finished run is only evaluated, a partial one
resumed. Writes OUT/table.md and OUT/table.json.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, Dict, List

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # as tools/demo.py: robust on a busy CPU

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.cli import make_parser, positive_int  # noqa: E402
from utils.config import ConfigError  # noqa: E402
from utils.engine.surround import ARMS, run_surround  # noqa: E402


def main(argv=None) -> List[Dict[str, Any]]:
    parser = make_parser(__doc__, """
        python tools/surround.py --jobs 2                 (both arms, 2 seeds, 2 runs at a time)
        python tools/surround.py --seeds 3 train.max_steps=1000
        python tools/surround.py --out outputs/surround_nuscenes data.root=data/nuscenes \\
            data.train_infos=data/nuscenes_radar_5sweeps_infos_train.pkl \\
            data.val_infos=data/nuscenes_radar_5sweeps_infos_val.pkl data.height=900 data.width=1600
        """)
    parser.add_argument("--seeds", type=positive_int, default=2, help="seeds per arm: train.seed = 0 .. N-1")
    parser.add_argument("--arms", nargs="*", default=list(ARMS), choices=ARMS,
                        help="arms to run (default both; the gap compares the last to the first)")
    parser.add_argument("--out", default="outputs/surround", help="runs and table.md/.json")
    parser.add_argument("--jobs", type=positive_int, default=1,
                        help="runs trained at once, each in its own process with cpu_count/jobs threads")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="overrides of every run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        return run_surround(args.seeds, Path(args.out), args.overrides, args.jobs, args.arms)
    except ConfigError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
