"""The cameras: image formation from the ray caster's hits, with its dense depth and class mask.

Image: textured albedo lit by sun and sky (Lambert + sky reflection on glossy surfaces), haze that
fades colour towards the horizon colour with distance, sky gradient with sun glow and clouds, optics
blur and sensor noise. Depth: camera z of the first surface (m); class: ADE20K-150 id (sky 2).
"""
from __future__ import annotations

import functools
from typing import Dict

import cv2
import numpy as np

from datasets.synthetic.config import CameraConfig
from datasets.synthetic.render import PinholeGrid, cast
from datasets.synthetic.sensors import CAMERA, camera_matrix, sensor_pose
from datasets.synthetic.textures import fbm, surface
from datasets.synthetic.world import Lighting, Scene

FAR_M = 1000.0                             # farther solids and ground are sky (haze hides them)
DEPTH_MAX_MM = 65535                       # uint16 millimetres: farther surfaces are written as 0


@functools.lru_cache(maxsize=2)                     # the pipeline renders one camera's frames in a row
def _grid(height: int, width: int, channel: str) -> PinholeGrid:
    return PinholeGrid(camera_matrix(height, width, channel), height, width)


def sky_color(dirs: np.ndarray, light: Lighting, salt: int, clouds: bool = True) -> np.ndarray:
    """dirs: N x 3 unit (street frame) -> N x 3 BGR 0..1."""
    up = np.clip(dirs[:, 2], 0.0, 1.0)
    t = np.sqrt(up)[:, None]
    color = light.horizon * (1 - t) + light.zenith * t
    glow = np.clip(dirs @ light.sun_dir, 0.0, 1.0) ** 48 * light.sun
    color = color + glow[:, None] * np.array([0.6, 0.8, 0.9])
    if not clouds:
        return color
    height = np.maximum(dirs[:, 2], 0.03)
    cloud = fbm(dirs[:, 0] / height * 1.5, dirs[:, 1] / height * 1.5, salt, octaves=4)
    cover = np.clip((cloud - 0.5) * 3.0, 0.0, 1.0) * np.clip(up * 8, 0, 1)
    return color * (1 - 0.7 * cover[:, None]) + 0.95 * 0.7 * cover[:, None]


def render_camera(scene: Scene, tau: float, cfg: CameraConfig, rng: np.random.Generator,
                  with_truth: bool, channel: str = CAMERA) -> Dict[str, np.ndarray]:
    """Camera `channel` at scene time tau -> image H x W x 3 uint8 BGR; with_truth adds depth_mm
    H x W uint16 (camera z, 0 = none) and seg H x W uint8 (ADE20K-150 ids)."""
    h, w = cfg.height, cfg.width
    grid = _grid(h, w, channel)
    rot, pos = sensor_pose(scene, channel, tau)
    prims = scene.prims_at(tau)
    hits = cast(grid, rot, pos, prims, FAR_M)
    surf = surface(hits, prims, scene.road)
    light = scene.light
    hit = np.isfinite(hits.t_m)
    image = np.empty((h * w, 3), np.float32)
    image[~hit] = sky_color(hits.dirs[~hit], light, salt=1000 + scene.index)
    n = hits.normal[hit].astype(np.float32)
    d = hits.dirs[hit].astype(np.float32)
    lambert = np.clip(n @ light.sun_dir.astype(np.float32), 0.0, 1.0)
    shade = np.float32(light.ambient) * (0.65 + 0.35 * n[:, 2]) + np.float32(light.sun) * lambert
    lit = surf.albedo[hit].astype(np.float32) * shade[:, None]
    glossy = np.flatnonzero(surf.gloss[hit] > 0)
    dn = (d[glossy] * n[glossy]).sum(1)
    reflected = d[glossy] - 2 * dn[:, None] * n[glossy]
    fresnel = (surf.gloss[hit][glossy] * (0.35 + 0.65 * (1 - np.abs(dn)) ** 3))[:, None]
    lit[glossy] = lit[glossy] * (1 - fresnel) + sky_color(reflected, light, 0, clouds=False) * fresnel
    fog = np.exp(np.float32(-cfg.haze_per_m) * hits.t_m[hit].astype(np.float32))[:, None]
    image[hit] = lit * fog + light.horizon.astype(np.float32) * (1 - fog)
    image = (np.clip(image, 0, 1) * 255).reshape(h, w, 3)
    if cfg.blur_sigma_px > 0:
        image = cv2.GaussianBlur(image, (0, 0), cfg.blur_sigma_px)
    image += np.float32(cfg.noise_std) * rng.standard_normal(image.shape, dtype=np.float32)
    out = {"image": np.clip(np.round(image), 0, 255).astype(np.uint8)}
    if with_truth:
        z_m = np.where(hit, hits.t_m * grid.dirs[:, 2], 0.0)
        z_mm = np.round(z_m * 1000.0)
        out["depth_mm"] = np.where(z_mm <= DEPTH_MAX_MM, z_mm, 0).astype(np.uint16).reshape(h, w)
        out["seg"] = surf.cls.reshape(h, w)
    return out
