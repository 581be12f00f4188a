"""What evaluate() runs on every batch: a list of evaluators sharing one (batch, prediction)
protocol, in the manner of detectron2's DatasetEvaluator.

    process(batch, pred_m) -> {column: [value per image]}   # per-image CSV columns (may be empty)
    summary(images=None) -> {...}                           # merged into the run's summary

`images`: the positions (in the order processed) of the images to summarise, None = all of them;
evaluate() summarises each camera's images this way (summary["per_camera"]).

`LidarEvaluator` is the released protocol; `DenseEvaluator` needs `dense_depth` in the batch (the
synthetic world); `PredictionWriter` and `PanelWriter` write files. `evaluators_for` builds the
list that eval.py, the demo, the ablations and training's validation use.
"""
from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, TypeVar

import torch

from datasets.io import write_depth_png
from utils.files import write_png
from utils.ldl import LeakageMetrics
from utils.metrics import DepthMetrics
from utils.visualize import sample_panel

Columns = Dict[str, List[float]]
Images = Optional[Sequence[int]]           # positions of images in the order processed; None = all
Metrics = TypeVar("Metrics", DepthMetrics, LeakageMetrics)


def _at(per_image: List[Any], images: Images) -> List[Any]:
    """The values of the images at the positions `images` (all for None)."""
    return per_image if images is None else [per_image[i] for i in images]


def _only(metrics: Metrics, images: Images) -> Metrics:
    """`metrics` itself (images None), else a copy whose per-image fields ({key: [value per
    image]}) hold only the images at the positions `images`."""
    if images is None:
        return metrics
    per_image = {f.name: getattr(metrics, f.name) for f in fields(metrics)
                 if isinstance(getattr(metrics, f.name), dict)}
    return replace(metrics, **{name: {key: _at(values, images) for key, values in per_key.items()}
                               for name, per_key in per_image.items()})


def _mm_columns(errs: Dict[int, Dict[str, List[float]]], prefix: str = "") -> Columns:
    """DepthMetrics.update's per-range values (m) -> CSV columns `{prefix}mae_50_mm`, ..."""
    return {f"{prefix}{k[:-2]}_{r}_mm": [x * 1000.0 for x in v[k]]
            for r, v in errs.items() for k in ("mae_m", "rmse_m")}


class LidarEvaluator:
    """The released protocol against the LiDAR ground truth `lidar_map` (utils/metrics.py)."""

    def __init__(self, ranges_m: Sequence[int]):
        self.metrics = DepthMetrics(ranges_m)

    def process(self, batch: Dict[str, Any], pred_m: torch.Tensor) -> Columns:
        return _mm_columns(self.metrics.update(pred_m, batch["lidar_map"]))

    def summary(self, images: Images = None) -> Dict[str, Any]:
        metrics = _only(self.metrics, images)
        return {"num_samples": metrics.num_images, **metrics.summary()}


class DenseEvaluator:
    """MAE / RMSE against the dense truth `dense_depth` on every pixel, and the LiDAR-leakage
    measures of utils/ldl.py at the largest range."""

    def __init__(self, ranges_m: Sequence[int]):
        self.metrics = DepthMetrics(ranges_m)
        self.leakage = LeakageMetrics(max_depth_m=float(max(ranges_m)))

    def process(self, batch: Dict[str, Any], pred_m: torch.Tensor) -> Columns:
        if "dense_depth" not in batch:
            raise KeyError(f"dense truth missing for {', '.join(batch['name'])}: depth_dense/<name>.png "
                           "must exist for every frame of a root that has depth_dense/")
        columns = _mm_columns(self.metrics.update(pred_m, batch["dense_depth"]), "dense_")
        ldl = self.leakage.update(pred_m, batch["dense_depth"], batch["lidar_map"])
        columns["ldl_mae_hit_mm"] = [x * 1000.0 for x in ldl["mae_hit_m"]]
        columns["ldl_mae_miss_mm"] = [x * 1000.0 for x in ldl["mae_miss_m"]]
        columns["ldl_stripe_index"] = ldl["stripe_index"]
        return columns

    def summary(self, images: Images = None) -> Dict[str, Any]:
        dense = _only(self.metrics, images).summary()
        return {"dense": {"mae_mm": dense["mae_mm"], "rmse_mm": dense["rmse_mm"]},
                "ldl": _only(self.leakage, images).summary()}


class PredictionWriter:
    """<folder>/<image name>.png, uint16 millimetres (datasets/io.py; saturates at 65.535 m)."""

    def __init__(self, folder: str | Path):
        self.folder, self.saturated = Path(folder), []          # saturated pixels per image
        self.folder.mkdir(parents=True, exist_ok=True)

    def process(self, batch: Dict[str, Any], pred_m: torch.Tensor) -> Columns:
        self.saturated += [write_depth_png(self.folder / f"{name}.png", depth)
                           for name, depth in zip(batch["name"], pred_m[:, 0].cpu().numpy())]
        return {}

    def summary(self, images: Images = None) -> Dict[str, Any]:
        saturated = sum(_at(self.saturated, images))
        return {"saved_pixels_saturated": saturated} if saturated else {}


class PanelWriter:
    """<folder>/<image name>.png coloured panels (utils/visualize.py) of every `every`-th sample
    by dataset index, resized by `scale`."""

    def __init__(self, folder: str | Path, max_depth_m: float, every: int = 1, scale: float = 1.0):
        self.folder, self.max_depth_m, self.every, self.scale = Path(folder), max_depth_m, every, scale
        self.folder.mkdir(parents=True, exist_ok=True)

    def process(self, batch: Dict[str, Any], pred_m: torch.Tensor) -> Columns:
        for i, (index, name) in enumerate(zip(batch["index"].tolist(), batch["name"])):
            if index % self.every == 0:
                write_png(self.folder / f"{name}.png",
                          sample_panel(batch["img"][i], batch["radar_map"][i], pred_m[i, 0],
                                       batch["lidar_map"][i], max_depth_m=self.max_depth_m),
                          scale=self.scale)
        return {}

    def summary(self, images: Images = None) -> Dict[str, Any]:
        return {}


def evaluators_for(data_root: str | Path, ranges_m: Sequence[int], save_pred_dir: Optional[str | Path] = None,
                   save_vis_dir: Optional[str | Path] = None, vis_every: int = 1,
                   vis_scale: float = 1.0) -> List[Any]:
    """The released protocol; the dense measures where `data_root` has the dense truth
    (depth_dense/, the synthetic world); the writers that are asked for."""
    evaluators: List[Any] = [LidarEvaluator(ranges_m)]
    if (Path(data_root) / "depth_dense").is_dir():
        evaluators.append(DenseEvaluator(ranges_m))
    if save_pred_dir:
        evaluators.append(PredictionWriter(save_pred_dir))
    if save_vis_dir:
        evaluators.append(PanelWriter(save_vis_dir, float(max(ranges_m)), vis_every, vis_scale))
    return evaluators
