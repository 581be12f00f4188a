"""The nuScenes sensor rigs: calibration, poses and clocks.

Rig `front` (the default): CAM_FRONT, LIDAR_TOP, RADAR_FRONT. Rig `surround`: the six cameras,
LIDAR_TOP and the five radars of nuScenes. Calibration: the calibrated_sensor records of the real
nuScenes slice (vehicle n008, ../shared/nuscenes-real), ego frame x forward, y left, z up; camera
intrinsics scaled from 1600 x 900 to the image size. Clocks: key frames at 2 Hz (the LiDAR sweep of
every 10th turn), cameras 12 Hz, LiDAR 20 Hz, radars 13 Hz (each radar with its own phase), each
frame with +-0.5 ms jitter. A camera exposes a fixed time before the key LiDAR sweep: 12 ms on the
front rig; on the surround rig the median offsets of the real slice, as the spinning LiDAR passes
each camera (CAM_FRONT_LEFT first, CAM_BACK_LEFT last, 43 ms apart).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np
from pyquaternion import Quaternion

from datasets.synthetic.world import KEY_PERIOD_S, SCENE_LEAD_S, Scene, scene_rng
from utils.config import NUSCENES_CAMERAS, NUSCENES_RADARS

CAMERA, LIDAR, RADAR = "CAM_FRONT", "LIDAR_TOP", "RADAR_FRONT"
# every channel; a channel's random stream is 1001 + its position here (the front rig's first)
CHANNELS = (CAMERA, LIDAR, RADAR, *NUSCENES_CAMERAS[1:], *NUSCENES_RADARS[1:])
MODALITY = {ch: "camera" if ch in NUSCENES_CAMERAS else "radar" if ch in NUSCENES_RADARS else "lidar"
            for ch in CHANNELS}
RATE_HZ = {"camera": 12.0, "lidar": 20.0, "radar": 13.0}
PER_KEY = {"camera": 6, "lidar": 10}       # frames per key frame period
JITTER_US = 500


@dataclass(frozen=True)
class Rig:
    """The channels of a world; camera_offset_us: per camera, its exposure time minus the key LiDAR
    sweep's (us)."""
    cameras: Tuple[str, ...]
    radars: Tuple[str, ...]
    camera_offset_us: Tuple[int, ...]

    @property
    def channels(self) -> Tuple[str, ...]:
        """Cameras, LIDAR_TOP, radars: the order of the tables and of rendering."""
        return (*self.cameras, LIDAR, *self.radars)


RIGS = {
    "front": Rig((CAMERA,), (RADAR,), (-12_000,)),
    # real slice, median of (key camera - key LiDAR) timestamps over its 40 samples, to 0.1 ms
    "surround": Rig(NUSCENES_CAMERAS, NUSCENES_RADARS,
                    (-38_200, -30_200, -22_500, -13_100, -3_300, -45_900)),
}


@dataclass(frozen=True)
class Calibration:
    translation: Tuple[float, float, float]   # sensor origin in the ego frame (m)
    rotation: Tuple[float, float, float, float]  # ego <- sensor quaternion, w x y z

    def matrix(self) -> Tuple[np.ndarray, np.ndarray]:
        return Quaternion(self.rotation).rotation_matrix, np.array(self.translation)


CALIBRATION = {
    CAMERA: Calibration((1.72200568478, 0.00475453292289, 1.49491291905),
                        (0.5077241387638071, -0.4973392230703816, 0.49837167536166627, -0.4964832014373754)),
    "CAM_FRONT_RIGHT": Calibration(
        (1.58082565783, -0.499078711449, 1.51749368405),
        (0.20335173766558642, -0.19146333228946724, 0.6785710044972951, -0.6793609166212989)),
    "CAM_BACK_RIGHT": Calibration(
        (1.05945173053, -0.46720294852, 1.55050857555),
        (0.13819187705364147, -0.13796718183628456, -0.6893329941542625, 0.697630335509333)),
    "CAM_BACK": Calibration(
        (0.05524611077, 0.0107882366898, 1.56794286957),
        (0.5067997344989889, -0.4977567019405021, -0.4987849934090844, 0.496594225837321)),
    "CAM_BACK_LEFT": Calibration(
        (1.04852047718, 0.483058131052, 1.56210154484),
        (0.7048620297871717, -0.6907306801461466, -0.11209091960167808, 0.11617345743327073)),
    "CAM_FRONT_LEFT": Calibration(
        (1.5752559464, 0.500519383135, 1.50696032589),
        (0.6812088525125634, -0.6687507165046241, 0.2101702448905517, -0.21108161122114324)),
    LIDAR: Calibration((0.985793, 0.0, 1.84019),
                       (0.706749235646644, -0.015300993788500868, 0.01739745181256607, -0.7070846669051719)),
    RADAR: Calibration((3.412, 0.0, 0.5), (0.9999974259839071, 0.0, 0.0, -0.0022689260808398757)),
    "RADAR_FRONT_RIGHT": Calibration((2.422, -0.8, 0.77),
                                     (0.7087093341000862, 0.0, 0.0, -0.7055005880645404)),
    "RADAR_BACK_RIGHT": Calibration((-0.562, -0.618, 0.53),
                                    (0.04361938736533623, 0.0, 0.0, -0.9990482215818578)),
    "RADAR_BACK_LEFT": Calibration((-0.562, 0.628, 0.53),
                                   (0.0458860416542946, 0.0, 0.0, 0.9989466808500344)),
    "RADAR_FRONT_LEFT": Calibration((2.422, 0.8, 0.78),
                                    (0.7028982997921758, 0.0, 0.0, 0.7112903627557937)),
}
# camera intrinsics at 1600 x 900 (fx, fy, cx, cy) of the real slice; CAM_BACK is the wide one
INTRINSICS_1600x900 = {
    CAMERA: (1252.8131021185304, 1252.8131021185304, 826.588114781398, 469.9846626224581),
    "CAM_FRONT_RIGHT": (1256.7485116440405, 1256.7485116440403, 817.7887570959712, 451.9541780095127),
    "CAM_BACK_RIGHT": (1249.9629280788233, 1249.9629280788233, 825.3768045375984, 462.54816385708756),
    "CAM_BACK": (796.8910634503094, 796.8910634503094, 857.7774326863696, 476.8848988407415),
    "CAM_BACK_LEFT": (1254.9860565800168, 1254.9860565800168, 829.5769333630991, 467.1680561863987),
    "CAM_FRONT_LEFT": (1257.8625342125129, 1257.8625342125129, 827.2410631095686, 450.915498205774),
}


def camera_matrix(height: int, width: int, channel: str = CAMERA) -> np.ndarray:
    """Intrinsics of camera `channel` for a height x width image (pixel edges at integers scale
    exactly)."""
    fx, fy, cx, cy = INTRINSICS_1600x900[channel]
    scale = np.diag([width / 1600.0, height / 900.0, 1.0])
    return scale @ np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


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


def timeline(scene: Scene, n_keys: int, seed: int, rig: Rig) -> Dict[str, List[Frame]]:
    """All frames of a scene per channel of `rig` (in `rig.channels` order), from SCENE_LEAD_S
    before the first key frame to the last."""
    rng = scene_rng(seed, scene.index, 1000)        # one clock stream, drawn in channel order
    frames = {channel: _periodic(scene, channel, n_keys, offset_us, rng)
              for channel, offset_us in zip(rig.cameras, rig.camera_offset_us)}
    frames[LIDAR] = _periodic(scene, LIDAR, n_keys, 0, rng)
    sample_ts = np.array([f.timestamp for f in frames[LIDAR] if f.key >= 0])
    for channel in rig.radars:
        frames[channel] = _free_running(scene, channel, sample_ts, rng)
    return frames


def _periodic(scene: Scene, channel: str, n_keys: int, offset_us: int,
              rng: np.random.Generator) -> List[Frame]:
    """A camera or the LiDAR: every PER_KEY-th frame is a key frame, offset_us from the key time."""
    rate, n = RATE_HZ[MODALITY[channel]], PER_KEY[MODALITY[channel]]
    j = np.arange(-int(SCENE_LEAD_S * rate), n * (n_keys - 1) + 1)
    ts = scene.t0_us + offset_us + np.round(j * 1e6 / rate).astype(np.int64)
    ts += rng.integers(-JITTER_US, JITTER_US + 1, len(j))
    key = np.where(j % n == 0, j // n, -1)
    task = np.maximum(-(-j // n), 0)
    return [Frame(channel, int(t), int(k), int(a), i) for i, (t, k, a) in enumerate(zip(ts, key, task))]


def _free_running(scene: Scene, channel: str, sample_ts: np.ndarray,
                  rng: np.random.Generator) -> List[Frame]:
    """A radar at its own random phase; its key frames are the sweeps nearest the key times
    `sample_ts` (us), and it ends with the last of them."""
    n_keys = len(sample_ts)
    period = 1e6 / RATE_HZ["radar"]
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
    return [Frame(channel, int(t), int(k), int(a), i) for i, (t, k, a) in enumerate(zip(ts, key, task))]


def frame_rng(seed: int, scene: Scene, frame: Frame) -> np.random.Generator:
    return np.random.default_rng([seed, scene.index, 1001 + CHANNELS.index(frame.channel), frame.index])
