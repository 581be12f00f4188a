"""LiDAR-distribution leakage (LDL): does a prediction copy the pattern of its sparse labels?

Needs dense truth (the synthetic world's depth_dense/). Per image, over the pixels with
0 < dense <= max_depth_m:
- hit / miss MAE: mean |pred - dense| on the pixels the LiDAR label hits vs the pixels it does
  not. A network that fits the labelled pixels but not the rest has miss/hit well above 1.
- stripe index: (E_v / E_h) of the prediction divided by (E_v / E_h) of the dense truth, where
  E_v and E_h are the summed squared vertical and horizontal differences between neighbouring
  pixels (both in the region). LiDAR rings are near-horizontal rows, so learning their pattern
  adds vertical gradient energy (horizontal stripes): an index above 1. The set's index pools
  the energies over all images (robust to images with little texture).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List

import torch


def hit_miss_mae(pred_m: torch.Tensor, dense_m: torch.Tensor, lidar_m: torch.Tensor,
                 max_depth_m: float) -> Dict[str, torch.Tensor]:
    """pred_m, dense_m, lidar_m: B x 1 x H x W (m). Per image (B tensors, NaN when empty):
    `mae_hit_m`, `mae_miss_m`."""
    region = (dense_m > 0) & (dense_m <= max_depth_m)
    err = (pred_m.double() - dense_m.double()).abs()
    out = {}
    for key, sel in (("mae_hit_m", region & (lidar_m > 0)), ("mae_miss_m", region & (lidar_m <= 0))):
        count = sel.flatten(1).sum(1)
        total = torch.where(sel, err, torch.zeros_like(err)).flatten(1).sum(1)
        out[key] = torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, float("nan")))
    return out


def gradient_energy(depth_m: torch.Tensor, region: torch.Tensor) -> Dict[str, torch.Tensor]:
    """depth_m, region: B x 1 x H x W. Per image sums of squared neighbour differences whose two
    pixels are both in `region`: `vertical` (along rows' normal, y) and `horizontal` (x)."""
    d = depth_m.double()
    dv = (d[..., 1:, :] - d[..., :-1, :]).square() * (region[..., 1:, :] & region[..., :-1, :])
    dh = (d[..., :, 1:] - d[..., :, :-1]).square() * (region[..., :, 1:] & region[..., :, :-1])
    return {"vertical": dv.flatten(1).sum(1), "horizontal": dh.flatten(1).sum(1)}


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return torch.where(den > 0, num / den.clamp(min=1e-30), torch.full_like(num, float("nan")))


def stripe_terms(pred_m: torch.Tensor, dense_m: torch.Tensor, max_depth_m: float
                 ) -> Dict[str, torch.Tensor]:
    """Per image: `stripe_index` and the four energies it is made of (B tensors)."""
    region = (dense_m > 0) & (dense_m <= max_depth_m)
    pred, truth = gradient_energy(pred_m, region), gradient_energy(dense_m, region)
    index = _ratio(_ratio(pred["vertical"], pred["horizontal"]),
                   _ratio(truth["vertical"], truth["horizontal"]))
    return {"stripe_index": index, "pred_v": pred["vertical"], "pred_h": pred["horizontal"],
            "truth_v": truth["vertical"], "truth_h": truth["horizontal"]}


@dataclass
class LeakageMetrics:
    """Accumulates the LDL measures over a set; `summary()` reports millimetres and ratios."""
    max_depth_m: float = 80.0
    per_image: Dict[str, List[float]] = field(default_factory=dict)

    def update(self, pred_m: torch.Tensor, dense_m: torch.Tensor, lidar_m: torch.Tensor
               ) -> Dict[str, List[float]]:
        """Add a batch; returns this batch's per-image `mae_hit_m`, `mae_miss_m`, `stripe_index`."""
        values = {**hit_miss_mae(pred_m, dense_m, lidar_m, self.max_depth_m),
                  **stripe_terms(pred_m, dense_m, self.max_depth_m)}
        batch = {k: v.tolist() for k, v in values.items()}
        for k, v in batch.items():
            self.per_image.setdefault(k, []).extend(v)
        return {k: batch[k] for k in ("mae_hit_m", "mae_miss_m", "stripe_index")}

    def summary(self) -> Dict[str, float]:
        """`mae_hit_mm`, `mae_miss_mm` (means over images), `miss_hit_ratio`, `stripe_index`."""
        t = {k: torch.tensor(v, dtype=torch.float64) for k, v in self.per_image.items()}
        if not t:
            return {}
        hit, miss = t["mae_hit_m"].nanmean().item(), t["mae_miss_m"].nanmean().item()
        stripe = _ratio(_ratio(t["pred_v"].sum(), t["pred_h"].sum()),
                        _ratio(t["truth_v"].sum(), t["truth_h"].sum())).item()
        return {"mae_hit_mm": hit * 1000.0, "mae_miss_mm": miss * 1000.0,
                "miss_hit_ratio": miss / hit if hit > 0 else float("nan"), "stripe_index": stripe}
