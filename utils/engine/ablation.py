"""The ablations (`make ablation`, tools/ablation.py): each config of configs/ablation/ trained with
the demo's budget and evaluated with the leakage measures that only dense truth allows; the table
(utils/engine/tables.py) and the LiDAR-stripes picture.

    rows = run_ablation(ablation_configs(["full", "no_disruption"]), [], Path("outputs/ablation"))
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import yaml

from datasets.build import build_dataset
from models import SpaDe
from utils.config import Config, load_config
from utils.engine.evaluate import NULL_REASONS, evaluate, format_table, model_predictor
from utils.engine.evaluators import evaluators_for
from utils.engine.runs import REPO, ensure_world, sample_depth_m, trained_model
from utils.engine.tables import ablation_markdown
from utils.files import write_png
from utils.jsonio import dumps
from utils.visualize import depth_tile, image_bgr, model_line, panel

ABLATIONS = REPO / "configs" / "ablation"


def ablation_configs(only: Optional[Sequence[str]] = None) -> List[Path]:
    """configs/ablation/*.yaml, `full` first; `only` picks names (file stems), an unknown one
    raising ValueError that lists the choices."""
    paths = sorted(ABLATIONS.glob("*.yaml"), key=lambda p: (p.stem != "full", p.stem))
    unknown = set(only or ()) - {p.stem for p in paths}
    if unknown:
        raise ValueError(f"no configs/ablation/{'/'.join(sorted(unknown))}.yaml; choose from "
                         f"{', '.join(p.stem for p in paths)}")
    return [p for p in paths if not only or p.stem in only]


def changes(path: Path) -> str:
    """The settings an ablation config sets beyond its base (out_dir left out), as text."""
    data = yaml.safe_load(path.read_text()) or {}
    data.pop("base", None)
    data.get("train", {}).pop("out_dir", None)
    items = [f"{section}.{k}={v}" for section, values in data.items() for k, v in (values or {}).items()]
    return ", ".join(items) or "(as released)"


def run_one(path: Path, overrides: Sequence[str]) -> Dict[str, Any]:
    """Train (unless finished) and evaluate one ablation config."""
    cfg = load_config(path, overrides)
    ensure_world(cfg)
    model = trained_model(cfg)
    summary = evaluate(model_predictor(model, cfg.eval.optimized),
                       build_dataset(cfg, "val"),
                       evaluators_for(cfg.data.root, cfg.eval.ranges_m), batch_size=cfg.eval.batch_size,
                       device=next(model.parameters()).device, num_workers=cfg.data.num_workers,
                       desc=path.stem)["summary"]
    print(format_table(summary, title=f"== {path.stem}"))
    return {"name": path.stem, "changes": changes(path), "summary": summary}


def stripes_tiles(cfgs: Dict[str, Config], models: Dict[str, SpaDe]) -> Tuple[List[Tuple[str, np.ndarray]], str]:
    """(captioned tiles, heading) of the middle val frame for the `full` and `no_disruption`
    configs and their models: image, dense truth, the `no_disruption` prediction (LiDAR rings
    copied into the depth) and the `full` one (SpaDe as released). Depth scales end at the
    largest eval range and say so ("80+ m"); the heading names the models' budget (`model_line`)
    and the frame."""
    full = cfgs["full"]
    val_set = build_dataset(full, "val")
    sample = val_set[len(val_set) // 2]
    vmax = float(max(full.eval.ranges_m))
    tiles = [("image", image_bgr(sample["img"])),
             ("dense truth (m)", depth_tile(sample["dense_depth"], vmax, clipped=True))]
    for name, caption in (("no_disruption", "prediction (m), no disruption"),
                          ("full", "prediction (m), SpaDe as released")):
        tiles.append((caption, depth_tile(sample_depth_m(models[name], sample), vmax, clipped=True)))
    device = next(models["full"].parameters()).device
    return tiles, f"Models: {model_line(full, device)}, one per config\nval frame {sample['name']}"


def stripes_picture(overrides: Sequence[str]) -> np.ndarray:
    """BGR panel of `stripes_tiles` with the trained `full` and `no_disruption` models."""
    cfgs = {name: load_config(ABLATIONS / f"{name}.yaml", overrides) for name in ("full", "no_disruption")}
    tiles, heading = stripes_tiles(cfgs, {name: trained_model(cfg) for name, cfg in cfgs.items()})
    return panel(tiles, columns=2, heading=heading)


def run_ablation(paths: Sequence[Path], overrides: Sequence[str], out: Path) -> List[Dict[str, Any]]:
    """Run the ablation configs `paths`; write out/table.md, out/table.json and, when both
    `full` and `no_disruption` ran, out/ldl_stripes.png. Returns the rows."""
    rows = [run_one(p, overrides) for p in paths]
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.json").write_text(dumps(rows, indent=2, reasons=NULL_REASONS) + "\n")
    (out / "table.md").write_text(ablation_markdown(rows))
    print(ablation_markdown(rows))
    if {"full", "no_disruption"} <= {row["name"] for row in rows}:
        write_png(out / "ldl_stripes.png", stripes_picture(overrides))
    return rows
