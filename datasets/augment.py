"""The camera-intrinsics disruption (SPADE.md section 2), drawn once per sample and applied to each map.

Order of the released augmentation: horizontal flip (p = 0.5), brightness / contrast / saturation
factors U(0.6, 1.4), resize by s ~ U(1.0, 1.3) to (int(H s), int(W s)) and a random crop back to the
output size, 3x3 Gaussian blur. The image is resized bicubically; sparse depth maps, masks and dense
depth by nearest neighbour (source pixel floor((x + 0.5) W / W_resized), as PIL's NEAREST; where an
output centre falls exactly on a source pixel edge the higher index is taken, PIL's float arithmetic
goes either way). The image is flipped after its colour changes: they act per pixel (the contrast
centre is a mean), so the order does not change the result.

Pixel coordinates are continuous, pixel i covering [i, i + 1); `disruption_affine` maps source to
output coordinates, so K_out = A @ K for the returned image.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import cv2
import numpy as np

DISRUPTIONS = ("released", "geometric", "none")
FLIP_P = 0.5
COLOR_RANGE = (0.6, 1.4)
SCALE_RANGE = (1.0, 1.3)
GREY_WEIGHTS_BGR = np.array([0.114, 0.587, 0.299])   # ITU-R 601 luma, as PIL's "L"
# Added before OpenCV's rounding to truncate like PIL (an integer stays put: just under half a level).
TRUNCATE_OFFSET = -0.5 + 1.0 / 256


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


def sample_disruption(rng: np.random.Generator, kind: str, src_hw: Tuple[int, int],
                      out_hw: Tuple[int, int]) -> Disruption:
    """Draw the flip, colour factors, scale and crop (in that order) from `rng`."""
    if kind not in DISRUPTIONS:
        raise ValueError(f"data.disruption={kind!r}; expected one of {DISRUPTIONS}")
    (src_h, src_w), (out_h, out_w) = src_hw, out_hw
    if src_h < out_h or src_w < out_w:
        raise ValueError(f"image is {src_h}x{src_w}, smaller than the training crop {out_h}x{out_w}; "
                         "set data.height / data.width to at most the image size")
    if kind == "none":
        return Disruption(kind, src_hw, out_hw, resized_hw=src_hw,
                          crop_yx=((src_h - out_h) // 2, (src_w - out_w) // 2))
    flip = bool(rng.random() < FLIP_P)
    brightness, contrast, saturation = rng.uniform(*COLOR_RANGE, size=3)
    scale = rng.uniform(*SCALE_RANGE)
    resized_hw = (int(src_h * scale), int(src_w * scale))
    crop_yx = (int(rng.integers(0, resized_hw[0] - out_h + 1)), int(rng.integers(0, resized_hw[1] - out_w + 1)))
    return Disruption(kind, src_hw, out_hw, flip, float(brightness), float(contrast), float(saturation),
                      resized_hw, crop_yx)


def disruption_affine(d: Disruption) -> np.ndarray:
    """3 x 3 map of continuous pixel coordinates, source -> output (flip, scale, crop)."""
    (src_h, src_w), (res_h, res_w), (y0, x0) = d.src_hw, d.resized_hw, d.crop_yx
    flip = np.array([[-1.0, 0.0, src_w], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) if d.flip else np.eye(3)
    scale_crop = np.array([[res_w / src_w, 0.0, -x0], [0.0, res_h / src_h, -y0], [0.0, 0.0, 1.0]])
    return scale_crop @ flip


def jitter_colors(img: np.ndarray, brightness: float, contrast: float, saturation: float) -> np.ndarray:
    """img: H x W x 3 uint8 BGR -> same, with PIL ImageEnhance semantics in this order: brightness
    blends with black, contrast with the mean grey level, saturation with the grey image, each
    result truncated and clipped to 0..255 as PIL does. The contrast centre (mean grey after the
    brightness step) is taken on a 1/4-resolution subsample, within a fraction of a grey level of
    the full-image mean. One vectorised OpenCV pass per step."""
    out = cv2.convertScaleAbs(img, alpha=brightness, beta=TRUNCATE_OFFSET)   # |b x - 0.496| rounds to 0 at 0
    small = cv2.resize(out, (img.shape[1] // 4, img.shape[0] // 4), interpolation=cv2.INTER_NEAREST)
    mean = int(cv2.mean(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY))[0] + 0.5)
    out = cv2.addWeighted(out, contrast, out, 0.0, mean * (1.0 - contrast) + TRUNCATE_OFFSET)
    to_grey = saturation * np.eye(3) + (1.0 - saturation) * GREY_WEIGHTS_BGR[None, :]
    return cv2.transform(out, np.hstack([to_grey, np.full((3, 1), TRUNCATE_OFFSET)]))


def warp_image(img: np.ndarray, d: Disruption) -> np.ndarray:
    """img: H x W x 3 uint8 -> out_h x out_w x 3 uint8: colours, flip, bicubic resize, crop, blur."""
    if d.kind == "none":
        (y0, x0), (out_h, out_w) = d.crop_yx, d.out_hw
        return img[y0:y0 + out_h, x0:x0 + out_w]
    img = jitter_colors(img, d.brightness, d.contrast, d.saturation)
    if d.flip:
        img = cv2.flip(img, 1)
    res_h, res_w = d.resized_hw
    img = cv2.resize(img, (res_w, res_h), interpolation=cv2.INTER_CUBIC)
    (y0, x0), (out_h, out_w) = d.crop_yx, d.out_hw
    return cv2.GaussianBlur(img[y0:y0 + out_h, x0:x0 + out_w], (3, 3), 0)


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
