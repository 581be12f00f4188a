"""Knobs of the synthetic world (docs/synthetic.md), loaded like the main Config.

    cfg = load_synthetic_config("configs/synthetic_world.yaml", ["lidar.beams=64", "camera.width=800"])

Sections mirror the sensors; every value is checked by `utils.config.apply_mapping` (unknown key or
wrong type -> ConfigError naming the key).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import yaml

from utils.config import ConfigError, apply_mapping, parse_overrides

RIG_NAMES = ("front", "surround")         # datasets/synthetic/sensors.py RIGS


@dataclass
class WorldConfig:
    object_density: float = 1.0          # multiplies vehicles, pedestrians, cyclists, motorbikes
    street_furniture_density: float = 1.0  # multiplies trees, poles, signs
    ego_speed_mps: float = 8.0           # mean ego speed; each scene draws 0.4x..1.4x of it


@dataclass
class CameraConfig:
    height: int = 225                    # pixels; each camera's intrinsics are scaled from 900x1600
    width: int = 400
    haze_per_m: float = 0.008            # atmospheric extinction: colour -> haze by exp(-k d)
    noise_std: float = 2.0               # Gaussian sensor noise, 0..255 units
    blur_sigma_px: float = 0.5           # optics blur, 0 = off
    jpeg_quality: int = 90
    sweeps: bool = True                  # write the 12 Hz non-key images (the costly part)


@dataclass
class LidarConfig:
    beams: int = 32                      # evenly spaced over the elevation range
    elevation_min_deg: float = -30.67
    elevation_max_deg: float = 10.67
    azimuth_steps: int = 1080
    range_m: float = 80.0                # no return beyond
    noise_m: float = 0.01                # Gaussian range noise
    dropout: float = 0.02                # fraction of returns lost at random


@dataclass
class RadarConfig:
    range_noise_m: float = 0.2           # Gaussian, ARS408-like
    azimuth_noise_deg: float = 0.3
    detection_rate: float = 1.0          # multiplies the expected detections per surface
    clutter: float = 8.0                 # mean clutter detections per sweep (Poisson)
    ghost_rate: float = 0.15             # multipath ghosts per real detection
    invalid_rate: float = 0.15           # real detections flagged invalid (dropped by the devkit)
    max_points: int = 125                # ARS408 cluster list length


@dataclass
class SyntheticConfig:
    """The whole world: sizes, seed and the sensor sections."""
    scenes: int = 8
    samples_per_scene: int = 20          # key frames (2 Hz) per scene
    val_fraction: float = 0.25           # last scenes go to "val" (at least one when scenes > 1)
    seed: int = 0
    workers: int = 2                     # processes; output does not depend on it
    rig: str = "front"                   # front: CAM_FRONT + RADAR_FRONT; surround: 6 cameras, 5 radars
    world: WorldConfig = field(default_factory=WorldConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    lidar: LidarConfig = field(default_factory=LidarConfig)
    radar: RadarConfig = field(default_factory=RadarConfig)


def load_synthetic_config(path: Optional[str | Path] = None, overrides: Sequence[str] = (),
                          values: Optional[Dict[str, Any]] = None) -> SyntheticConfig:
    """Defaults <- YAML at `path` <- nested `values` <- `key=value` overrides; then validated."""
    cfg = SyntheticConfig()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"synthetic config {path} not found (the shipped one is "
                              "configs/synthetic_world.yaml)")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"synthetic config {path} must hold a mapping at the top level")
        apply_mapping(cfg, data)
    apply_mapping(cfg, values or {})
    apply_mapping(cfg, parse_overrides(overrides))
    validate(cfg)
    return cfg


def validate(cfg: SyntheticConfig) -> None:
    checks = [
        (cfg.scenes >= 1, "scenes must be >= 1"),
        (cfg.samples_per_scene >= 1, "samples_per_scene must be >= 1"),
        (0.0 <= cfg.val_fraction < 1.0, "val_fraction must be in [0, 1)"),
        (cfg.workers >= 1, "workers must be >= 1"),
        (cfg.rig in RIG_NAMES, f"rig must be one of {', '.join(RIG_NAMES)}, not {cfg.rig!r}"),
        (cfg.camera.height >= 8 and cfg.camera.width >= 8, "camera.height/width must be >= 8"),
        (1 <= cfg.camera.jpeg_quality <= 100, "camera.jpeg_quality must be in 1..100"),
        (cfg.lidar.beams >= 1 and cfg.lidar.azimuth_steps >= 8, "lidar.beams >= 1, azimuth_steps >= 8"),
        (cfg.lidar.elevation_min_deg < cfg.lidar.elevation_max_deg, "lidar elevation range is empty"),
        (0.0 <= cfg.lidar.dropout < 1.0, "lidar.dropout must be in [0, 1)"),
        (1 <= cfg.radar.max_points <= 32767, "radar.max_points must be in 1..32767"),
        (cfg.world.object_density >= 0 and cfg.world.street_furniture_density >= 0,
         "densities must be >= 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"synthetic config: {message}")


def config_dict(cfg: SyntheticConfig) -> Dict[str, Any]:
    return dataclasses.asdict(cfg)
