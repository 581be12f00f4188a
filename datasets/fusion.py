"""Surround key frames: the depth maps of a key frame's cameras back-projected into one point cloud
in the key frame's ego frame, and the files it is written to (tools/predict.py).

    samples = keyframe_samples(ds, record)       # eval samples of every configured camera
    cloud = fuse(samples, depths_m, stride=4)    # one FusedCloud; depths_m: one H x W per sample
    write_pcd_bin("kf.pcd.bin", cloud)           # devkit LidarPointCloud.from_file reads it
    write_npz("kf.npz", cloud)                   # xyz_m, camera, pixel_uv, depth_m, color_rgb

Frames: a sample's `cam2ego` maps its camera frame (x right, y down, z forward) to the ego frame of
the key frame (the LIDAR_TOP entry's ego pose: x forward, y left, z up), which is also where
`lidar_ego_points` puts the LiDAR key sweep.

Pixel convention (datasets/geometry.py): pixel (col, row) covers [col, col + 1) x [row, row + 1),
so a point projecting to (u, v) lands in pixel (floor(u), floor(v)). A pixel is back-projected
through its centre (col + 0.5, row + 0.5) at its depth (camera z): the point that made the
pixel lies within half a pixel of that ray in u and in v, at the same depth, i.e. within
depth_m * 0.5 * sqrt(1 / fx^2 + 1 / fy^2) (tests/test_fusion.py checks this round trip on the
real slice's LiDAR), half of what a pixel corner would give.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from datasets.geometry import transform_points
from datasets.infos import CAMERAS, LIDAR, entry_path, entry_poses
from datasets.io import read_lidar_points, resolve_data_path
from utils.files import atomic_write

CAMERA_INDEX = {name: i for i, name in enumerate(CAMERAS)}   # camera channel -> index in clouds
LUMA_RGB = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601 grey of RGB


class KeyframeError(ValueError):
    """A key frame has no camera to predict, or its samples do not belong together."""


@dataclass
class FusedCloud:
    """N points of a key frame's cameras: camera after camera as the samples come (data.cameras
    order), each camera's pixels row-major."""
    xyz_m: np.ndarray       # N x 3 float32, key-frame ego frame (x forward, y left, z up)
    camera: np.ndarray      # N uint8, index into CAMERAS (datasets.infos / utils.config)
    pixel_uv: np.ndarray    # N x 2 int32 (column, row) of the point's pixel in its camera's image
    depth_m: np.ndarray     # N float32, the pixel's depth (camera z)
    color_rgb: np.ndarray   # N x 3 uint8, the pixel's colour in the image, RGB order

    def __len__(self) -> int:
        return len(self.depth_m)


def backproject(depth_m: np.ndarray, K: np.ndarray, cam2ego: np.ndarray, stride: int = 1
                ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """depth_m: H x W (m; 0, negative or non-finite = no depth), K: 3 x 3, cam2ego: 4 x 4 ->
    (xyz_ego N x 3 float64, pixel_uv N x 2 int64 (column, row), depth_m N float32) of every pixel
    with a finite depth > 0 among rows and columns 0, stride, 2 stride, ..., row-major, each
    through its pixel centre (module docstring)."""
    if stride < 1:
        raise ValueError(f"stride={stride}: give 1 (every pixel) or more")
    depth = np.asarray(depth_m, dtype=np.float32)
    kept = depth[::stride, ::stride]
    rows, cols = np.nonzero(np.isfinite(kept) & (kept > 0))
    rows, cols = rows * stride, cols * stride
    d = depth[rows, cols]
    centres = np.stack([cols + 0.5, rows + 0.5, np.ones(len(d))])             # 3 x N
    rays = np.linalg.inv(np.asarray(K, dtype=np.float64)) @ centres           # z = 1 (pinhole K)
    xyz_cam = (rays * d.astype(np.float64)).T
    return transform_points(np.asarray(cam2ego, dtype=np.float64), xyz_cam), np.stack([cols, rows], 1), d


def _camera_cloud(sample: Dict[str, Any], depth_m: np.ndarray, stride: int) -> Tuple[np.ndarray, ...]:
    """One camera's (xyz_m, camera, pixel_uv, depth_m, color_rgb) of FusedCloud."""
    img = sample["img"]                                   # 3 x H x W uint8 BGR
    if np.shape(depth_m) != img.shape[1:]:
        raise KeyframeError(f"{sample['name']}: depth map {np.shape(depth_m)} does not match its "
                            f"image {img.shape[1:]}; predict at the image's own size")
    xyz, pixel, depth = backproject(depth_m, sample["K"], sample["cam2ego"], stride)
    bgr = img[:, pixel[:, 1], pixel[:, 0]].T                 # N x 3
    camera = np.full(len(depth), CAMERA_INDEX[sample["camera"]], dtype=np.uint8)
    return (xyz.astype(np.float32), camera, pixel.astype(np.int32), depth,
            np.ascontiguousarray(bgr[:, ::-1], dtype=np.uint8))


def fuse(samples: Sequence[Dict[str, Any]], depths_m: Sequence[np.ndarray], stride: int = 1) -> FusedCloud:
    """The cloud of one key frame: samples are its eval samples (`img`, `K`, `cam2ego`, `camera`,
    `keyframe`), depths_m one H x W map (m) per sample, e.g. the prediction; `stride` keeps
    every stride-th row and column of each map (`backproject`)."""
    if len(samples) != len(depths_m) or not samples:
        raise KeyframeError(f"fuse needs one depth map per sample, got {len(depths_m)} maps for "
                            f"{len(samples)} samples")
    keyframes = {int(s["keyframe"]) for s in samples}
    if len(keyframes) != 1:
        raise KeyframeError(f"the samples belong to key frames {sorted(keyframes)}; fuse the "
                            "cameras of one key frame (keyframe_samples)")
    parts = [_camera_cloud(s, d, stride) for s, d in zip(samples, depths_m)]
    return FusedCloud(*(np.concatenate(field) for field in zip(*parts)))


def keyframe_samples(ds, record: int) -> List[Dict[str, Any]]:
    """The samples of every camera of `ds` (a RadarCameraDataset) of info record `record`, in
    data.cameras order."""
    if not 0 <= record < len(ds.infos):
        raise KeyframeError(f"record {record} is out of range: info file {ds.infos_path} has "
                            f"{len(ds.infos)} records; pick --index 0 .. {len(ds.infos) - 1}")
    indices = [i for i, (rec, _) in enumerate(ds.pairs) if rec == record]
    if not indices:
        why = [f"{d['camera']}: {d['reason']}" for d in ds.dropped_pairs if d["record"] == record]
        raise KeyframeError(f"info file {ds.infos_path} record {record} has no camera of "
                            f"data.cameras to predict ({'; '.join(why)}); pick another key frame "
                            "or check --data-root and data.cameras")
    return [ds[i] for i in indices]


def lidar_ego_points(record: Dict[str, Any], root: str | Path) -> np.ndarray:
    """N x 3 float64: the record's LiDAR key sweep in the key frame's ego frame."""
    lidar = record["lidar_infos"][LIDAR]
    lidar2ego, _ = entry_poses(lidar)
    return transform_points(lidar2ego, read_lidar_points(resolve_data_path(root, entry_path(lidar))))


def write_pcd_bin(path: str | Path, cloud: FusedCloud) -> Path:
    """`path` (ending .bin) in the nuScenes LiDAR layout, float32 N x 5: x, y, z (m, key-frame
    ego frame, not a LiDAR frame), intensity = grey level 0..255 of the point's pixel
    (LUMA_RGB), ring index = camera index (CAMERAS). The devkit reads it with
    `LidarPointCloud.from_file` (which keeps x, y, z, intensity)."""
    grey = cloud.color_rgb.astype(np.float32) @ LUMA_RGB
    rows = np.column_stack([cloud.xyz_m, grey, cloud.camera]).astype(np.float32)
    return atomic_write(path, lambda f: f.write(rows.tobytes()))


def write_npz(path: str | Path, cloud: FusedCloud) -> Path:
    """`path`: an uncompressed .npz of the FusedCloud fields plus `cameras` (the channel names,
    indexed by `camera`); np.load reads it without pickle."""
    fields = {name: getattr(cloud, name) for name in FusedCloud.__dataclass_fields__}
    return atomic_write(path, lambda f: np.savez(f, cameras=np.array(CAMERAS), **fields))
