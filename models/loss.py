"""SpaDe training loss (SPADE.md section 4), a pure function of named predictions and targets.

For each stage with scale s in (4, 2, 1):
- depth term: smooth-L1 (beta 1 m) over the pixels that carry a label, summed per sample,
  averaged over the batch, then divided by the number of labelled pixels of the whole batch.
  This is the released weighting: it equals (per-pixel mean) / B, so the effective step size
  shrinks with the batch size. Kept on purpose so that the released hyperparameters transfer.
- mask term: mean |mask - semantic target| over the stage's pixels.
total = sum over stages of (depth + mask_weight * mask) / s.

Labels reach each scale by the same nearest-index scatter as the radar map; the semantic
target by nearest resizing. Predictions come from the padded network input and are cropped to
the label's extent at each scale (the zero padding carries no labels).
"""
from __future__ import annotations

from typing import Dict, Sequence

import torch
import torch.nn.functional as F

from models.ops import scatter_downscale


def _crop(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return x[..., :h, :w]


def depth_term(pred_m: torch.Tensor, label_m: torch.Tensor, beta_m: float = 1.0) -> torch.Tensor:
    """Released depth loss. pred_m, label_m: B x 1 x h x w; label 0 = no LiDAR. Scalar tensor.

    sum_b sum_{p labelled in b} smoothL1(pred - label) / (B * number of labelled pixels in batch)
    """
    valid = label_m > 0
    count = valid.sum()
    if count == 0:
        return pred_m.sum() * 0.0
    per_pixel = F.smooth_l1_loss(pred_m, label_m, reduction="none", beta=beta_m)
    per_sample = torch.where(valid, per_pixel, torch.zeros_like(per_pixel)).flatten(1).sum(1)
    return per_sample.mean() / count


def mask_term(mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error between the sigmoid mask and the 0/1 semantic target, B x 1 x h x w."""
    return (mask - target).abs().mean()


def spade_loss(preds: Dict[str, torch.Tensor], targets: Dict[str, torch.Tensor],
               stage_scales: Sequence[int] = (4, 2, 1), beta_m: float = 1.0,
               mask_weight: float = 1.0) -> Dict[str, torch.Tensor]:
    """Loss terms by name.

    preds: `depth_s{s}`, `mask_s{s}`: B x 1 x Hp/s x Wp/s (network output on padded input).
    targets: `lidar_map`: B x 1 x H x W metres (0 = none); `seg_target`: B x 1 x H x W in {0, 1},
    needed only when mask_weight > 0.
    Returns `depth_s{s}`, `mask_s{s}` (when used) and `total`; all scalar tensors.
    """
    label = targets["lidar_map"]
    use_mask = mask_weight > 0
    if use_mask and "seg_target" not in targets:
        raise KeyError("spade_loss: mask_weight > 0 needs targets['seg_target'] "
                       "(set loss.mask_weight=0 or data.mask_supervision=true)")
    terms: Dict[str, torch.Tensor] = {}
    total = label.new_zeros(())
    for s in stage_scales:
        label_s = scatter_downscale(label, s) if s > 1 else label
        h, w = label_s.shape[-2:]
        depth = depth_term(_crop(preds[f"depth_s{s}"], h, w).float(), label_s, beta_m)
        terms[f"depth_s{s}"] = depth
        stage = depth
        if use_mask:
            target = targets["seg_target"]
            if s > 1:
                target = F.interpolate(target, size=(h, w), mode="nearest")
            mask = mask_term(_crop(preds[f"mask_s{s}"], h, w).float(), target)
            terms[f"mask_s{s}"] = mask
            stage = stage + mask_weight * mask
        total = total + stage / s
    terms["total"] = total
    return terms
