"""SpaDe training loss (docs/spade.md section 4), a pure function of named predictions and targets.

For each stage with scale s in (4, 2, 1):
- depth term: smooth-L1 (beta 1 m) over the pixels that carry a label, summed per sample,
  averaged over the batch, then divided by the number of labelled pixels of the whole batch.
  This is the released weighting: it equals (per-pixel mean) / B, so the effective step size
  shrinks with the batch size. Kept on purpose so that the released hyperparameters transfer.
- mask term: mean |mask - semantic target| over the stage's whole padded canvas, padding
  included: the target is zero-padded to the network input like the image, then resized nearest
  to the stage (released; checked against golden `loss_256x448`).
total = sum over stages of (depth + mask_weight * mask) / s.

Labels reach each scale by the same nearest-index scatter as the radar map. Depth predictions
come from the padded network input and are cropped to the label's extent at each scale (the zero
padding carries no labels, so the crop changes nothing but the work).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F

from models.ops import scatter_downscale
from utils.config import LossConfig


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


def stage_target(target: torch.Tensor, padded_hw: Sequence[int], scale: int) -> torch.Tensor:
    """target: B x 1 x H x W -> B x 1 x Hp/s x Wp/s: zero-padded at the bottom / right to the
    network input's Hp x Wp, then resized nearest (pixel (i, j) takes (i s, j s))."""
    hp, wp = padded_hw
    padded = F.pad(target, (0, wp - target.shape[-1], 0, hp - target.shape[-2]))
    return padded if scale == 1 else F.interpolate(padded, size=(hp // scale, wp // scale), mode="nearest")


def spade_loss(preds: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor],
               cfg: Optional[LossConfig] = None) -> Dict[str, torch.Tensor]:
    """Loss terms by name, from the network's output and the batch (the training sample).

    preds: `depth_s{s}`, `mask_s{s}`: B x 1 x Hp/s x Wp/s (network output on the padded input).
    batch: `lidar_map`: B x 1 x H x W metres (0 = none); `seg_target`: B x 1 x H x W in {0, 1}
    (uint8 as the dataset gives it, or float), needed only when cfg.mask_weight > 0.
    cfg: `Config.loss` (stage_scales, smooth_l1_beta_m, mask_weight); None = the released values.
    Returns `depth_s{s}`, `mask_s{s}` (when used) and `total`; all scalar tensors.
    """
    cfg = cfg or LossConfig()
    label = batch["lidar_map"]
    use_mask = cfg.mask_weight > 0
    if use_mask and "seg_target" not in batch:
        raise KeyError("spade_loss: loss.mask_weight > 0 needs the batch's seg_target "
                       "(set loss.mask_weight=0 or data.mask_supervision=true)")
    terms: Dict[str, torch.Tensor] = {}
    total = label.new_zeros(())
    for s in cfg.stage_scales:
        label_s = scatter_downscale(label, s) if s > 1 else label
        h, w = label_s.shape[-2:]
        depth = depth_term(preds[f"depth_s{s}"][..., :h, :w].float(), label_s, cfg.smooth_l1_beta_m)
        terms[f"depth_s{s}"] = depth
        stage = depth
        if use_mask:
            mask = preds[f"mask_s{s}"].float()
            padded_hw = (mask.shape[-2] * s, mask.shape[-1] * s)
            target = stage_target(batch["seg_target"].float(), padded_hw, s)
            terms[f"mask_s{s}"] = mask_term(mask, target)
            stage = stage + cfg.mask_weight * terms[f"mask_s{s}"]
        total = total + stage / s
    terms["total"] = total
    return terms
