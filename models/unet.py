"""One SpaDe UNet: ResNeXt encoder, depth decoder and radar-aware mask decoder."""
from __future__ import annotations

from typing import List, Tuple

import torch
from torch import nn

from models.decoder import SKIP_CH, decoder_modules, run_decoder
from models.encoder import Encoder

DEPTH_PREFIX, MASK_PREFIX = "", "valid_"


class UNet(nn.Module):
    """x: B x in_ch x H x W (H, W multiples of 64) ->
    (depth B x 1 x H x W m after ReLU, mask B x 1 x H x W after sigmoid,
     feature B x 8 x H/2 x W/2: the depth decoder's step-4 output, handed to the next stage).
    """

    def __init__(self, in_ch: int):
        super().__init__()
        self.encoder = Encoder(in_ch)
        for prefix in (DEPTH_PREFIX, MASK_PREFIX):
            for name, module in decoder_modules(prefix).items():
                self.add_module(name, module)

    def _steps(self, prefix: str) -> List[Tuple[nn.Module, nn.Module, nn.Module]]:
        return [(getattr(self, f"{prefix}score{i}"), getattr(self, f"{prefix}refine{i}"),
                 getattr(self, f"{prefix}resize{i}")) for i in range(len(SKIP_CH))]

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        skips = self.encoder(x)[::-1]
        depth, feature = run_decoder(self._steps(DEPTH_PREFIX), skips)
        mask, _ = run_decoder(self._steps(MASK_PREFIX), skips)
        return torch.relu(depth), torch.sigmoid(mask), feature
