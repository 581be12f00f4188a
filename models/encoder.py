"""ResNeXt encoder of one SpaDe UNet (docs/spade.md section 3)."""
from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from torch import nn

from models.layers import Bottleneck, ConvBnAct

STEM_CH = 16
# (released name, width, blocks, groups); every stage's first block has stride 2.
STAGES = (("g03", 64, 3, 2), ("g3", 128, 4, 2), ("g4", 256, 7, 4), ("g5", 512, 7, 8),
          ("g6", 1024, 7, 8))
DEEP_CH = STEM_CH + sum(width for _, width, _, _ in STAGES)  # 2000


class Encoder(nn.Module):
    """x: B x in_ch x H x W (H, W multiples of 64) -> six maps, shallow to deep:

    stem 16 @ H/2, g03 64 @ H/4, g3 128 @ H/8, g4 256 @ H/16, g5 512 @ H/32 and the deep map
    2000 @ H/64 = [avg-pooled stem, g03, g3, g4, g5, then g6 (1024)] concatenated on channels.
    """

    def __init__(self, in_ch: int):
        super().__init__()
        self.conv00 = ConvBnAct(in_ch, STEM_CH, 3, stride=2)
        self.stage_names: List[List[str]] = []
        prev = STEM_CH
        for name, width, blocks, groups in STAGES:
            names = []
            for i in range(blocks):
                block = (Bottleneck(prev, width, groups, stride=2) if i == 0
                         else Bottleneck(width, width, groups))
                self.add_module(f"{name}_{i}", block)
                names.append(f"{name}_{i}")
            self.stage_names.append(names)
            prev = width

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        feats = [self.conv00(x)]
        for names in self.stage_names:
            y = feats[-1]
            for name in names:
                y = getattr(self, name)(y)
            feats.append(y)
        depth = len(feats) - 1
        pooled = [F.avg_pool2d(f, 2 ** (depth - i)) for i, f in enumerate(feats[:-1])]
        return feats[:-1] + [torch.cat(pooled + [feats[-1]], dim=1)]
