"""SpaDe: three cascaded UNets at 1/4, 1/2 and full resolution plus radar-position injection."""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn

from models.inference import InferenceOptions, fused_for
from models.ops import NETWORK_MULTIPLE, downscale_bilinear, pad_to_network, scatter_downscale
from models.radar_mlp import RadarEncoder
from models.unet import UNet

IMG_CH, RADAR_CH, FEATURE_CH = 3, 1, 8


def _upsample4(feature: torch.Tensor) -> torch.Tensor:
    return F.interpolate(feature, scale_factor=4, mode="bilinear", align_corners=False)


class SpaDe(nn.Module):
    """Network of docs/spade.md section 3; its state_dict matches the released checkpoint.

    radar_injection: add the radar-point embedding to the features G1 and G2 hand on
    (ModelConfig.radar_injection). inference_options: how `predict` runs its fused copy
    (models/inference.py); a plain attribute, not part of the state_dict.
    """

    def __init__(self, radar_injection: bool = True):
        super().__init__()
        self.radar_injection = radar_injection
        self.G1 = UNet(IMG_CH + RADAR_CH)
        self.G2 = UNet(IMG_CH + RADAR_CH + FEATURE_CH)
        self.G3 = UNet(IMG_CH + RADAR_CH + FEATURE_CH)
        self.calibrated_params_encoder = RadarEncoder()
        self.inference_options = InferenceOptions()

    def radar_embedding(self, radar_pts: torch.Tensor, radar_count: torch.Tensor) -> torch.Tensor:
        """radar_pts: B x K x 3 (m), radar_count: B -> B x 8 x 1 x 1 (zeros with injection off)."""
        if not self.radar_injection:
            return radar_pts.new_zeros(radar_pts.shape[0], FEATURE_CH, 1, 1)
        return self.calibrated_params_encoder(radar_pts, radar_count)[..., None, None]

    def forward(self, img: torch.Tensor, radar_map: torch.Tensor, radar_pts: torch.Tensor,
                radar_count: torch.Tensor) -> Dict[str, torch.Tensor]:
        """img: B x 3 x H x W BGR 0..255 (uint8, as the dataset gives it, or float);
        radar_map: B x 1 x H x W (m); radar_pts: B x K x 3 (m); radar_count: B int64;
        H, W multiples of 256 (see `pad_to_network`).

        Returns depth_s{4,2,1} (m, >= 0) and mask_s{4,2,1} (0..1), each B x 1 x H/s x W/s.
        """
        h, w = img.shape[-2:]
        if h % NETWORK_MULTIPLE or w % NETWORK_MULTIPLE:
            raise ValueError(f"SpaDe.forward needs H and W that are multiples of "
                             f"{NETWORK_MULTIPLE}, got {h}x{w}; pad with models.pad_to_network "
                             f"or call SpaDe.predict, which pads and crops")
        img = img if img.is_floating_point() else img.float()
        emb = self.radar_embedding(radar_pts, radar_count)
        x4 = [downscale_bilinear(img, 4), scatter_downscale(radar_map, 4)]
        d4, m4, f4 = self.G1(torch.cat(x4, 1))
        f4 = _upsample4(f4 + emb)
        x2 = [downscale_bilinear(img, 2), scatter_downscale(radar_map, 2), f4]
        d2, m2, f2 = self.G2(torch.cat(x2, 1))
        f2 = _upsample4(f2 + emb)
        d1, m1, _ = self.G3(torch.cat([img, radar_map, f2], 1))
        return {"depth_s4": d4, "depth_s2": d2, "depth_s1": d1,
                "mask_s4": m4, "mask_s2": m2, "mask_s1": m1}

    def predict(self, img: torch.Tensor, radar_map: torch.Tensor, radar_pts: torch.Tensor,
                radar_count: torch.Tensor, optimized: bool = True) -> torch.Tensor:
        """Any H x W: pad as released, run the network, crop. Returns depth B x 1 x H x W (m).

        optimized (used in eval mode only): run the cached fused depth-only copy
        (models/inference.py), equal to `forward` up to float rounding, without gradients;
        False, or train mode, runs `forward` itself: the reference.
        """
        if optimized and not self.training:
            return fused_for(self)(img, radar_map, radar_pts, radar_count)
        h, w = img.shape[-2:]
        out = self.forward(pad_to_network(img), pad_to_network(radar_map), radar_pts, radar_count)
        return out["depth_s1"][..., :h, :w]
