"""Two non-learned depth predictors the trained model must beat (the demo). Like
utils.engine.evaluate.model_predictor, each is called on a batch dict and returns depth
B x 1 x H x W (m).

- `RadarColumnDepth`: the radar column map itself as depth (`radar_column_depth`). Each column
  holding radar depth keeps it (the mean of its nonzero pixels, which is the column's value when
  the radar is rasterised in columns); every empty column takes the value of the nearest filled
  column.
- `RowMedianDepth`: for each image row, the median LiDAR depth of the training set in that row
  (a 5 cm histogram per row, so the set streams through); rows without LiDAR take the nearest
  row that has some.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable

import numpy as np
import torch


def nearest_filled(values: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
    """values, filled: B x N. Each unfilled entry takes the nearest filled one along N (ties go
    left); rows with nothing filled stay as they are."""
    n = values.shape[-1]
    idx = torch.arange(n, device=values.device).expand_as(values)
    left = torch.where(filled, idx, torch.full_like(idx, -1)).cummax(-1).values
    right = torch.where(filled, idx, torch.full_like(idx, 2 * n)).flip(-1).cummin(-1).values.flip(-1)
    use_right = (left < 0) | ((right < n) & (right - idx < idx - left))
    src = torch.where(use_right, right, left).clamp(0, n - 1)
    out = values.gather(-1, src)
    return torch.where(filled.any(-1, keepdim=True), out, values)


def radar_column_depth(radar_map_m: torch.Tensor, fallback_m: float = 0.0) -> torch.Tensor:
    """radar_map_m: B x 1 x H x W (m, 0 = none) -> depth B x 1 x H x W, constant down columns.
    An image without any radar return is filled with `fallback_m`."""
    b, _, h, w = radar_map_m.shape
    hits = (radar_map_m > 0).sum(-2).reshape(b, w)
    col_m = radar_map_m.sum(-2).reshape(b, w) / hits.clamp(min=1)
    col_m = nearest_filled(col_m, hits > 0)
    col_m = torch.where((hits > 0).any(-1, keepdim=True), col_m, torch.full_like(col_m, fallback_m))
    return col_m[:, None, None, :].expand(b, 1, h, w).contiguous()


class RadarColumnDepth:
    """Predictor: `radar_column_depth` of the batch's radar map; an image without any radar
    return gets `fallback_m` everywhere."""

    def __init__(self, fallback_m: float):
        self.fallback_m = fallback_m

    def __call__(self, batch: Dict[str, Any]) -> torch.Tensor:
        return radar_column_depth(batch["radar_map"], self.fallback_m)


class RowMedianDepth:
    """Per-row median of training LiDAR depth; `fit` on maps, then call on a batch."""

    def __init__(self, height: int, max_depth_m: float = 80.0, bin_m: float = 0.05):
        self.height, self.bin_m = height, bin_m
        self.bins = int(np.ceil(max_depth_m / bin_m))
        self.counts = np.zeros((height, self.bins), dtype=np.int64)
        self.row_m: torch.Tensor | None = None

    def add(self, lidar_m: np.ndarray) -> None:
        """lidar_m: ... x H x W (m, 0 = none); depths beyond max_depth_m land in the last bin."""
        lidar_m = np.asarray(lidar_m).reshape(-1, *lidar_m.shape[-2:])
        if lidar_m.shape[-2] != self.height:
            raise ValueError(f"RowMedianDepth was built for {self.height} rows, got a map of "
                             f"{lidar_m.shape[-2]}; fit and apply it at one image size")
        _, rows, _ = np.nonzero(lidar_m > 0)
        depth = lidar_m[lidar_m > 0]
        bins = np.minimum((depth / self.bin_m).astype(np.int64), self.bins - 1)
        self.counts += np.bincount(rows * self.bins + bins,
                                   minlength=self.height * self.bins).reshape(self.height, self.bins)
        self.row_m = None

    def fit(self, lidar_maps: Iterable[np.ndarray]) -> "RowMedianDepth":
        for lidar_m in lidar_maps:
            self.add(lidar_m)
        total = self.counts.sum(1)
        if not total.any():
            raise ValueError("RowMedianDepth.fit saw no LiDAR depth at all; check the training set")
        median_bin = (self.counts.cumsum(1) >= (total[:, None] + 1) / 2).argmax(1)
        row_m = torch.from_numpy((median_bin + 0.5) * self.bin_m)
        self.row_m = nearest_filled(row_m[None], torch.from_numpy(total > 0)[None])[0].float()
        return self

    def __call__(self, batch: Dict[str, Any]) -> torch.Tensor:
        """Depth B x 1 x H x W (m) for the batch's images: the row medians broadcast along rows."""
        if self.row_m is None:
            raise RuntimeError("RowMedianDepth: call fit() first")
        img = batch["img"]
        return self.row_m.to(img.device)[None, None, :, None].expand(img.shape[0], 1, self.height, img.shape[-1])
