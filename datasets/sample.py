"""The sample contract every dataset of this project follows (docs/architecture.md "Tensor
conventions"): a frame's raw data (`Frame`), and the pieces of a sample built from it: the uint8
image planes, the radar point features, the radar map, the released evaluation sample and the
semantic-mask target. A new dataset reads its files into a `Frame` and reuses these.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import cv2
import numpy as np

from datasets import geometry

# ADE20K-150 ids of the mask target: wall, building, tree, person, car, fence, bus, truck, pole,
# van, minibike, bicycle.
SEG_CLASSES = (0, 1, 4, 12, 20, 32, 80, 83, 93, 102, 116, 127)
SEG_LUT = np.isin(np.arange(256), SEG_CLASSES).astype(np.uint8)     # class id -> target 0 / 1

@dataclass
class Frame:
    """One sample's raw data at the camera's resolution (h x w)."""
    name: str                      # image basename without extension
    img: np.ndarray                # h x w x 3 uint8 BGR
    K: np.ndarray                  # 3 x 3 float64
    lidar_uvz: Tuple[np.ndarray, np.ndarray, np.ndarray]   # in-canvas u, v, depth_m (any sign), file order
    radar_uvz: Tuple[np.ndarray, np.ndarray, np.ndarray]   # in-canvas radar points, likewise
    radar_xyz: np.ndarray          # N x 3 float32 camera-frame xyz of every valid radar point
    dense_depth: Optional[np.ndarray]   # h x w float32 (m) where depth_dense/ exists (eval mode)
    seg_ids: Optional[np.ndarray] = None   # h x w uint8 ADE20K ids (train mode with the mask loss)
    label_m: Optional[np.ndarray] = None   # h x w float32 (m) label of data.label_dir (train mode)
    camera: str = "CAM_FRONT"              # the camera channel
    cam2ego: Optional[np.ndarray] = None   # 4 x 4 camera -> key-frame ego frame (None: identity)


def frame_pose(frame: Frame) -> Dict[str, Any]:
    """`camera` (channel) and `cam2ego` (4 x 4 float32: camera -> ego frame of the key frame)."""
    cam2ego = np.eye(4) if frame.cam2ego is None else frame.cam2ego
    return {"camera": frame.camera, "cam2ego": np.asarray(cam2ego, dtype=np.float32)}


def image_chw(img: np.ndarray) -> np.ndarray:
    """img: H x W x 3 uint8 -> 3 x H x W uint8 (planes written by cv2.split: 0.2 ms at 900 x 1600,
    where NumPy's strided copy takes about 3 ms and a float32 copy 1.1 ms). The image stays uint8 up
    to the model, which converts it on its own device: a quarter of the bytes through the loader's
    shared memory, pinning and host-to-device copy."""
    out = np.empty((3, *img.shape[:2]), dtype=np.uint8)
    cv2.split(img, list(out))
    return out


def radar_features(radar_xyz: np.ndarray, max_points: int, rng: np.random.Generator) -> Dict[str, Any]:
    """radar_pts: P x 3 float32 zero padded (a random subset of P when more), radar_count."""
    if len(radar_xyz) > max_points:
        radar_xyz = radar_xyz[np.sort(rng.choice(len(radar_xyz), max_points, replace=False))]
    pts = np.zeros((max_points, 3), dtype=np.float32)
    pts[:len(radar_xyz)] = radar_xyz
    return {"radar_pts": pts, "radar_count": np.int64(len(radar_xyz))}


def radar_map(u: np.ndarray, v: np.ndarray, depth_m: np.ndarray, h: int, w: int,
              columns: bool) -> np.ndarray:
    """h x w float32: depth down whole columns (radar disruption) or at single pixels."""
    if columns:
        return geometry.radar_column_map(u, depth_m, h, w)
    return geometry.rasterize_depth(u, v, depth_m, h, w)


def eval_sample(frame: Frame, data_cfg, rng: np.random.Generator) -> Dict[str, Any]:
    """The released evaluation sample of `frame` at the camera's resolution (no augmentation).

    data_cfg: `Config.data`; rng picks the radar subset when there are more than
    data_cfg.max_radar_points points. Also used for frames held in memory (tools/predict.py).
    """
    h, w = frame.img.shape[:2]
    sample = {
        "img": image_chw(frame.img),
        "radar_map": radar_map(*frame.radar_uvz, h, w, data_cfg.radar_columns)[None],
        **radar_features(frame.radar_xyz, data_cfg.max_radar_points, rng),
        "lidar_map": geometry.rasterize_depth(*frame.lidar_uvz, h, w)[None],
        "K": frame.K.astype(np.float32),
        "name": frame.name,
        **frame_pose(frame),
    }
    if frame.dense_depth is not None:
        sample["dense_depth"] = frame.dense_depth[None]
    return sample
