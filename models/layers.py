"""Building blocks of the SpaDe UNets. Module names follow the released state_dict.

Every convolution keeps its bias and is followed by BatchNorm (`.conv`, `.bn`). A ReLU follows
only where the released network has one (docs/spade.md section 3, checked against golden outputs):
inside the bottleneck and after its sum, between the two convs of a separable-score branch and
of a refine, nowhere in a resize and nowhere after a decoder sum.
"""
from __future__ import annotations

import torch
from torch import nn


class ConvBnAct(nn.Module):
    """conv (with bias) -> BN -> optional ReLU.

    x: B x in_ch x H x W -> B x out_ch x H/stride x W/stride ("same" padding).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int | tuple[int, int], stride: int = 1,
                 groups: int = 1, act: bool = True):
        super().__init__()
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        self.conv = nn.Conv2d(in_ch, out_ch, (kh, kw), stride=stride, padding=(kh // 2, kw // 2),
                              groups=groups, bias=True)
        self.bn = nn.BatchNorm2d(out_ch)
        self.act = nn.ReLU(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    """ResNeXt bottleneck: 1x1 shrink to out/4, grouped 3x3 (carries the stride), 1x1 expand.

    The shortcut of a block that changes shape is avg-pool (stride x stride) then 1x1 conv + BN;
    otherwise it is the identity. out = ReLU(expand + shortcut).
    """

    def __init__(self, in_ch: int, out_ch: int, groups: int, stride: int = 1):
        super().__init__()
        mid = out_ch // 4
        self.conv_1x1_shrink = ConvBnAct(in_ch, mid, 1)
        self.conv_3x3 = ConvBnAct(mid, mid, 3, stride=stride, groups=groups)
        self.conv_1x1_expand = ConvBnAct(mid, out_ch, 1, act=False)
        self.pool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.shortcut = (ConvBnAct(in_ch, out_ch, 1, act=False)
                         if stride > 1 or in_ch != out_ch else nn.Identity())
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_1x1_expand(self.conv_3x3(self.conv_1x1_shrink(x)))
        return self.act(y + self.shortcut(self.pool(x)))


class SeparableScore(nn.Module):
    """Sum of two separable branches, conv + BN each: (1x3, ReLU, 3x1) + (3x1, ReLU, 1x3).

    No ReLU after a branch's second conv, none after the sum.
    """

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv00 = ConvBnAct(in_ch, out_ch, (1, 3))
        self.conv01 = ConvBnAct(out_ch, out_ch, (3, 1), act=False)
        self.conv10 = ConvBnAct(in_ch, out_ch, (3, 1))
        self.conv11 = ConvBnAct(out_ch, out_ch, (1, 3), act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv01(self.conv00(x)) + self.conv11(self.conv10(x))


class Refine(nn.Module):
    """Residual refine: x + BN(conv3x3(ReLU(BN(conv3x3(x))))), no ReLU after the sum."""

    def __init__(self, ch: int):
        super().__init__()
        self.refine0 = ConvBnAct(ch, ch, 3)
        self.refine1 = ConvBnAct(ch, ch, 3, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.refine1(self.refine0(x))


class Resize(nn.Module):
    """2x2 stride-2 transposed conv (x2 upsampling) + BN, no ReLU; the decoder's last step has
    no BN (bn=False): its output goes straight to the final ReLU / sigmoid."""

    def __init__(self, in_ch: int, out_ch: int, bn: bool = True):
        super().__init__()
        self.deconv = nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2, bias=True)
        self.bn = nn.BatchNorm2d(out_ch) if bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.deconv(x)
        return x if self.bn is None else self.bn(x)
