"""Evaluation engine behind eval.py, the demo and the ablations (docs/spade.md section 1).

    predict = model_predictor(model)           # or a baseline: batch dict -> B x 1 x H x W (m)
    result = evaluate(predict, dataset, batch_size=4, ranges_m=(50, 70, 80))
    write_results(result, "results.json")      # + results.csv, one row per image; atomic writes
    print(format_table(result["summary"]))

Metrics: the released protocol on the LiDAR ground truth (utils/metrics.py); where the samples
carry dense truth (synthetic world) also the full-image MAE/RMSE against it and the leakage
measures of utils/ldl.py at the largest range. A non-finite prediction stops the evaluation
with an EvaluationError naming the image (it would otherwise leave the mean unnoticed).
"""
from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset, default_collate
from tqdm import tqdm

from datasets.workers import worker_options
from utils.checkpoint import atomic_write
from utils.ldl import LeakageMetrics
from utils.metrics import DepthMetrics
from utils.provenance import provenance
from utils.visualize import sample_panel, write_png

Predictor = Callable[[Dict[str, Any]], torch.Tensor]
UINT16_MAX_MM = 65535


class EvaluationError(RuntimeError):
    """A batch cannot be evaluated (images of several sizes) or a prediction is not finite."""


def model_predictor(model: torch.nn.Module, optimized: bool = True) -> Predictor:
    """Batch dict -> depth B x 1 x H x W (m) through `model.predict` (any input size; the model
    is put in eval mode; `optimized` picks predict's fused inference path, eval.optimized)."""
    model.eval()

    def predict(batch: Dict[str, Any]) -> torch.Tensor:
        return model.predict(batch["img"], batch["radar_map"], batch["radar_pts"], batch["radar_count"],
                             optimized=optimized)
    return predict


def depth_to_png_mm(depth_m: np.ndarray) -> np.ndarray:
    """H x W metres -> uint16 millimetres (rounded; saturates at 65.535 m)."""
    return np.clip(np.rint(depth_m * 1000.0), 0, UINT16_MAX_MM).astype(np.uint16)


def read_png_mm(path: str | Path) -> np.ndarray:
    """A prediction written by `--save-pred`: H x W float32 metres."""
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.dtype != np.uint16:
        raise OSError(f"{path} is not a uint16 depth PNG written by eval.py --save-pred")
    return raw.astype(np.float32) / 1000.0


def collate_same_size(samples: List[Dict[str, Any]]) -> Dict[str, Any]:
    """default_collate, with an error naming the images when their sizes differ."""
    sizes = {tuple(s["img"].shape[-2:]) for s in samples}
    if len(sizes) > 1:
        listed = ", ".join(f"{s['name']} {s['img'].shape[-2]}x{s['img'].shape[-1]}" for s in samples)
        raise EvaluationError(f"images of different sizes in one batch ({listed}); evaluate with "
                              "--batch-size 1 (eval.batch_size=1)")
    return default_collate(samples)


def check_finite(pred_m: torch.Tensor, names: Sequence[str], indices: Sequence[int]) -> None:
    """Raise EvaluationError naming the first image whose prediction B x 1 x H x W has a NaN
    or inf pixel."""
    bad = (~torch.isfinite(pred_m)).flatten(1).sum(1)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise EvaluationError(f"the prediction for {names[i]} (sample {indices[i]}) has {int(bad[i])} "
                              "non-finite pixels: check that sample's files (image, radar) and the "
                              "checkpoint")


def _to_device(batch: Dict[str, Any], device: torch.device) -> Dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()}


def _mm_columns(errs: Dict[int, Dict[str, List[float]]], prefix: str = "") -> Dict[str, List[float]]:
    """DepthMetrics.update's per-range values (m) -> CSV columns `{prefix}mae_50_mm`, ..."""
    return {f"{prefix}{k[:-2]}_{r}_mm": [x * 1000.0 for x in v[k]]
            for r, v in errs.items() for k in ("mae_m", "rmse_m")}


@torch.inference_mode()
def evaluate(predict: Predictor, dataset: Dataset, *, batch_size: int = 4, num_workers: int = 0,
             ranges_m: Sequence[int] = (50, 70, 80), max_samples: int = 0,
             device: torch.device | str = "cpu", save_pred_dir: Optional[str | Path] = None,
             save_vis_dir: Optional[str | Path] = None, vis_every: int = 1, vis_scale: float = 1.0,
             desc: str = "eval", progress: bool = True) -> Dict[str, Any]:
    """Run `predict` over `dataset` (eval mode samples) in order. Panels go to save_vis_dir for
    every `vis_every`-th sample (by dataset index), resized by `vis_scale`.

    Returns {"summary": {...}, "rows": [per-image dicts]}. The summary holds `num_samples`,
    `mae_mm` / `rmse_mm` / `images` / `empty` per range (keys '50', ...), `seconds`, and, when
    the samples carry `dense_depth`, `dense` (MAE/RMSE in mm against the dense truth) and `ldl`.
    """
    device = torch.device(device)
    if max_samples > 0 and max_samples < len(dataset):
        dataset = Subset(dataset, range(max_samples))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, pin_memory=device.type == "cuda",
                        collate_fn=collate_same_size, **worker_options(num_workers))
    for folder in (save_pred_dir, save_vis_dir):
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
    metrics, dense_metrics = DepthMetrics(ranges_m), DepthMetrics(ranges_m)
    leakage = LeakageMetrics(max_depth_m=float(max(ranges_m)))
    rows: List[Dict[str, Any]] = []
    saturated = 0
    start = time.perf_counter()
    for batch in tqdm(loader, desc=desc, unit="batch", disable=not progress, dynamic_ncols=True):
        indices = batch["index"].tolist()
        batch = _to_device(batch, device)
        pred_m = predict(batch).float()
        check_finite(pred_m, batch["name"], indices)
        gt_m = batch["lidar_map"]
        columns = _mm_columns(metrics.update(pred_m, gt_m))
        if "dense_depth" in batch:
            columns.update(_mm_columns(dense_metrics.update(pred_m, batch["dense_depth"]), "dense_"))
            ldl = leakage.update(pred_m, batch["dense_depth"], gt_m)
            columns["ldl_mae_hit_mm"] = [x * 1000.0 for x in ldl["mae_hit_m"]]
            columns["ldl_mae_miss_mm"] = [x * 1000.0 for x in ldl["mae_miss_m"]]
            columns["ldl_stripe_index"] = ldl["stripe_index"]
        rows += [{"index": index, "name": name, **{k: v[i] for k, v in columns.items()}}
                 for i, (index, name) in enumerate(zip(indices, batch["name"]))]
        if not (save_pred_dir or save_vis_dir):
            continue
        pred_np = pred_m[:, 0].cpu().numpy()
        for i, name in enumerate(batch["name"]):
            if save_pred_dir:
                png = depth_to_png_mm(pred_np[i])
                saturated += int((png == UINT16_MAX_MM).sum())
                write_png(Path(save_pred_dir) / f"{name}.png", png)
            if save_vis_dir and indices[i] % vis_every == 0:
                write_png(Path(save_vis_dir) / f"{name}.png",
                          sample_panel(batch["img"][i], batch["radar_map"][i], pred_np[i], gt_m[i],
                                       max_depth_m=float(max(ranges_m))), scale=vis_scale)
    summary: Dict[str, Any] = {"num_samples": metrics.num_images, **metrics.summary(),
                               "seconds": time.perf_counter() - start}
    if dense_metrics.num_images:
        dense_summary = dense_metrics.summary()
        summary["dense"] = {"mae_mm": dense_summary["mae_mm"], "rmse_mm": dense_summary["rmse_mm"]}
        summary["ldl"] = leakage.summary()
    if saturated:
        summary["saved_pixels_saturated"] = saturated   # uint16 mm stops at 65.535 m
    return {"summary": summary, "rows": rows}


def csv_path_for(out_json: str | Path) -> Path:
    """The per-image CSV beside a summary JSON: X.json -> X.csv (a .csv summary path is an error)."""
    out_json = Path(out_json)
    if out_json.suffix.lower() == ".csv":
        raise ValueError(f"summary path {out_json} ends in .csv, where the per-image CSV goes; give "
                         f"the summary a .json path ({out_json.with_suffix('.json')})")
    return out_json.with_suffix(".csv")


def write_results(result: Dict[str, Any], out_json: str | Path, **meta: Any) -> Path:
    """Write the summary (plus `meta` and the provenance of this code, utils/provenance.py) as
    JSON and the per-image rows as CSV beside it, each atomically; returns the CSV's path."""
    csv_path = csv_path_for(out_json)
    document = {**meta, "provenance": provenance(), **result["summary"]}
    atomic_write(out_json, lambda f: f.write(json.dumps(document, indent=2).encode() + b"\n"))
    rows = result["rows"]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(rows[0]) if rows else ["index", "name"])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(csv_path, lambda f: f.write(text.getvalue().encode()))
    return csv_path


def format_table(summary: Dict[str, Any], title: str = "") -> str:
    """The released protocol's table in millimetres (plus dense/LDL lines where present)."""
    ranges = list(summary["mae_mm"])
    lines = [title] if title else []
    lines.append(f"{'range':<14}" + "".join(f"{'0-' + r + ' m':>12}" for r in ranges))
    lines.append(f"{'MAE (mm)':<14}" + "".join(f"{summary['mae_mm'][r]:>12.1f}" for r in ranges))
    lines.append(f"{'RMSE (mm)':<14}" + "".join(f"{summary['rmse_mm'][r]:>12.1f}" for r in ranges))
    if "dense" in summary:
        d = summary["dense"]
        lines.append(f"{'dense MAE':<14}" + "".join(f"{d['mae_mm'][r]:>12.1f}" for r in ranges))
        lines.append(f"{'dense RMSE':<14}" + "".join(f"{d['rmse_mm'][r]:>12.1f}" for r in ranges))
        ldl = summary["ldl"]
        lines.append(f"LDL: MAE on LiDAR pixels {ldl['mae_hit_mm']:.1f} mm, elsewhere "
                     f"{ldl['mae_miss_mm']:.1f} mm (ratio {ldl['miss_hit_ratio']:.2f}); "
                     f"stripe index {ldl['stripe_index']:.2f}")
    lines.append(f"{summary['num_samples']} images")
    return "\n".join(lines)
