"""Radar-position injection (docs/spade.md section 3): per-point MLP, masked mean over valid points."""
from __future__ import annotations

import torch
from torch import nn

MLP_WIDTHS = (3, 32, 64, 96, 64, 32, 8)


class FullyConnected(nn.Module):
    """Linear -> LeakyReLU(0.1). x: ... x in -> ... x out."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.fully_connected = nn.Linear(in_ch, out_ch)
        self.act = nn.LeakyReLU(0.1, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fully_connected(x))


class RadarEncoder(nn.Module):
    """radar_pts: B x K x 3 camera xyz (m), radar_count: B (int64) -> B x 8 embedding.

    Mean of the per-point embeddings over the first radar_count rows of each sample; a sample
    with no valid point gets the zero vector (the released code gives NaN there).
    """

    def __init__(self):
        super().__init__()
        layers = (FullyConnected(a, b) for a, b in zip(MLP_WIDTHS, MLP_WIDTHS[1:]))
        self.mlp = nn.Sequential(*layers)

    def forward(self, radar_pts: torch.Tensor, radar_count: torch.Tensor) -> torch.Tensor:
        emb = self.mlp(radar_pts)
        rows = torch.arange(radar_pts.shape[1], device=radar_pts.device)
        valid = rows[None, :] < radar_count.to(radar_pts.device)[:, None]
        total = torch.where(valid[..., None], emb, torch.zeros_like(emb)).sum(1)
        return total / valid.sum(1, keepdim=True).clamp(min=1).to(emb.dtype)
