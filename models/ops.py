"""Resampling operations shared by the network and the loss (docs/spade.md sections 2-4)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

NETWORK_MULTIPLE = 256  # G1 runs at 1/4 and its encoder downsamples 64x more


def padded_size(h: int, w: int) -> tuple[int, int]:
    """Released padding rule: ((h//256)+1)*256 x ((w//256)+1)*256 (900x1600 -> 1024x1792).

    A size that is already a multiple of 256 still grows by 256, as in the released code.
    """
    n = NETWORK_MULTIPLE
    return (h // n + 1) * n, (w // n + 1) * n


def pad_to_network(x: torch.Tensor) -> torch.Tensor:
    """x: B x C x H x W -> B x C x Hp x Wp, zeros appended at the bottom and right."""
    h, w = x.shape[-2:]
    hp, wp = padded_size(h, w)
    return F.pad(x, (0, wp - w, 0, hp - h))


def downscale_bilinear(img: torch.Tensor, factor: int) -> torch.Tensor:
    """img: B x C x H x W -> B x C x H/factor x W/factor, bilinear, no antialias."""
    h, w = img.shape[-2:]
    return F.interpolate(img, size=(h // factor, w // factor), mode="bilinear",
                         align_corners=False, antialias=False)


def scatter_downscale(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Nearest-index scatter of a sparse map: B x C x H x W -> B x C x ceil(H/f) x ceil(W/f).

    Source pixel (y, x) lands on (y // f, x // f). Zeros mean "no value" and never overwrite.
    Among the nonzero source pixels of one target pixel, the last in row-major order wins (what
    a CPU index assignment in raster order does); each channel is scattered on its own. The
    result is deterministic on every device: the winner is the largest source index (amax
    scatter), its value is then gathered.
    """
    if factor == 1:
        return x.clone()
    b, c, h, w = x.shape
    ho, wo = -(-h // factor), -(-w // factor)
    ys = torch.arange(h, device=x.device) // factor
    xs = torch.arange(w, device=x.device) // factor
    target = (ys[:, None] * wo + xs[None, :]).reshape(1, -1).expand(b * c, -1)
    flat = x.reshape(b * c, h * w)
    source = torch.arange(h * w, device=x.device).expand(b * c, -1)
    candidate = torch.where(flat != 0, source, torch.full_like(source, -1))
    winner = torch.full((b * c, ho * wo), -1, dtype=torch.long, device=x.device)
    winner.scatter_reduce_(1, target, candidate, reduce="amax", include_self=True)
    value = flat.gather(1, winner.clamp(min=0))
    out = torch.where(winner >= 0, value, torch.zeros_like(value))
    return out.reshape(b, c, ho, wo)
