"""The main job end to end on the synthetic world (`make demo`): data, training, evaluation.

1. the synthetic default world in data.root (generated unless present and complete),
2. its info files (tools/create_infos.py with the world's splits.json),
3. SpaDe trained per the config (one process; skipped when train.out_dir already holds the
   finished run of the same training settings, resumed when it holds part of it),
4. evaluation on the val split of the model and of two baselines (models/baselines.py),
5. OUT/metrics.json (`model`, `baseline_radar`, `baseline_row_median`, each with mae_mm / rmse_mm
   per range, dense-truth and leakage measures) and OUT/panel.png.
Engine: utils/engine/demo.py.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict

# Idle OpenMP threads sleep instead of spinning: on a busy machine a spinning thread whose peer
# was descheduled burns the core the peer needs (steps measured 2-20x slower). Set before torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from utils.cli import make_parser  # noqa: E402
from utils.config import ConfigError, load_config  # noqa: E402
from utils.engine.demo import run_demo, verdict  # noqa: E402


def main(argv=None) -> Dict[str, Any]:
    parser = make_parser(__doc__, """
        python tools/demo.py                     (what `make demo` runs)
        python tools/demo.py --out outputs/demo_long train.max_steps=1000 train.out_dir=outputs/demo_long/run
        """)
    parser.add_argument("--config", default=str(REPO / "configs" / "synthetic_demo.yaml"),
                        help="config of the run")
    parser.add_argument("--out", default="outputs/demo", help="metrics.json and panel.png go here")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    start = time.perf_counter()
    out = Path(args.out)
    try:                                    # bad overrides, a data.root that is not a synthetic world
        metrics = run_demo(load_config(args.config, args.overrides), out,
                           {"config": args.config, "overrides": args.overrides})
    except ConfigError as err:
        sys.exit(f"error: {err}")
    print(verdict(metrics))
    print(f"wrote {out / 'metrics.json'} and {out / 'panel.png'} in {time.perf_counter() - start:.0f} s")
    return metrics


if __name__ == "__main__":
    main()
