"""One SpaDe decoder (depth or mask): six steps of score -> + upsampled -> refine -> resize.

Step i scores the encoder map `skips[i]` (deep to shallow: 2000, 512, 256, 128, 64, 16 ch), adds
the previous step's x2-upsampled output, refines and upsamples x2 again. The modules are
registered on the owning UNet under the released names `<prefix>score<i>`, `<prefix>refine<i>`,
`<prefix>resize<i>` (prefix "" for depth, "valid_" for the mask).
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch
from torch import nn

from models.layers import ConvBnAct, Refine, Resize, SeparableScore

SKIP_CH = (2000, 512, 256, 128, 64, 16)
WIDTH = (128, 128, 64, 16, 8, 8)
OUT_CH = (128, 64, 16, 8, 8, 1)
SEPARABLE_STEPS = 3
HANDED_ON_STEP = 4  # its 8-ch output (1/2 of the UNet's input size) feeds the next stage


def decoder_modules(prefix: str) -> Dict[str, nn.Module]:
    """The released-name -> module map of one decoder."""
    modules: Dict[str, nn.Module] = {}
    for i, (skip, width, out) in enumerate(zip(SKIP_CH, WIDTH, OUT_CH)):
        modules[f"{prefix}score{i}"] = (SeparableScore(skip, width) if i < SEPARABLE_STEPS
                                        else ConvBnAct(skip, width, 3, act=False))
        modules[f"{prefix}refine{i}"] = Refine(width)
        modules[f"{prefix}resize{i}"] = Resize(width, out, bn=i < len(SKIP_CH) - 1)
    return modules


def run_decoder(steps: Sequence[Tuple[nn.Module, nn.Module, nn.Module]],
                skips: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, List[torch.Tensor]]:
    """steps: (score, refine, resize) per step; skips: deep to shallow, skips[0] at H/64.

    Returns (B x 1 x H x W output before the final activation,
             B x 8 x H/2 x W/2 output of step HANDED_ON_STEP).
    """
    x = handed = None
    for i, ((score, refine, resize), skip) in enumerate(zip(steps, skips)):
        y = score(skip)
        x = resize(refine(y if x is None else y + x))
        if i == HANDED_ON_STEP:
            handed = x
    return x, handed
