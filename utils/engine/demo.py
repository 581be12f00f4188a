"""The main job (`make demo`, tools/demo.py): the synthetic world, SpaDe trained per the config,
and its evaluation on the val split beside two non-learned baselines (models/baselines.py).

    metrics = run_demo(load_config("configs/synthetic_demo.yaml"), Path("outputs/demo"))

Writes out/metrics.json (`model`, `baseline_radar`, `baseline_row_median`: each the evaluation
summary, with mae_mm / rmse_mm per range, dense-truth and leakage measures; `meta`: timings;
undefined values null, with their reasons under `nulls`: utils/jsonio.py) and out/panel.png.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict

import numpy as np

from datasets.build import build_dataset
from models import SpaDe
from models.baselines import RadarColumnDepth, RowMedianDepth
from utils.config import Config
from utils.engine.evaluate import NULL_REASONS, evaluate, format_table, model_predictor
from utils.engine.evaluators import evaluators_for
from utils.engine.runs import ensure_world, sample_depth_m, trained_model
from utils.files import write_png
from utils.jsonio import write_json
from utils.visualize import depth_tile, error_tile, image_bgr, model_line, panel

BASELINES = ("baseline_radar", "baseline_row_median")


def fit_row_median(cfg: Config) -> RowMedianDepth:
    """Per-row median of the training set's LiDAR (eval-mode maps: native size, no filters)."""
    train_set = build_dataset(cfg, "train", mode="eval")
    first = train_set[0]["lidar_map"]
    model = RowMedianDepth(first.shape[-2], max_depth_m=float(max(cfg.eval.ranges_m)))
    return model.fit(train_set[i]["lidar_map"] for i in range(len(train_set)))


def demo_panel(model: SpaDe, sample: Dict[str, Any], cfg: Config) -> np.ndarray:
    """Image, radar, prediction and |error| against the LiDAR of one eval sample of the synthetic
    val split, depths on 0..max(eval.ranges_m), under a heading naming the model trained per `cfg`
    (`model_line`) and the frame (BGR uint8)."""
    max_depth_m = float(max(cfg.eval.ranges_m))
    pred = sample_depth_m(model, sample)
    return panel([("image", image_bgr(sample["img"])),
                  ("radar columns (m)", depth_tile(sample["radar_map"], max_depth_m, clipped=True)),
                  ("SpaDe prediction (m)", depth_tile(pred, max_depth_m, clipped=True)),
                  ("|error| on LiDAR (m)", error_tile(pred, sample["lidar_map"]))], columns=2,
                 heading=f"{model_line(cfg, pred.device)}\nsynthetic val frame {sample['name']}")


def run_demo(cfg: Config, out: Path, meta: Dict[str, Any]) -> Dict[str, Any]:
    """World, training (or the finished run), evaluation of the model and the baselines; writes
    out/metrics.json (with `meta` and the timings) and out/panel.png; returns the metrics."""
    start = time.perf_counter()
    ensure_world(cfg)
    world_s = time.perf_counter() - start
    model = trained_model(cfg)
    train_s = time.perf_counter() - start - world_s
    val_set = build_dataset(cfg, "val")
    row_median = fit_row_median(cfg)
    predictors = {
        "model": model_predictor(model, cfg.eval.optimized),
        # an image without radar gets the median depth of the row medians
        "baseline_radar": RadarColumnDepth(fallback_m=float(row_median.row_m.median())),
        "baseline_row_median": row_median,
    }
    metrics: Dict[str, Any] = {}
    for name, predict in predictors.items():
        summary = evaluate(predict, val_set, evaluators_for(cfg.data.root, cfg.eval.ranges_m),
                           batch_size=cfg.eval.batch_size, device=next(model.parameters()).device,
                           num_workers=cfg.data.num_workers, desc=name)["summary"]
        metrics[name] = summary
        print(format_table(summary, title=f"== {name}"))
    metrics["meta"] = {**meta, "train_infos": cfg.data.train_infos, "val_infos": cfg.data.val_infos,
                       "seconds_world": round(world_s, 1), "seconds_training": round(train_s, 1),
                       "seconds_total": round(time.perf_counter() - start, 1)}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", metrics, reasons=NULL_REASONS)     # NaN -> null + "nulls"
    write_png(out / "panel.png", demo_panel(model, val_set[len(val_set) // 2], cfg))
    return metrics


def verdict(metrics: Dict[str, Any]) -> str:
    """One line: the model's 0-R m MAE (largest range) against the baselines'."""
    far = max(metrics["model"]["mae_mm"], key=int)
    mae = {name: metrics[name]["mae_mm"][far] for name in ("model", *BASELINES)}
    beats = all(mae["model"] < mae[b] for b in BASELINES)
    return (f"0-{far} m MAE: model {mae['model']:.0f} mm, radar baseline {mae['baseline_radar']:.0f} mm, "
            f"row-median baseline {mae['baseline_row_median']:.0f} mm -> the model "
            f"{'beats' if beats else 'does NOT beat'} both baselines")
