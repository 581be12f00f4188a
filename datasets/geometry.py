"""Point transforms, projection and rasterisation with the released semantics (docs/spade.md section 2).

Transforms are 4 x 4 homogeneous float64 matrices; point sets are N x 3 arrays (a row per point).
Pixel coordinates are continuous with pixel i covering [i, i + 1): the pixel index of a point is the
integer truncation of (u, v), and a point is in the canvas when 0 <= u < W and 0 <= v < H. As in the
released code the canvas test never looks at depth: a point behind the camera (z < 0) whose
(x/z, y/z) lands in the canvas is in it, with its negative depth (evaluation drops such pixels
through 0 < gt; training removes them with its 0 < z < max range filter).
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
from nuscenes.utils.geometry_utils import transform_matrix
from pyquaternion import Quaternion


def pose_matrix(translation_m: Sequence[float], rotation_wxyz: Sequence[float]) -> np.ndarray:
    """4 x 4 float64 matrix of a nuScenes pose: child frame -> parent frame (e.g. sensor -> ego)."""
    return transform_matrix(np.asarray(translation_m, dtype=np.float64), Quaternion(rotation_wxyz))


def rigid_inverse(T: np.ndarray) -> np.ndarray:
    """Inverse of a 4 x 4 rigid transform (rotation + translation)."""
    inv = np.eye(4)
    inv[:3, :3] = T[:3, :3].T
    inv[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return inv


def sensor_to_camera(sensor2ego: np.ndarray, ego2global_at_sensor: np.ndarray,
                     ego2global_at_camera: np.ndarray, camera2ego: np.ndarray) -> np.ndarray:
    """4 x 4 chain sensor -> ego (sensor time) -> global -> ego (camera time) -> camera."""
    return (rigid_inverse(camera2ego) @ rigid_inverse(ego2global_at_camera)
            @ ego2global_at_sensor @ sensor2ego)


def transform_points(T: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """xyz: N x 3 -> N x 3 float64, T: 4 x 4 (computed as 3 x N: twice as fast for N >> 3)."""
    xyz = np.asarray(xyz, dtype=np.float64)
    return (T[:3, :3] @ xyz.T + T[:3, 3:]).T


def project_points(K: np.ndarray, xyz_cam: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Camera-frame xyz: N x 3 -> continuous (u, v) pixels and depth_m (camera z), each N float64.

    Points with z < 0 get the mirrored (u, v) of the released code; z = 0 gives non-finite (u, v),
    which no canvas test accepts.
    """
    xyz_cam = np.asarray(xyz_cam, dtype=np.float64)
    uvw = (np.asarray(K, dtype=np.float64) @ xyz_cam.T).T
    depth_m = xyz_cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = uvw[:, 0] / uvw[:, 2]
        v = uvw[:, 1] / uvw[:, 2]
    return u, v, depth_m


def in_canvas(u: np.ndarray, v: np.ndarray, h: int, w: int) -> np.ndarray:
    """N bool: 0 <= u < w and 0 <= v < h (continuous coordinates; depth is not looked at, as
    released: see the module docstring). NaN or infinite coordinates are outside."""
    with np.errstate(invalid="ignore"):
        return (u >= 0) & (u < w) & (v >= 0) & (v < h)


def _last_per_key(key: np.ndarray) -> np.ndarray:
    """Indices of the last occurrence of each distinct value of `key` (N ints), ordered by value."""
    _, first_in_reversed = np.unique(key[::-1], return_index=True)
    return len(key) - 1 - first_in_reversed


def unique_pixels(u: np.ndarray, v: np.ndarray, depth_m: np.ndarray, h: int, w: int
                  ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pixels that `rasterize_depth` writes: (rows, cols) int64 and depth_m float32, each M.

    u, v: N continuous pixel coordinates in file order; points outside 0 <= u < w, 0 <= v < h are
    ignored; where several points share a pixel the later one in file order wins.
    """
    keep = in_canvas(u, v, h, w)
    cols = u[keep].astype(np.int64)
    rows = v[keep].astype(np.int64)
    depth = np.asarray(depth_m)[keep]
    last = _last_per_key(rows * w + cols)
    return rows[last], cols[last], depth[last].astype(np.float32)


def rasterize_depth(u: np.ndarray, v: np.ndarray, depth_m: np.ndarray, h: int, w: int) -> np.ndarray:
    """Sparse depth map h x w float32 (0 = none): file order, a later point overwrites."""
    rows, cols, depth = unique_pixels(u, v, depth_m, h, w)
    out = np.zeros((h, w), dtype=np.float32)
    out[rows, cols] = depth
    return out


def column_depths(u: np.ndarray, depth_m: np.ndarray, w: int) -> np.ndarray:
    """w float32: the depth each column of the radar column map holds (0 = none).

    u, depth_m: N, of in-canvas points (the caller applies `in_canvas`); a later point wins.
    """
    with np.errstate(invalid="ignore"):
        keep = (u >= 0) & (u < w)
    cols = u[keep].astype(np.int64)
    depth = np.asarray(depth_m)[keep]
    last = _last_per_key(cols)
    row = np.zeros(w, dtype=np.float32)
    row[cols[last]] = depth[last]
    return row


def radar_column_map(u: np.ndarray, depth_m: np.ndarray, h: int, w: int) -> np.ndarray:
    """"Radar disruption": each in-canvas point's depth down its whole column u, h x w float32."""
    return np.repeat(column_depths(u, depth_m, w)[None, :], h, axis=0)
