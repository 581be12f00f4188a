"""The nuScenes sensor rig (CAM_FRONT, LIDAR_TOP, RADAR_FRONT): calibration, poses and clocks.

Calibration: the calibrated_sensor records of the real nuScenes slice (vehicle n008), ego frame x
forward, y left, z up; CAM_FRONT intrinsics scaled from 1600 x 900 to the image size. Clocks: key
frames at 2 Hz (the LiDAR sweep of every 10th turn), camera 12 Hz, LiDAR 20 Hz, radar 13 Hz, each
with +-0.5 ms jitter.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np
from pyquaternion import Quaternion

from datasets.synthetic.world import KEY_PERIOD_S, SCENE_LEAD_S, Scene, scene_rng

CAMERA, LIDAR, RADAR = "CAM_FRONT", "LIDAR_TOP", "RADAR_FRONT"
CHANNELS = (CAMERA, LIDAR, RADAR)
MODALITY = {CAMERA: "camera", LIDAR: "lidar", RADAR: "radar"}
RATE_HZ = {CAMERA: 12.0, LIDAR: 20.0, RADAR: 13.0}
CAMERA_OFFSET_US = -12_000                 # camera exposure vs the LiDAR key time
JITTER_US = 500


@dataclass(frozen=True)
class Calibration:
    translation: Tuple[float, float, float]   # sensor origin in the ego frame (m)
    rotation: Tuple[float, float, float, float]  # ego <- sensor quaternion, w x y z

    def matrix(self) -> Tuple[np.ndarray, np.ndarray]:
        return Quaternion(self.rotation).rotation_matrix, np.array(self.translation)


CALIBRATION = {
    CAMERA: Calibration((1.72200568478, 0.00475453292289, 1.49491291905),
                        (0.5077241387638071, -0.4973392230703816, 0.49837167536166627, -0.4964832014373754)),
    LIDAR: Calibration((0.985793, 0.0, 1.84019),
                       (0.706749235646644, -0.015300993788500868, 0.01739745181256607, -0.7070846669051719)),
    RADAR: Calibration((3.412, 0.0, 0.5), (0.9999974259839071, 0.0, 0.0, -0.0022689260808398757)),
}
K_1600x900 = np.array([[1252.8131021185304, 0.0, 826.588114781398],
                       [0.0, 1252.8131021185304, 469.9846626224581],
                       [0.0, 0.0, 1.0]])


def camera_matrix(height: int, width: int) -> np.ndarray:
    """CAM_FRONT intrinsics for a height x width image (pixel edges at integers scale exactly)."""
    scale = np.diag([width / 1600.0, height / 900.0, 1.0])
    return scale @ K_1600x900


def sensor_pose(scene: Scene, channel: str, tau: float) -> Tuple[np.ndarray, np.ndarray]:
    """(street <- sensor rotation, sensor position) at scene time tau."""
    ego_rot, ego_pos = scene.ego_pose(tau)
    rot, pos = CALIBRATION[channel].matrix()
    return ego_rot @ rot, ego_rot @ pos + ego_pos


@dataclass
class Frame:
    """One sample_data: channel, timestamp (us), key-frame index (-1 for a sweep) and the key frame
    it is rendered and filed with (the next key frame of its channel)."""
    channel: str
    timestamp: int
    key: int
    task: int
    index: int                             # position in the channel's stream (seeds its noise)

    def tau(self, scene: Scene) -> float:
        return (self.timestamp - scene.t0_us) * 1e-6


def timeline(scene: Scene, n_keys: int, seed: int) -> Dict[str, List[Frame]]:
    """All frames of a scene per channel, from SCENE_LEAD_S before the first key frame to the last."""
    rng = scene_rng(seed, scene.index, 1000)
    frames: Dict[str, List[Frame]] = {}
    per_key = {CAMERA: 6, LIDAR: 10}
    for channel, n in per_key.items():
        offset = CAMERA_OFFSET_US if channel == CAMERA else 0
        j = np.arange(-int(SCENE_LEAD_S * RATE_HZ[channel]), n * (n_keys - 1) + 1)
        ts = scene.t0_us + offset + np.round(j * 1e6 / RATE_HZ[channel]).astype(np.int64)
        ts += rng.integers(-JITTER_US, JITTER_US + 1, len(j))
        key = np.where(j % n == 0, j // n, -1)
        task = np.maximum(-(-j // n), 0)
        frames[channel] = [Frame(channel, int(t), int(k), int(a), i)
                           for i, (t, k, a) in enumerate(zip(ts, key, task))]
    sample_ts = np.array([f.timestamp for f in frames[LIDAR] if f.key >= 0])
    period = 1e6 / RATE_HZ[RADAR]
    phase = rng.uniform(0, period)
    j = np.arange(int(np.floor((-SCENE_LEAD_S * 1e6 - phase) / period)),
                  int(np.ceil(((n_keys - 1) * KEY_PERIOD_S * 1e6 + period) / period)) + 1)
    ts = scene.t0_us + np.round(phase + j * period).astype(np.int64)
    ts += rng.integers(-JITTER_US, JITTER_US + 1, len(j))
    nearest = np.abs(ts[None, :] - sample_ts[:, None]).argmin(1)
    ts = ts[(ts >= scene.t0_us - SCENE_LEAD_S * 1e6) & (ts <= ts[nearest[-1]])]
    key = np.full(len(ts), -1)
    key[np.abs(ts[None, :] - sample_ts[:, None]).argmin(1)] = np.arange(n_keys)
    key_pos = np.flatnonzero(key >= 0)
    task = np.searchsorted(key_pos, np.arange(len(ts)))
    frames[RADAR] = [Frame(RADAR, int(t), int(k), int(a), i)
                     for i, (t, k, a) in enumerate(zip(ts, key, task))]
    return frames


def frame_rng(seed: int, scene: Scene, frame: Frame) -> np.random.Generator:
    return np.random.default_rng([seed, scene.index, 1001 + CHANNELS.index(frame.channel), frame.index])
