"""Ablations on the synthetic world (`make ablation`): train and evaluate each config of
configs/ablation/ and tabulate the released metrics and the leakage measures (utils/ldl.py).

    python tools/ablation.py [--only full no_mask_loss] [--out outputs/ablation] [key=value ...]

Each run goes to its config's train.out_dir; a finished run of the same training settings is
evaluated again without retraining, a partial one is resumed. Writes OUT/table.md, OUT/table.json
and, when both `full` and `no_disruption` ran, OUT/ldl_stripes.png (one val frame: image, dense
truth, the prediction without disruption, the prediction of SpaDe as released).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Dict, List

import yaml

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # as tools/demo.py: robust on a busy CPU

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from datasets.nuscenes_dataset import RadarCameraDataset  # noqa: E402
from tools.demo import ensure_world, trained_model  # noqa: E402
from utils.cli import make_parser  # noqa: E402
from utils.config import load_config  # noqa: E402
from utils.evaluate import evaluate, format_table, model_predictor  # noqa: E402
from utils.visualize import depth_tile, image_bgr, panel, write_png  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ABLATIONS = REPO / "configs" / "ablation"
log = logging.getLogger("ablation")


def changes(path: Path) -> str:
    """The settings an ablation config sets beyond its base (out_dir left out), as text."""
    data = yaml.safe_load(path.read_text()) or {}
    data.pop("base", None)
    data.get("train", {}).pop("out_dir", None)
    items = [f"{section}.{k}={v}" for section, values in data.items() for k, v in (values or {}).items()]
    return ", ".join(items) or "(as released)"


def run_one(path: Path, overrides: List[str]) -> Dict[str, Any]:
    cfg = load_config(path, overrides)
    ensure_world(cfg)
    model = trained_model(cfg)
    summary = evaluate(model_predictor(model, cfg.eval.optimized),
                       RadarCameraDataset(cfg, cfg.data.val_infos, mode="eval"),
                       batch_size=cfg.eval.batch_size, ranges_m=cfg.eval.ranges_m,
                       device=next(model.parameters()).device, num_workers=cfg.data.num_workers,
                       desc=path.stem)["summary"]
    print(format_table(summary, title=f"== {path.stem}"))
    return {"name": path.stem, "changes": changes(path), "summary": summary}


def table_markdown(rows: List[Dict[str, Any]]) -> str:
    ranges = list(rows[0]["summary"]["mae_mm"])
    far = ranges[-1]
    head = (["ablation", "changes"] + [f"MAE 0-{r} m" for r in ranges] + [f"RMSE 0-{far} m",
            f"dense MAE 0-{far} m", "MAE on LiDAR px", "MAE elsewhere", "ratio", "stripe index"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        s = row["summary"]
        ldl, dense = s.get("ldl", {}), s.get("dense", {}).get("mae_mm", {})
        cells = ([row["name"], row["changes"]] + [f"{s['mae_mm'][r]:.0f}" for r in ranges]
                 + [f"{s['rmse_mm'][far]:.0f}", f"{dense.get(far, float('nan')):.0f}",
                    f"{ldl.get('mae_hit_mm', float('nan')):.0f}",
                    f"{ldl.get('mae_miss_mm', float('nan')):.0f}",
                    f"{ldl.get('miss_hit_ratio', float('nan')):.2f}",
                    f"{ldl.get('stripe_index', float('nan')):.2f}"])
        lines.append("| " + " | ".join(cells) + " |")
    return ("Errors in mm on the synthetic val split (LiDAR ground truth unless 'dense'); leakage "
            "measures of utils/ldl.py against the dense truth (ratio = elsewhere / on LiDAR "
            "pixels; stripe index 1 = the truth's vertical/horizontal gradient balance).\n\n"
            + "\n".join(lines) + "\n")


def stripes_picture(overrides: List[str]):
    """BGR panel of the middle val frame: image, dense truth, the `no_disruption` prediction
    (LiDAR rings copied into the depth) and the `full` one (SpaDe as released)."""
    cfgs = {name: load_config(ABLATIONS / f"{name}.yaml", overrides) for name in ("full", "no_disruption")}
    val_set = RadarCameraDataset(cfgs["full"], cfgs["full"].data.val_infos, mode="eval")
    sample = val_set[len(val_set) // 2]
    vmax = float(max(cfgs["full"].eval.ranges_m))
    tiles = [("image", image_bgr(sample["img"])), ("dense truth (m)", depth_tile(sample["dense_depth"], vmax))]
    for name, caption in (("no_disruption", "no disruption (m)"), ("full", "SpaDe as released (m)")):
        model = trained_model(cfgs[name])
        device = next(model.parameters()).device
        x = {k: torch.as_tensor(sample[k])[None].to(device) for k in ("img", "radar_map", "radar_pts", "radar_count")}
        with torch.inference_mode():
            tiles.append((caption, depth_tile(model.predict(x["img"], x["radar_map"], x["radar_pts"],
                                                          x["radar_count"])[0, 0], vmax)))
    return panel(tiles, columns=2)


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
    paths = sorted(ABLATIONS.glob("*.yaml"), key=lambda p: (p.stem != "full", p.stem))
    if args.only:
        unknown = set(args.only) - {p.stem for p in paths}
        if unknown:
            sys.exit(f"error: no configs/ablation/{'/'.join(sorted(unknown))}.yaml; "
                     f"choose from {', '.join(p.stem for p in paths)}")
        paths = [p for p in paths if p.stem in args.only]
    rows = [run_one(p, args.overrides) for p in paths]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out / "table.md").write_text(table_markdown(rows))
    print(table_markdown(rows))
    if {"full", "no_disruption"} <= {row["name"] for row in rows}:
        write_png(out / "ldl_stripes.png", stripes_picture(args.overrides))
    return rows


if __name__ == "__main__":
    main()
