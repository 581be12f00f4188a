"""Front-only vs all-six cameras (tools/surround.py, README "Surround view"): one network trained on
CAM_FRONT images only and one trained on all six cameras (same recipe, radar input from all five
radars, several seeds each), both scored on every camera of the surround val split.

    results = run_surround(seeds=2, out=Path("outputs/surround"), jobs=2)

Arms: configs/surround/<arm>.yaml. Each arm x seed trains in OUT/runs/<arm>/seed<N> (train.seed=N; a
finished run is only evaluated, a partial one resumed) and is scored with data.cameras = all six
(its own data.radars), the released protocol per camera and pooled (utils/engine/evaluate.py).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Dict, List, Sequence

from utils.config import NUSCENES_CAMERAS, Config, apply_mapping, load_config
from utils.engine.evaluate import NULL_REASONS
from utils.engine.runs import REPO, SURROUND_WORLD_CONFIG, ensure_world, train_in_parallel
from utils.engine.science import evaluated_run
from utils.engine.tables import surround_markdown
from utils.jsonio import dumps

ARMS = ("front_only", "all_cameras")
CONFIGS = REPO / "configs" / "surround"


def arm_config(arm: str, overrides: Sequence[str], seed: int, out: Path) -> Config:
    """configs/surround/<arm>.yaml <- the overrides <- this seed and its run folder."""
    cfg = load_config(CONFIGS / f"{arm}.yaml", overrides)
    apply_mapping(cfg, {"train": {"seed": seed, "out_dir": str(out / "runs" / arm / f"seed{seed}")}})
    return cfg


def all_cameras(cfg: Config) -> Config:
    """`cfg` scoring every camera (its radars, data and eval settings otherwise)."""
    scored = copy.deepcopy(cfg)
    scored.data.cameras = list(NUSCENES_CAMERAS)
    return scored


def run_surround(seeds: int, out: Path, overrides: Sequence[str] = (), jobs: int = 1,
                 arms: Sequence[str] = ARMS) -> List[Dict[str, Any]]:
    """Train (unless finished) and score every arm x seed; write out/table.md and out/table.json.
    Returns [{"name": arm, "cameras": the cameras it trained on, "runs": [summary per seed]}]."""
    planned = {arm: [arm_config(arm, overrides, seed, out) for seed in range(seeds)] for arm in arms}
    first = next(iter(planned.values()))[0]
    if Path(first.data.root).resolve() == (REPO / "data" / "synthetic_surround").resolve():
        ensure_world(first, SURROUND_WORLD_CONFIG)
    if jobs > 1:
        train_in_parallel([cfg for cfgs in planned.values() for cfg in cfgs], jobs)
    results = []
    for arm, cfgs in planned.items():
        runs = [evaluated_run(cfg, all_cameras(cfg))[0] for cfg in cfgs]
        results.append({"name": arm, "cameras": cfgs[0].data.cameras, "radars": cfgs[0].data.radars,
                        "seeds": seeds, "max_steps": cfgs[0].train.max_steps, "runs": runs})
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.json").write_text(dumps(results, indent=2, reasons=NULL_REASONS) + "\n")
    text = surround_markdown(results)
    (out / "table.md").write_text(text)
    print(text)
    return results
