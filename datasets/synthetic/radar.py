"""The radars: ARS408-like on the shared ray caster, writing the devkit's 18 PCD fields."""
from __future__ import annotations

from typing import Dict

import numpy as np

from datasets.synthetic import objects as ob
from datasets.synthetic.config import RadarConfig
from datasets.synthetic.render import SphericalGrid, cast
from datasets.synthetic.sensors import RADAR, sensor_pose
from datasets.synthetic.world import Scene

RADAR_FIELDS = ("x y z dyn_prop id rcs vx vy vx_comp vy_comp is_quality_valid ambig_state x_rms "
                "y_rms invalid_state pdh0 vx_rms vy_rms").split()
RADAR_DTYPE = np.dtype([(name, t) for name, t in zip(RADAR_FIELDS, (
    "<f4", "<f4", "<f4", "i1", "<i2", "<f4", "<f4", "<f4", "<f4", "<f4", "i1", "i1", "i1", "i1", "i1",
    "i1", "i1", "i1"))])
NEAR_FOV_DEG, NEAR_RANGE_M = 45.0, 70.0    # ARS408-like near and far scans
FAR_FOV_DEG, FAR_RANGE_M = 9.0, 200.0
REAL, GHOST, CLUTTER = 0, 1, 2             # origin of a detection (`origin` array, not in the file)
# expected detections per object (or per metre of width for extended surfaces), RCS range (dBsm)
_DETECT = {ob.CAR: (3.0, 5, 15), ob.VAN: (3.5, 8, 18), ob.TRUCK: (5.0, 15, 25), ob.BUS: (5.0, 15, 25),
           ob.PERSON: (0.8, -5, 3), ob.BICYCLE: (1.0, 0, 8), ob.MINIBIKE: (1.2, 2, 10),
           ob.POLE: (1.2, 0, 8), ob.TREE: (0.6, -5, 5), ob.SIGNBOARD: (1.0, 5, 15)}
_PER_METRE = {ob.BUILDING: (1 / 3, 5, 20), ob.WALL: (1 / 4, 0, 10), ob.FENCE: (1 / 4, 0, 10)}


class Radar:
    """ARS408-like radar at any mount (the same model for all five nuScenes radars): clusters from
    a horizontal ray fan at the sensor height (no elevation) about the sensor's x axis (near scan
    +-NEAR_FOV_DEG, far scan +-FAR_FOV_DEG), range and azimuth noise, RCS, radial velocities, plus
    multipath ghosts and clutter marked by high false-alarm probability (pdh0) and some invalid
    states. Points in the sensor frame."""

    def __init__(self, cfg: RadarConfig):
        self.cfg = cfg
        step = np.radians(0.2)
        n = int(round(2 * NEAR_FOV_DEG / 0.2))
        self.grid = SphericalGrid(np.zeros(1), -np.radians(NEAR_FOV_DEG), step, n)
        self.azimuth = -np.radians(NEAR_FOV_DEG) + (np.arange(n) + 0.5) * step

    def sweep(self, scene: Scene, tau: float, rng: np.random.Generator,
              channel: str = RADAR) -> Dict[str, np.ndarray]:
        """Radar `channel` at scene time tau -> records (RADAR_DTYPE, sorted by range), inst N
        int32, origin N (REAL/GHOST/CLUTTER)."""
        rot, pos = sensor_pose(scene, channel, tau)
        prims = scene.prims_at(tau)
        hits = cast(self.grid, rot, pos, prims, FAR_RANGE_M)
        v_sensor = (sensor_pose(scene, channel, tau + 1e-3)[1]
                    - sensor_pose(scene, channel, tau - 1e-3)[1]) / 2e-3
        real = self._surface(hits, prims, v_sensor, rng)
        ghost = self._ghosts(real, rng)
        clutter = self._clutter(rot, v_sensor, rng, 1 if len(real["r"]) + len(ghost["r"]) == 0 else 0)
        parts = (real, ghost, clutter)
        det = {k: np.concatenate([d[k] for d in parts]) for k in real}
        origin = np.concatenate([np.full(len(d["r"]), o) for o, d in zip((REAL, GHOST, CLUTTER), parts)])
        keep = np.lexsort((det["r"], origin))[:self.cfg.max_points]      # full: clutter dropped first
        keep = keep[np.argsort(det["r"][keep], kind="stable")]
        det = {k: v[keep] for k, v in det.items()}
        records = self._records(det, origin[keep], rng)
        return {"records": records, "inst": det["inst"].astype(np.int32), "origin": origin[keep]}

    def _surface(self, hits, prims, v_sensor: np.ndarray, rng: np.random.Generator) -> Dict[str, np.ndarray]:
        """Detections on solids: each object yields about its expected count (per metre of width for
        facades, walls, fences), fewer at grazing incidence and long range."""
        rng_m, az = hits.t_m, self.azimuth
        env = (rng_m < NEAR_RANGE_M) | ((rng_m < FAR_RANGE_M) & (np.abs(az) <= np.radians(FAR_FOV_DEG)))
        ray = np.flatnonzero(env & (hits.prim >= 0))
        pid = hits.prim[ray]
        cls = prims.cls[pid]
        group = np.where(prims.inst[pid] >= 0, prims.inst[pid], len(prims) + pid)
        _, inverse, n_rays = np.unique(group, return_inverse=True, return_counts=True)
        width_m = n_rays[inverse] * self.grid.step * rng_m[ray]
        rate, rcs_lo, rcs_hi = np.zeros(len(ray)), np.zeros(len(ray)), np.zeros(len(ray))
        for table, per_metre in ((_DETECT, False), (_PER_METRE, True)):
            for c, (expected, lo, hi) in table.items():
                m = cls == c
                rate[m] = expected * (width_m[m] if per_metre else 1.0)
                rcs_lo[m], rcs_hi[m] = lo, hi
        cos = np.abs((hits.normal[ray] * hits.dirs[ray]).sum(1))
        p = self.cfg.detection_rate * rate / n_rays[inverse] * cos * np.clip(1.3 - rng_m[ray] / 150, 0.3, 1)
        det = rng.random(len(ray)) < np.minimum(p, 1.0)
        ray, pid = ray[det], pid[det]
        unit = hits.dirs[ray]
        v_obj = prims.velocity[pid]
        return {"r": rng_m[ray] + rng.normal(0, self.cfg.range_noise_m, len(ray)),
                "a": az[ray] + rng.normal(0, np.radians(self.cfg.azimuth_noise_deg), len(ray)),
                "v": ((v_obj - v_sensor) * unit).sum(1), "vc": (v_obj * unit).sum(1),
                "rcs": rng.uniform(rcs_lo[det], rcs_hi[det]), "inst": prims.inst[pid].astype(np.int64)}

    def _ghosts(self, real: Dict[str, np.ndarray], rng: np.random.Generator) -> Dict[str, np.ndarray]:
        """Multipath: a double bounce (twice the range and Doppler) or a path a few metres longer."""
        n = rng.poisson(self.cfg.ghost_rate * len(real["r"])) if len(real["r"]) else 0
        src = rng.integers(0, max(len(real["r"]), 1), n)
        double = rng.random(n) < 0.5
        factor = np.where(double, 2.0, 1.0)
        return {"r": np.where(double, 2 * real["r"][src], real["r"][src] + rng.uniform(2, 6, n)),
                "a": real["a"][src], "v": factor * real["v"][src], "vc": factor * real["vc"][src],
                "rcs": real["rcs"][src] - rng.uniform(3, 10, n), "inst": real["inst"][src]}

    def _clutter(self, rot: np.ndarray, v_sensor: np.ndarray, rng: np.random.Generator,
                 at_least: int) -> Dict[str, np.ndarray]:
        """Static false alarms anywhere in the near scan."""
        n = max(rng.poisson(self.cfg.clutter), at_least)
        a = rng.uniform(-np.radians(NEAR_FOV_DEG), np.radians(NEAR_FOV_DEG), n)
        unit = np.column_stack([np.cos(a), np.sin(a), np.zeros(n)]) @ rot.T
        return {"r": rng.uniform(2.0, NEAR_RANGE_M, n), "a": a, "v": -(v_sensor * unit).sum(1),
                "vc": np.zeros(n), "rcs": rng.uniform(-10, 0, n), "inst": np.full(n, -1)}

    def _records(self, det: Dict[str, np.ndarray], origin: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
        """The ARS408 cluster fields (state codes as documented in the devkit's RadarPointCloud)."""
        r, a, v, vc = det["r"], det["a"], det["v"], det["vc"]
        n = len(r)
        rec = np.zeros(n, RADAR_DTYPE)
        cos_a, sin_a = np.cos(a), np.sin(a)
        rec["x"], rec["y"] = r * cos_a, r * sin_a
        rec["vx"], rec["vy"] = np.round(v * cos_a, 2), np.round(v * sin_a, 2)
        rec["vx_comp"], rec["vy_comp"] = vc * cos_a, vc * sin_a
        rec["rcs"] = np.round(det["rcs"] * 2) / 2
        rec["id"] = np.arange(n)
        moving = np.abs(vc) > 0.5
        dyn = np.where(moving, np.where(vc < 0, 2, 0), np.where(rng.random(n) < 0.2, 3, 1))
        real, ghost, clutter = origin == REAL, origin == GHOST, origin == CLUTTER
        dyn[clutter] = rng.choice([1, 3, 4], clutter.sum())
        rec["dyn_prop"] = dyn
        rec["is_quality_valid"] = 1
        rec["ambig_state"] = 3
        rec["x_rms"] = np.clip(19 + np.round(r / 60), 0, 31)
        rec["y_rms"] = np.clip(19 + np.round(r / 40), 0, 31)
        rec["vx_rms"] = rng.integers(16, 19, n)
        rec["vy_rms"] = 3
        rec["pdh0"] = np.where(real, 1, np.where(ghost, rng.integers(5, 8, n), rng.integers(3, 8, n)))
        invalid = np.zeros(n, np.int8)
        bad = real & (rng.random(n) < self.cfg.invalid_rate)
        invalid[bad] = rng.choice([1, 2, 3, 5, 7, 13, 14], bad.sum())
        flip = bad & (rng.random(n) < 0.3)          # some invalid by Doppler ambiguity instead
        invalid[flip] = 0
        rec["ambig_state"][flip] = rng.choice([0, 1, 2], flip.sum())
        mirror = ghost & (rng.random(n) < 0.5)
        invalid[mirror] = 6
        low = clutter & (rng.random(n) < 0.5)
        invalid[low] = rng.choice([1, 3, 14], low.sum())
        rec["invalid_state"] = invalid
        return rec
