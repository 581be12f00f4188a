"""Depth metrics of the radar-camera literature (docs/spade.md section 1).

Per image and range R: pixels with 0 < gt <= R; MAE = mean |pred - gt|, RMSE = sqrt(mean
(pred - gt)^2). The data-set figure is the mean of the per-image values. An image with no
ground-truth pixel in a range is left out of that range's mean and counted in `empty`
(the released code divides by zero there and turns the whole set's figure into NaN); an image
with ground truth but a non-finite prediction is not "empty": it makes the mean NaN.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Sequence

import torch


def per_image_errors(pred_m: torch.Tensor, gt_m: torch.Tensor, max_depth_m: float
                     ) -> Dict[str, torch.Tensor]:
    """pred_m, gt_m: B x 1 x H x W metres (gt 0 = none).

    Returns per image (each a B tensor): `mae_m`, `rmse_m` (NaN where no pixel is in range)
    and `count` (pixels in range).
    """
    pred = pred_m.double().flatten(1)
    gt = gt_m.double().flatten(1)
    valid = (gt > 0) & (gt <= max_depth_m)
    count = valid.sum(1)
    diff = torch.where(valid, pred - gt, torch.zeros_like(pred))
    denom = count.clamp(min=1).double()
    mae = diff.abs().sum(1) / denom
    rmse = (diff.square().sum(1) / denom).sqrt()
    nan = torch.full_like(mae, float("nan"))
    return {"mae_m": torch.where(count > 0, mae, nan),
            "rmse_m": torch.where(count > 0, rmse, nan),
            "count": count}


@dataclass
class DepthMetrics:
    """Accumulates per-image MAE/RMSE for several ranges; `summary()` reports millimetres."""
    ranges_m: Sequence[int] = (50, 70, 80)
    mae_m: Dict[int, List[float]] = field(default_factory=dict)
    rmse_m: Dict[int, List[float]] = field(default_factory=dict)
    count: Dict[int, List[int]] = field(default_factory=dict)      # ground-truth pixels in range

    def __post_init__(self) -> None:
        for r in self.ranges_m:
            self.mae_m.setdefault(r, [])
            self.rmse_m.setdefault(r, [])
            self.count.setdefault(r, [])

    def update(self, pred_m: torch.Tensor, gt_m: torch.Tensor) -> Dict[int, Dict[str, List[float]]]:
        """Add a batch; returns this batch's per-image values per range (NaN = no gt in range)."""
        batch: Dict[int, Dict[str, List[float]]] = {}
        for r in self.ranges_m:
            errs = per_image_errors(pred_m, gt_m, float(r))
            mae, rmse = errs["mae_m"].tolist(), errs["rmse_m"].tolist()
            self.mae_m[r].extend(mae)
            self.rmse_m[r].extend(rmse)
            self.count[r].extend(errs["count"].tolist())
            batch[r] = {"mae_m": mae, "rmse_m": rmse}
        return batch

    @property
    def num_images(self) -> int:
        return len(self.mae_m[self.ranges_m[0]]) if self.ranges_m else 0

    def summary(self) -> Dict[str, Dict[str, float]]:
        """{'mae_mm': {'50': ..}, 'rmse_mm': {..}, 'images': {..}, 'empty': {..}}."""
        out: Dict[str, Dict[str, float]] = {"mae_mm": {}, "rmse_mm": {}, "images": {}, "empty": {}}
        for r in self.ranges_m:
            mae = torch.tensor(self.mae_m[r], dtype=torch.float64)
            rmse = torch.tensor(self.rmse_m[r], dtype=torch.float64)
            ok = torch.tensor(self.count[r]) > 0
            n = int(ok.sum())
            key = str(r)
            out["mae_mm"][key] = float(mae[ok].mean() * 1000.0) if n else float("nan")
            out["rmse_mm"][key] = float(rmse[ok].mean() * 1000.0) if n else float("nan")
            out["images"][key] = n
            out["empty"][key] = int((~ok).sum())
        return out
