"""The LiDAR sweeps around a key frame (devkit tables) and the annotated moving objects at each.

    plan = sweep_plan(nusc, record, before=10, after=10)      # SweepPlan: what exists, what not
    moving = MovingBoxes(nusc, speed_mps=0.5)(sweep.sample_data_token)   # devkit Boxes, global
    inside = in_boxes(xyz_global, moving, wlh_factor=1.1)                # N bool

Sweeps are the `prev` / `next` chain of the key frame's LIDAR_TOP sample_data (20 Hz on nuScenes
and on the synthetic world; the neighbouring key frames are sweeps of the chain too). A position
whose file is not on disk is skipped and named, and the walk goes on past it; the walk stops where
the chain ends (scene start or end, or tables trimmed like the real slice's). Boxes are the
devkit's `NuScenes.get_boxes` (annotations linearly interpolated between the key frames around a
sweep, global frame) and `points_in_box`; an object is moving when the devkit's `box_velocity`
(centred difference of its annotations) exceeds `speed_mps`, or is unknown (an object annotated
once: removing a parked car's points of other sweeps costs coverage only, keeping a moving one's
smears).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List

import numpy as np

from datasets.geometry import pose_matrix
from datasets.infos import LIDAR


@dataclass
class Sweep:
    """One LiDAR sweep on disk: its recorded path, its place in the chain (0 = key frame,
    negative = earlier) and its poses (4 x 4 float64 sensor -> ego, ego -> global)."""
    path: str
    offset: int
    sample_data_token: str
    timestamp_us: int
    sensor2ego: np.ndarray
    ego2global: np.ndarray


@dataclass
class SweepPlan:
    """The sweeps of one key frame that exist, in time order, and why any are missing:
    `missing` (recorded paths not on disk), `chain_end` {"before": k, "after": k} where the chain
    ended k positions from the key frame, short of what was asked."""
    sweeps: List[Sweep]
    wanted: int
    missing: List[str] = field(default_factory=list)
    chain_end: Dict[str, int] = field(default_factory=dict)

    def shortfall(self) -> str:
        """'' when every wanted sweep was used, else a sentence saying what is missing."""
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} not on disk (first: {self.missing[0]})")
        parts += [f"the chain ends {k} sweep(s) {side} the key frame" for side, k in self.chain_end.items()]
        return (f"{len(self.sweeps)} of {self.wanted} sweeps used: " + "; ".join(parts)) if parts else ""


def _sweep(nusc, sd: Dict[str, Any], offset: int) -> Sweep:
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    pose = nusc.get("ego_pose", sd["ego_pose_token"])
    return Sweep(sd["filename"], offset, sd["token"], sd["timestamp"],
                 pose_matrix(cs["translation"], cs["rotation"]),
                 pose_matrix(pose["translation"], pose["rotation"]))


def sweep_plan(nusc, record: Dict[str, Any], before: int, after: int) -> SweepPlan:
    """The key frame's LIDAR_TOP sweep and up to `before` / `after` chain positions around it
    (info record of datasets/infos.py, or a released one: found through its sample_token). A
    token absent from the tables raises KeyError."""
    lidar = record["lidar_infos"][LIDAR]
    token = lidar.get("sample_data_token") or nusc.get("sample", record["sample_token"])["data"][LIDAR]
    key = nusc.get("sample_data", token)
    plan = SweepPlan([], before + after + 1)
    found = {0: key}
    for side, link, count, sign in (("before", "prev", before, -1), ("after", "next", after, 1)):
        sd = key
        for step in range(1, count + 1):
            if not sd[link]:
                plan.chain_end[side] = step - 1
                break
            sd = nusc.get("sample_data", sd[link])
            found[sign * step] = sd
    for offset in sorted(found):
        sd = found[offset]
        if os.path.isfile(os.path.join(nusc.dataroot, sd["filename"])):
            plan.sweeps.append(_sweep(nusc, sd, offset))
        else:
            plan.missing.append(sd["filename"])
    return plan


class MovingBoxes:
    """Annotated boxes of moving objects at a sample_data's time (global frame), with the
    per-annotation speeds cached."""

    def __init__(self, nusc, speed_mps: float):
        self.nusc, self.speed_mps = nusc, speed_mps
        self.moving: Dict[str, bool] = {}

    def _is_moving(self, annotation_token: str) -> bool:
        if annotation_token not in self.moving:
            speed = float(np.linalg.norm(self.nusc.box_velocity(annotation_token)))
            self.moving[annotation_token] = not np.isfinite(speed) or speed > self.speed_mps
        return self.moving[annotation_token]

    def __call__(self, sample_data_token: str) -> list:
        """The devkit Boxes (global frame) of the moving objects at this sample_data's time."""
        return [box for box in self.nusc.get_boxes(sample_data_token) if self._is_moving(box.token)]


def in_boxes(xyz_global: np.ndarray, boxes: list, wlh_factor: float) -> np.ndarray:
    """N bool: the global N x 3 points inside any of the devkit `boxes` (scaled by wlh_factor)."""
    from nuscenes.utils.geometry_utils import points_in_box
    inside = np.zeros(len(xyz_global), dtype=bool)
    for box in boxes:
        inside |= points_in_box(box, xyz_global.T, wlh_factor=wlh_factor)
    return inside
