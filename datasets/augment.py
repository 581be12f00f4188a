"""The camera-intrinsics disruption (docs/spade.md section 2) with the released semantics, drawn once
per sample and applied to each map.

Draws, in the released order: scale s ~ U(1, 1.3); an angle ~ U(-5, 5) that the release draws and
never uses (drawn here too, so that the sequence of draws is the released one); flip when
U(0, 1) > 0.5; brightness, contrast, saturation factors ~ U(0.6, 1.4); resized size
H' = int(H s), W' = int(H' W / H) (900x1600: int(H' 16 / 9)); crop offsets y0 ~ [0, H' - h),
x0 ~ [0, W' - w), upper bounds excluded, for an h x w output.
Applied: horizontal flip; brightness, contrast, saturation with PIL's ImageEnhance arithmetic;
resize (the image with PIL's bicubic kernel, through torch's antialiased bicubic, which follows
PIL's passes; sparse maps, masks and dense depth nearest as PIL's NEAREST); crop; 3x3 Gaussian
blur of the image (sigma 0.8).
Differences from the release, on purpose (docs/fidelity.md): when H' = h the release's crop draw
raises and it silently skips the whole augmentation of that sample (0.37 % of draws): here the
crop is at 0 and the rest applies; the release resizes the semantic mask with torch's legacy
nearest rule, half a pixel off the image: here it takes PIL's nearest like the LiDAR map.

Pixel coordinates are continuous, pixel i covering [i, i + 1); `disruption_affine` maps source to
output coordinates, so K_out = A @ K for the returned image.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from datasets.sample import image_chw

DISRUPTIONS = ("released", "geometric", "none")
SCALE_RANGE = (1.0, 1.3)
UNUSED_ANGLE_RANGE_DEG = (-5.0, 5.0)
FLIP_THRESHOLD = 0.5                                  # flip when U(0, 1) > this
COLOR_RANGE = (0.6, 1.4)
BLUR_SIGMA_PX = 0.8
# Added before OpenCV's rounding to truncate like PIL (an integer stays put: just under half a level).
TRUNCATE_OFFSET = -0.5 + 1.0 / 256
LEVELS = np.arange(256, dtype=np.float32)


@dataclass(frozen=True)
class Disruption:
    """One draw for a src_hw image cropped to out_hw; kind 'none' is a centre crop only."""
    kind: str
    src_hw: Tuple[int, int]
    out_hw: Tuple[int, int]
    flip: bool = False
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    resized_hw: Tuple[int, int] = (0, 0)
    crop_yx: Tuple[int, int] = (0, 0)


def resized_size(src_hw: Tuple[int, int], scale: float) -> Tuple[int, int]:
    """Released size rule: H' = int(H s), W' = int(H' W / H) (the aspect ratio kept from H')."""
    src_h, src_w = src_hw
    res_h = int(src_h * scale)
    return res_h, int(res_h * src_w / src_h)


def sample_disruption(rng: np.random.Generator, kind: str, src_hw: Tuple[int, int],
                      out_hw: Tuple[int, int]) -> Disruption:
    """Draw scale, (unused) angle, flip, colour factors and crop, in the released order, from `rng`."""
    if kind not in DISRUPTIONS:
        raise ValueError(f"data.disruption={kind!r}; expected one of {DISRUPTIONS}")
    (src_h, src_w), (out_h, out_w) = src_hw, out_hw
    if src_h < out_h or src_w < out_w:
        raise ValueError(f"image is {src_h}x{src_w}, smaller than the training crop {out_h}x{out_w}; "
                         "set data.height / data.width to at most the image size")
    if kind == "none":
        return Disruption(kind, src_hw, out_hw, resized_hw=src_hw,
                          crop_yx=((src_h - out_h) // 2, (src_w - out_w) // 2))
    scale = rng.uniform(*SCALE_RANGE)
    rng.uniform(*UNUSED_ANGLE_RANGE_DEG)
    flip = bool(rng.uniform(0.0, 1.0) > FLIP_THRESHOLD)
    brightness, contrast, saturation = (float(rng.uniform(*COLOR_RANGE)) for _ in range(3))
    res_h, res_w = resized_size(src_hw, scale)
    # exclusive upper bounds as released; an empty range (the release raises there) crops at 0
    crop_yx = tuple(int(rng.integers(0, res - out)) if res > out else 0
                    for res, out in ((res_h, out_h), (res_w, out_w)))
    return Disruption(kind, src_hw, out_hw, flip, brightness, contrast, saturation, (res_h, res_w), crop_yx)


def disruption_affine(d: Disruption) -> np.ndarray:
    """3 x 3 map of continuous pixel coordinates, source -> output (flip, scale, crop)."""
    (src_h, src_w), (res_h, res_w), (y0, x0) = d.src_hw, d.resized_hw, d.crop_yx
    flip = np.array([[-1.0, 0.0, src_w], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) if d.flip else np.eye(3)
    scale_crop = np.array([[res_w / src_w, 0.0, -x0], [0.0, res_h / src_h, -y0], [0.0, 0.0, 1.0]])
    return scale_crop @ flip


def blend_lut(base: float, factor: float) -> np.ndarray:
    """256 uint8: PIL's Image.blend of a constant image `base` toward level x by `factor`,
    trunc(base + factor (x - base)) in float32 arithmetic, clipped to 0..255."""
    f = np.float32(factor)
    return np.clip(np.trunc(np.float32(base) + f * (LEVELS - np.float32(base))), 0, 255).astype(np.uint8)


def jitter_colors(img: np.ndarray, brightness: float, contrast: float, saturation: float) -> np.ndarray:
    """img: H x W x 3 uint8 BGR -> same, with PIL's ImageEnhance in this order: brightness blends with
    black, contrast with the rounded mean grey level, saturation with the (integer) grey image.

    Brightness and contrast are one exact look-up table (the contrast centre is taken from an
    OpenCV-truncated brightness pass); saturation blends with OpenCV's grey image (PIL's "L" up to
    rounding), truncated like PIL. Within 1 grey level of PIL, on under 0.01 % of the pixels of
    real frames and 0.3 % of a saturated test pattern (tests).
    """
    bright_lut = blend_lut(0.0, brightness)
    bright = cv2.convertScaleAbs(img, alpha=brightness, beta=TRUNCATE_OFFSET)   # for the centre only
    mean = int(cv2.mean(cv2.cvtColor(bright, cv2.COLOR_BGR2GRAY))[0] + 0.5)
    out = cv2.LUT(img, blend_lut(mean, contrast)[bright_lut])
    grey = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY)
    return cv2.addWeighted(out, saturation, cv2.merge([grey, grey, grey]), 1.0 - saturation, TRUNCATE_OFFSET)


def resize_bicubic(planes: np.ndarray, size_hw: Tuple[int, int]) -> np.ndarray:
    """planes: C x H x W uint8 -> C x h x w uint8 with PIL's bicubic (a = -0.5): torch's antialiased
    uint8 bicubic follows PIL's two fixed-point passes (within 1 grey level of PIL on about
    0.01 % of pixels; OpenCV's cubic, a = -0.75, is several levels off)."""
    out = F.interpolate(torch.from_numpy(planes)[None], size=tuple(size_hw), mode="bicubic",
                        antialias=True, align_corners=False)
    return out[0].numpy()


def warp_image(img: np.ndarray, d: Disruption) -> np.ndarray:
    """img: H x W x 3 uint8 BGR -> 3 x out_h x out_w uint8 planes: flip, colours, bicubic resize,
    crop, blur (planar from the resize on: the torch resize and the blur of plane views are fast
    there, and the model takes planes)."""
    (y0, x0), (out_h, out_w) = d.crop_yx, d.out_hw
    if d.kind == "none":
        return image_chw(img[y0:y0 + out_h, x0:x0 + out_w])
    if d.flip:
        img = cv2.flip(img, 1)
    resized = resize_bicubic(image_chw(jitter_colors(img, d.brightness, d.contrast, d.saturation)),
                             d.resized_hw)
    out = np.empty((3, out_h, out_w), dtype=np.uint8)
    for plane, dst in zip(resized, out):
        cv2.GaussianBlur(plane[y0:y0 + out_h, x0:x0 + out_w], (3, 3), BLUR_SIGMA_PX, dst=dst)
    return out


def _source_index(out_len: int, start: int, src_len: int, res_len: int) -> np.ndarray:
    """out_len int64: nearest source index of output pixels start .. start + out_len - 1 (no flip)."""
    x = np.arange(start, start + out_len, dtype=np.int64)
    return ((2 * x + 1) * src_len) // (2 * res_len)


def source_indices(d: Disruption) -> Tuple[np.ndarray, np.ndarray]:
    """(rows: out_h, cols: out_w) nearest source pixel of each output row / column, flip included."""
    (src_h, src_w), (res_h, res_w), (y0, x0), (out_h, out_w) = d.src_hw, d.resized_hw, d.crop_yx, d.out_hw
    rows = _source_index(out_h, y0, src_h, res_h)
    cols = _source_index(out_w, x0, src_w, res_w)
    return rows, (src_w - 1 - cols if d.flip else cols)


def warp_dense_nearest(values: np.ndarray, d: Disruption) -> np.ndarray:
    """values: H x W (any dtype) -> out_h x out_w by nearest neighbour (masks, dense depth)."""
    rows, cols = source_indices(d)
    return values.take(rows, axis=0).take(cols, axis=1)


def warp_columns(row: np.ndarray, d: Disruption) -> np.ndarray:
    """row: W per-column values (radar column map) -> out_w."""
    return row.take(source_indices(d)[1])


def _expansion(src_idx: np.ndarray, index_map: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """First output position and count of output pixels that take each source index."""
    first = np.searchsorted(index_map, src_idx, side="left")
    return first, np.searchsorted(index_map, src_idx, side="right") - first


def warp_sparse_nearest(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, d: Disruption) -> np.ndarray:
    """Sparse map given as its distinct pixels (rows, cols, values: M) -> out_h x out_w float32.

    Equal to `warp_dense_nearest` of the rasterised map, at the cost of the M pixels only: each
    source pixel covers 0..ceil(s) output rows and columns.
    """
    (src_h, src_w), (res_h, res_w), (y0, x0), (out_h, out_w) = d.src_hw, d.resized_hw, d.crop_yx, d.out_hw
    if d.flip:
        cols = src_w - 1 - cols
    row0, n_rows = _expansion(rows, _source_index(out_h, y0, src_h, res_h))
    col0, n_cols = _expansion(cols, _source_index(out_w, x0, src_w, res_w))
    out = np.zeros((out_h, out_w), dtype=np.float32)
    for dy in range(int(n_rows.max(initial=0))):
        for dx in range(int(n_cols.max(initial=0))):
            sel = (dy < n_rows) & (dx < n_cols)
            out[row0[sel] + dy, col0[sel] + dx] = values[sel]
    return out
