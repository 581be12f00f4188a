"""LIDAR_TOP: a spinning LiDAR (HDL-32E-like by default) on the shared ray caster."""
from __future__ import annotations

from typing import Dict

import numpy as np

from datasets.synthetic.config import LidarConfig
from datasets.synthetic.render import SphericalGrid, cast
from datasets.synthetic.sensors import LIDAR, sensor_pose
from datasets.synthetic.textures import surface
from datasets.synthetic.world import Scene


class Lidar:
    """Spinning LiDAR: beams x azimuth_steps rays, first return within range_m, Gaussian range
    noise, random dropout. Points in the sensor frame, azimuth-major (firing) order."""

    def __init__(self, cfg: LidarConfig):
        self.cfg = cfg
        elevations = np.radians(np.linspace(cfg.elevation_min_deg, cfg.elevation_max_deg, cfg.beams))
        self.grid = SphericalGrid(elevations, -np.pi, 2 * np.pi / cfg.azimuth_steps, cfg.azimuth_steps)

    def sweep(self, scene: Scene, tau: float, rng: np.random.Generator,
              n_instances: int = 0) -> Dict[str, np.ndarray]:
        """-> points N x 5 float32 (x, y, z, intensity 0..255, ring), inst N int32 (-1 none),
        coverage (per instance rays without occluders, when n_instances > 0)."""
        rot, pos = sensor_pose(scene, LIDAR, tau)
        prims = scene.prims_at(tau)
        hits = cast(self.grid, rot, pos, prims, self.cfg.range_m, coverage_instances=n_instances)
        surf = surface(hits, prims, scene.road)
        order = np.arange(len(hits.t_m)).reshape(self.grid.shape).T.ravel()   # azimuth-major
        keep = order[np.isfinite(hits.t_m[order])]
        keep = keep[rng.random(len(keep)) >= self.cfg.dropout]
        t = hits.t_m[keep] + rng.normal(0.0, self.cfg.noise_m, len(keep))
        cos = np.abs((hits.normal[keep] * hits.dirs[keep]).sum(1))
        intensity = np.round(np.clip(255 * surf.reflectivity[keep] * (0.25 + 0.75 * cos)
                                     / (1 + (t / 40.0) ** 2), 0, 255))
        ring = keep // self.grid.shape[1]
        points = np.column_stack([self.grid.dirs[keep] * t[:, None], intensity, ring]).astype(np.float32)
        prim = hits.prim[keep]
        inst = np.where(prim >= 0, prims.inst[np.maximum(prim, 0)], -1).astype(np.int32)
        return {"points": points, "inst": inst, "coverage": hits.coverage}
