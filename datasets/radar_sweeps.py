"""Radar input from several sweeps of an info record (`data.radar_sweeps`; 1 = the released input).

    radar_xyz, radar_uvz = camera_radar(record, root, n_sweeps, K, h, w)     # the released pair
    radar_xyz, radar_uvz = camera_radar(record, root, n_sweeps, K, h, w, "CAM_BACK",
                                        RADARS, ahead_only=True)                  # surround

`record["radar_infos"][RADAR_FRONT]` lists the key-frame sweep first, then the earlier sweeps of
the devkit's `prev` chain (datasets/infos.py). The first `n_sweeps` of them (fewer when the record
holds fewer) are read with the devkit's default filters and motion-compensated into the camera
frame at the image time: each sweep through its own sensor -> ego pose at the sweep's time ->
global, then the camera's ego pose -> camera (a static world: a moving reflector lands where it
was, one column per sweep). Points are concatenated oldest sweep first and the key frame last, so
where two sweeps fall on one column of the radar column map the newer one wins (a later point
wins, as within a sweep). The point features take every valid point of these sweeps; above
`data.max_radar_points` (200) a uniformly random subset is kept, as for one sweep
(`radar_features` in datasets/sample.py).

Several radars (data.radars): the sweeps of every listed radar the record holds, each through its
own pose, ordered by timestamp (oldest first, so the newest point wins a column). `ahead_only`
(every choice but the released pair) keeps only points in front of the camera (depth > 0), both
for the map and the point features: the released in-image test checks (u, v) only, so a point
behind the camera would be mirrored into the image with a negative depth (none for RADAR_FRONT
into CAM_FRONT, which is why the release never met it; ~98 columns of CAM_FRONT with all five
radars on the real slice). The point features then hold the points ahead of the camera, the
radar's view of what the camera looks at, as RADAR_FRONT is for CAM_FRONT.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Sequence, Tuple

import numpy as np

from datasets import geometry
from datasets.infos import CAMERA, RADAR, entry_path, entry_poses
from datasets.io import read_radar_points, resolve_data_path


def camera_radar(record: Dict[str, Any], root: str | Path, n_sweeps: int, K: np.ndarray, h: int, w: int,
                 camera: str = CAMERA, radars: Sequence[str] = (RADAR,), ahead_only: bool = False
                 ) -> Tuple[np.ndarray, Tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(camera-frame xyz: N x 3 float64 of every valid point of the first `n_sweeps` sweeps of
    each radar, in-canvas (u, v, depth_m) of those points), oldest sweep first, file order within
    a sweep; `ahead_only`: points at depth <= 0 dropped from both."""
    camera2ego, ego2global_cam = entry_poses(record["cam_infos"][camera])
    sweeps = [sweep for radar in radars if radar in record["radar_infos"]
              for sweep in reversed(record["radar_infos"][radar][:n_sweeps])]
    if len(radars) > 1:
        sweeps.sort(key=lambda sweep: sweep["timestamp"])          # stable: ties keep radar order
    xyz_cam = [np.zeros((0, 3))]
    for sweep in sweeps:
        sensor2ego, ego2global = entry_poses(sweep)
        chain = geometry.sensor_to_camera(sensor2ego, ego2global, ego2global_cam, camera2ego)
        xyz = read_radar_points(resolve_data_path(root, entry_path(sweep)))
        xyz_cam.append(geometry.transform_points(chain, xyz))
    xyz_cam = np.concatenate(xyz_cam)
    if ahead_only:
        xyz_cam = xyz_cam[xyz_cam[:, 2] > 0]
    u, v, depth = geometry.project_points(K, xyz_cam)
    keep = geometry.in_canvas(u, v, h, w)
    return xyz_cam, (u[keep], v[keep], depth[keep])
