"""Coloured pictures of images, depth maps and errors (TensorBoard, eval --save-vis, the demo).

All functions take NumPy arrays or tensors of one image and return H x W x 3 uint8 BGR (OpenCV
order); `to_rgb_chw` turns one into the RGB float C x H x W that TensorBoard wants.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

CAPTION_PX = 22


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def image_bgr(img) -> np.ndarray:
    """img: 3 x H x W BGR 0..255 (the dataset's `img`) -> H x W x 3 uint8."""
    return np.clip(_np(img).transpose(1, 2, 0), 0, 255).astype(np.uint8)


def colorize(value, vmax: float, sparse: bool = False, cmap: int = cv2.COLORMAP_TURBO) -> np.ndarray:
    """value: (1 x) H x W, 0 = none (drawn black). `sparse` grows points to 3x3 for visibility."""
    v = _np(value)
    v = v.reshape(v.shape[-2:]).astype(np.float32)
    if sparse:
        v = cv2.dilate(v, np.ones((3, 3), np.uint8))
    scaled = np.clip(v / max(vmax, 1e-6) * 255.0, 0, 255).astype(np.uint8)
    out = cv2.applyColorMap(scaled, cmap)
    out[v <= 0] = 0
    return out


def error_map(pred_m, gt_m, vmax_m: float = 10.0, sparse: bool = True) -> np.ndarray:
    """|pred - gt| where gt > 0 (m), coloured on 0..vmax_m; black where gt is missing."""
    pred, gt = _np(pred_m).squeeze(), _np(gt_m).squeeze()
    err = np.where(gt > 0, np.abs(pred - gt) + 1e-3, 0.0)
    return colorize(err, vmax_m, sparse=sparse, cmap=cv2.COLORMAP_INFERNO)


def captioned(tile: np.ndarray, caption: str) -> np.ndarray:
    bar = np.zeros((CAPTION_PX, tile.shape[1], 3), np.uint8)
    cv2.putText(bar, caption, (4, CAPTION_PX - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.55,
                (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([bar, tile], 0)


def panel(tiles: Sequence[Tuple[str, np.ndarray]], columns: int = 2) -> np.ndarray:
    """Captioned tiles (all the same size) laid out row by row, `columns` per row."""
    shown = [captioned(t, c) for c, t in tiles]
    blank = np.zeros_like(shown[0])
    shown += [blank] * (-len(shown) % columns)
    rows = [np.concatenate(shown[i:i + columns], 1) for i in range(0, len(shown), columns)]
    return np.concatenate(rows, 0)


def sample_panel(img, radar_m, pred_m, lidar_m, mask=None, max_depth_m: float = 80.0,
                 columns: int = 2) -> np.ndarray:
    """The standard picture of one sample: image, radar, prediction, LiDAR, error (and mask)."""
    tiles = [("image", image_bgr(img)),
             ("radar (m)", colorize(radar_m, max_depth_m)),
             ("prediction (m)", colorize(pred_m, max_depth_m)),
             ("LiDAR (m)", colorize(lidar_m, max_depth_m, sparse=True)),
             ("|error| on LiDAR, 0-10 m", error_map(pred_m, lidar_m))]
    if mask is not None:
        tiles.append(("mask", colorize(_np(mask) + 1e-3, 1.0, cmap=cv2.COLORMAP_BONE)))
    return panel(tiles, columns)


def to_rgb_chw(bgr: np.ndarray) -> np.ndarray:
    """H x W x 3 uint8 BGR -> 3 x H x W float32 RGB in 0..1 (TensorBoard's add_image)."""
    return bgr[..., ::-1].transpose(2, 0, 1).astype(np.float32) / 255.0


def write_png(path, bgr: np.ndarray, scale: Optional[float] = None) -> None:
    if scale:
        bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    if not cv2.imwrite(str(path), bgr):
        raise OSError(f"could not write {path}; check that its folder exists and is writable")
