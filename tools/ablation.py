"""Ablations on the synthetic world (`make ablation`): train and evaluate each config of
configs/ablation/ and tabulate the released metrics and the leakage measures (utils/ldl.py).

Each run goes to its config's train.out_dir; a finished run of the same training settings is
evaluated again without retraining, a partial one is resumed. Writes OUT/table.md, OUT/table.json
and, when both `full` and `no_disruption` ran, OUT/ldl_stripes.png (one val frame: image, dense
truth, the prediction without disruption, the prediction of SpaDe as released).
Engine: utils/engine/ablation.py.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, Dict, List

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # as tools/demo.py: robust on a busy CPU

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.cli import make_parser  # noqa: E402
from utils.config import ConfigError  # noqa: E402
from utils.engine.ablation import ablation_configs, run_ablation  # noqa: E402


def main(argv=None) -> List[Dict[str, Any]]:
    parser = make_parser(__doc__, """
        python tools/ablation.py                 (what `make ablation` runs: every configs/ablation/*.yaml)
        python tools/ablation.py --only full no_disruption
        python tools/ablation.py --out outputs/ablation_short train.max_steps=100
        """)
    parser.add_argument("--only", nargs="*", help="config names (file stems) to run; default all")
    parser.add_argument("--out", default="outputs/ablation", help="where table.md/.json go")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="overrides applied to every ablation, e.g. train.max_steps=100")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        paths = ablation_configs(args.only)
    except ValueError as err:
        sys.exit(f"error: {err}")
    try:                                    # bad overrides, a data.root that is not a synthetic world
        return run_ablation(paths, args.overrides, Path(args.out))
    except ConfigError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
