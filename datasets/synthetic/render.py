"""Vectorised ray casting over analytic solids (boxes, cylinders, spheres) and the ground z = 0.

One caster serves every sensor. A ray grid (pinhole camera, spinning LiDAR, radar fan) holds unit
directions from one origin; each solid is tested only against the rays inside its conservative
window on that grid, and all (ray, solid) pairs are intersected with a handful of array operations
(a Python loop runs over chunks of solids, never over rays or pixels).

    hits = cast(PinholeGrid(K, 225, 400), cam_rot, cam_pos, prims, far_m=300.0)
    hits.t_m.reshape(225, 400)        # ray length (m), inf where nothing was hit (sky)
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import List, Optional, Tuple

import numpy as np

BOX, CYLINDER, SPHERE = 0, 1, 2
NO_HIT, GROUND = -1, -2               # `Hits.prim` values that are not solids
EPS_M = 1e-6
NEAR_M = 0.05                         # camera near plane for window clipping
_CHUNK_RAYS = 0.25                    # an early-z step takes solids worth ~1/4 of the rays in pairs
_SIGNS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float)
_EDGES = np.array([(a, b) for a in range(8) for b in range(a + 1, 8)
                   if np.abs(_SIGNS[a] - _SIGNS[b]).sum() == 2])       # the 12 box edges


@dataclass
class Primitives:
    """P solids in the street frame. A solid is a unit shape scaled by `half` in its local frame.

    kind: P int8 (BOX, CYLINDER with axis local z and half = (r, r, h/2), SPHERE with half = (r, r, r))
    center: P x 3 (m); rot: P x 3 x 3 street <- local; half: P x 3 (m)
    cls: P uint8 ADE20K-150 id; material: P int16 (textures.py); color: P x 3 BGR 0..1;
    param: P x 4 texture parameters; inst: P int32 annotated instance (-1: none);
    velocity: P x 3 (m/s, street frame)
    """
    kind: np.ndarray
    center: np.ndarray
    rot: np.ndarray
    half: np.ndarray
    cls: np.ndarray
    material: np.ndarray
    color: np.ndarray
    param: np.ndarray
    inst: np.ndarray
    velocity: np.ndarray

    def __len__(self) -> int:
        return len(self.kind)

    def take(self, index: np.ndarray) -> "Primitives":
        return Primitives(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def at(self, dt_s: float) -> "Primitives":
        """The solids moved by their velocity for `dt_s` seconds."""
        moved = self.take(slice(None))
        moved.center = self.center + self.velocity * dt_s
        return moved

    def corners(self, index: np.ndarray) -> np.ndarray:
        """len(index) x 8 x 3 corners of the oriented bounding boxes of solids `index`."""
        local = _SIGNS[None] * self.half[index, None, :]
        return self.center[index, None, :] + np.einsum("pij,pkj->pki", self.rot[index], local)


@dataclass
class Hits:
    """First surface along each ray of a grid (R rays), street frame.

    t_m: R ray length (inf: nothing); prim: R int32 solid index, NO_HIT or GROUND;
    point, normal, local, normal_local: R x 3 (local: hit point and normal in the solid's frame, the
    street frame for ground);
    dirs: R x 3 unit ray directions (street frame);
    coverage: instance -> rays hitting it when occluders are ignored (only when requested)
    """
    t_m: np.ndarray
    prim: np.ndarray
    point: np.ndarray
    normal: np.ndarray
    local: np.ndarray
    normal_local: np.ndarray
    dirs: np.ndarray
    coverage: Optional[np.ndarray] = None


class PinholeGrid:
    """H x W rays through pixel centres (u + 0.5, v + 0.5), so that a point projecting to (u, v)
    lies in pixel (trunc(v), trunc(u)) (docs/spade.md section 2). Camera frame: x right, y down, z forward."""
    wrap = False

    def __init__(self, K: np.ndarray, height: int, width: int):
        self.K = np.asarray(K, float)
        self.shape = (height, width)
        u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
        d = np.stack([(u - self.K[0, 2]) / self.K[0, 0], (v - self.K[1, 2]) / self.K[1, 1],
                      np.ones_like(u)], -1).reshape(-1, 3)
        self.dirs = d / np.linalg.norm(d, axis=1, keepdims=True)

    def windows(self, corners: np.ndarray) -> Tuple[np.ndarray, ...]:
        """corners: P x 8 x 3 in the camera frame -> row/col ranges [r0, r1) x [c0, c1) per solid.

        The image of a convex solid is inside the hull of its projected corners in front of the near
        plane plus the points where its edges cross that plane."""
        z = corners[..., 2]
        a, b = corners[:, _EDGES[:, 0]], corners[:, _EDGES[:, 1]]
        za, zb = a[..., 2], b[..., 2]
        cross = (za - NEAR_M) * (zb - NEAR_M) < 0
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.where(cross, (NEAR_M - za) / (zb - za), 0.0)
        pts = np.concatenate([corners, a + s[..., None] * (b - a)], axis=1)
        valid = np.concatenate([z > NEAR_M, cross], axis=1)
        depth = np.maximum(pts[..., 2], NEAR_M * 0.999)
        u = np.clip(self.K[0, 0] * pts[..., 0] / depth + self.K[0, 2], -1e6, 1e6)
        v = np.clip(self.K[1, 1] * pts[..., 1] / depth + self.K[1, 2], -1e6, 1e6)
        h, w = self.shape
        c0, c1 = _range(np.where(valid, u, np.inf).min(1), np.where(valid, u, -np.inf).max(1), w)
        r0, r1 = _range(np.where(valid, v, np.inf).min(1), np.where(valid, v, -np.inf).max(1), h)
        empty = ~valid.any(1)
        r1[empty] = r0[empty]
        return r0, r1, c0, c1


class SphericalGrid:
    """Rows: beam elevations (ascending, rad); columns: azimuths az0 + (j + 0.5) step (rad) in the
    sensor frame (azimuth = atan2(y, x), elevation = asin(z)). `wrap`: the columns close a ring."""

    def __init__(self, elevations_rad: np.ndarray, az0_rad: float, step_rad: float, n_az: int):
        self.elevations = np.asarray(elevations_rad, float)
        self.az0, self.step, self.n_az = az0_rad, step_rad, n_az
        self.wrap = abs(n_az * step_rad - 2 * np.pi) < 1e-9
        self.shape = (len(self.elevations), n_az)
        az = az0_rad + (np.arange(n_az) + 0.5) * step_rad
        el, az = np.meshgrid(self.elevations, az, indexing="ij")
        self.dirs = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az),
                              np.sin(el)], -1).reshape(-1, 3)

    def windows(self, corners: np.ndarray) -> Tuple[np.ndarray, ...]:
        """corners: P x 8 x 3 in the sensor frame -> row/col ranges; columns may run past n_az on
        a ring (taken modulo n_az)."""
        center = corners.mean(1)
        rho_c = np.hypot(center[:, 0], center[:, 1])
        radius = np.hypot(*(corners[..., :2] - center[:, None, :2]).transpose(2, 0, 1)).max(1)
        rho_min, rho_max = np.maximum(rho_c - radius, 0.0), rho_c + radius
        z_hi, z_lo = corners[..., 2].max(1), corners[..., 2].min(1)
        el_hi = np.arctan2(z_hi, np.where(z_hi > 0, rho_min, rho_max))
        el_lo = np.arctan2(z_lo, np.where(z_lo < 0, rho_min, rho_max))
        margin = 1e-4
        r0 = np.searchsorted(self.elevations, el_lo - margin, "left")
        r1 = np.searchsorted(self.elevations, el_hi + margin, "right")
        az_c = np.arctan2(center[:, 1], center[:, 0])
        mid = self.az0 + 0.5 * self.n_az * self.step
        az_c = mid + np.mod(az_c - mid + np.pi, 2 * np.pi) - np.pi
        diff = np.mod(np.arctan2(corners[..., 1], corners[..., 0]) - az_c[:, None] + np.pi,
                      2 * np.pi) - np.pi
        full = (np.abs(diff).max(1) >= 0.5 * np.pi - 1e-3) | (rho_min <= 0)
        lo = (az_c + diff.min(1) - self.az0) / self.step - 0.5
        hi = (az_c + diff.max(1) - self.az0) / self.step - 0.5
        c0 = np.ceil(lo - 1e-3).astype(np.int64)
        c1 = np.floor(hi + 1e-3).astype(np.int64) + 1
        if self.wrap:
            c1 = np.minimum(c1, c0 + self.n_az)
        else:
            c0, c1 = np.clip(c0, 0, self.n_az), np.clip(c1, 0, self.n_az)
        c0[full], c1[full] = 0, self.n_az
        return r0, r1, c0, c1


def _range(lo: np.ndarray, hi: np.ndarray, size: int) -> Tuple[np.ndarray, np.ndarray]:
    """Pixel indices whose centres (i + 0.5) fall in [lo, hi] (+-1e-3 px), clipped to [0, size)."""
    i0 = np.ceil(np.clip(lo, -1e6, 1e6) - 0.5 - 1e-3).astype(np.int64)
    i1 = np.floor(np.clip(hi, -1e6, 1e6) - 0.5 + 1e-3).astype(np.int64) + 1
    return np.clip(i0, 0, size), np.clip(i1, 0, size)


def intersect(kind: int, o: np.ndarray, d: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Ray lengths to the first surface of solids in their local frames; inf where missed.

    o, d, half: 3 x N (ray origins outside the solids, unit directions, half extents), any float."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if kind == BOX:                                   # slabs; 1/0 = inf does the right thing
            t_near = np.full(d.shape[1], -np.inf, d.dtype)
            t_far = np.full(d.shape[1], np.inf, d.dtype)
            for i in range(3):
                inv = 1.0 / d[i]
                t1, t2 = (-half[i] - o[i]) * inv, (half[i] - o[i]) * inv
                np.maximum(t_near, np.minimum(t1, t2), out=t_near)
                np.minimum(t_far, np.maximum(t1, t2), out=t_far)
            return np.where((t_near <= t_far) & (t_near > EPS_M), t_near, np.inf)
        if kind == SPHERE:
            b = o[0] * d[0] + o[1] * d[1] + o[2] * d[2]
            disc = b * b - (o[0] ** 2 + o[1] ** 2 + o[2] ** 2 - half[0] ** 2)
            t = -b - np.sqrt(np.maximum(disc, 0.0))
            return np.where((disc >= 0) & (t > EPS_M), t, np.inf)
        r, hz = half[0], half[2]
        a = d[0] ** 2 + d[1] ** 2
        b = o[0] * d[0] + o[1] * d[1]
        disc = b * b - a * (o[0] ** 2 + o[1] ** 2 - r * r)
        ts = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
        t = np.where((disc >= 0) & (a > 1e-12) & (ts > EPS_M) & (np.abs(o[2] + ts * d[2]) <= hz), ts, np.inf)
        for sign in (-1.0, 1.0):                          # caps
            tc = (sign * hz - o[2]) / d[2]
            x, y = o[0] + tc * d[0], o[1] + tc * d[1]
            t = np.where((tc > EPS_M) & (x * x + y * y <= r * r) & (tc < t), tc, t)
        return t


def local_normals(kind: np.ndarray, p: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Outward unit normals at points `p` (N x 3) on the surfaces of unit solids (local frame)."""
    n = np.zeros_like(p)
    q = np.abs(p) / half
    box = kind == BOX
    axis = np.argmax(q, 1)
    rows = np.flatnonzero(box)
    n[rows, axis[box]] = np.sign(p[rows, axis[box]])
    cyl = kind == CYLINDER
    rho = np.hypot(p[:, 0], p[:, 1])
    cap = cyl & (q[:, 2] >= rho / half[:, 0])
    side = cyl & ~cap
    n[cap, 2] = np.sign(p[cap, 2])
    n[side, :2] = p[side, :2] / np.maximum(rho[side, None], 1e-12)
    sph = kind == SPHERE
    n[sph] = p[sph] / half[sph, :1]
    return n


def cast(grid, sensor_rot: np.ndarray, sensor_pos: np.ndarray, prims: Primitives, far_m: float,
         coverage_instances: int = 0) -> Hits:
    """First hits of all rays of `grid` placed at `sensor_pos` (3) with `sensor_rot` (street <-
    sensor, 3 x 3), up to `far_m`. `coverage_instances` > 0 also counts, per instance id below it,
    the rays that would hit the instance without occluders.

    Solids are taken nearest first, in chunks; a (ray, solid) pair is only intersected when the ray's
    nearest surface so far (the ground included) lies beyond the solid's bounding sphere ("early z")."""
    dirs = grid.dirs @ sensor_rot.T
    n_rays = len(dirs)
    with np.errstate(divide="ignore"):
        t_ground = np.where(dirs[:, 2] < -1e-9, -sensor_pos[2] / dirs[:, 2], np.inf)
    best = np.minimum(t_ground, far_m)
    near = np.linalg.norm(prims.center - sensor_pos, axis=1) - np.linalg.norm(prims.half, axis=1)
    ids = np.flatnonzero(near < far_m)
    ids = ids[np.argsort(near[ids], kind="stable")]
    corners = (prims.corners(ids) - sensor_pos) @ sensor_rot
    r0, r1, c0, c1 = grid.windows(corners)
    w = np.maximum(c1 - c0, 0)
    counts = np.maximum(r1 - r0, 0) * w
    keep = counts > 0
    ids, r0, c0, w, counts = ids[keep], r0[keep], c0[keep], w[keep], counts[keep]
    # per solid, component-major float32: origin and half extents (3 x P), rotation (3 x 3 x P)
    o_local = np.einsum("pji,pj->ip", prims.rot[ids], sensor_pos - prims.center[ids]).astype(np.float32)
    half = np.ascontiguousarray(prims.half[ids].T, dtype=np.float32)
    rot_t = np.ascontiguousarray(prims.rot[ids].transpose(2, 1, 0), dtype=np.float32)  # [i, j] = R[j, i]
    dirs32 = np.ascontiguousarray(dirs.T, dtype=np.float32)
    r0, c0, w = r0.astype(np.int32), c0.astype(np.int32), w.astype(np.int32)
    kinds, near = prims.kind[ids], near[ids]

    found: List[Tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    ends = np.cumsum(counts)
    chunk = max(8000, int(_CHUNK_RAYS * n_rays))
    bounds = np.searchsorted(ends, np.arange(chunk, ends[-1] if len(ends) else 0, chunk))
    for sel in np.split(np.arange(len(ids)), np.unique(bounds)):
        sel = sel[np.argsort(kinds[sel], kind="stable")]            # kinds contiguous in the chunk
        n = counts[sel]
        if len(sel) == 0:
            continue
        owner = np.repeat(sel.astype(np.int32), n)
        k = np.arange(len(owner), dtype=np.int32) - np.repeat((np.cumsum(n) - n).astype(np.int32), n)
        row, col = np.divmod(k, np.repeat(w[sel], n))
        col += np.repeat(c0[sel], n)
        if grid.wrap:
            col %= grid.shape[1]
        ray = (row + np.repeat(r0[sel], n)) * grid.shape[1] + col
        if not coverage_instances:                                   # early z
            live = np.flatnonzero(best[ray] > np.repeat(near[sel], n))
            ray, owner = ray[live], owner[live]
        d = dirs32[:, ray]
        d_local = np.empty_like(d)
        for i in range(3):
            d_local[i] = rot_t[i, 0, owner] * d[0]
            d_local[i] += rot_t[i, 1, owner] * d[1]
            d_local[i] += rot_t[i, 2, owner] * d[2]
        t = np.empty(len(ray), np.float32)
        cuts = np.searchsorted(kinds[owner], [BOX, CYLINDER, SPHERE, SPHERE + 1])
        for kind, a, b in zip((BOX, CYLINDER, SPHERE), cuts[:-1], cuts[1:]):
            if b > a:
                o = owner[a:b]
                t[a:b] = intersect(kind, o_local[:, o], d_local[:, a:b], half[:, o])
        hit = np.flatnonzero(t < best[ray] if not coverage_instances else t < far_m)
        found.append((ray[hit], ids[owner[hit]], t[hit].astype(np.float64)))
        np.minimum.at(best, found[-1][0], found[-1][2])
    ray, pid, t = (np.concatenate(x) for x in zip(*found)) if found else (
        np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))

    prim = np.full(n_rays, NO_HIT, np.int32)
    win = t == best[ray]
    prim[ray[win]] = pid[win]
    ground = (prim < 0) & np.isfinite(t_ground) & (t_ground < far_m)
    prim[ground] = GROUND
    t_m = np.where(prim == NO_HIT, np.inf, best)

    point = sensor_pos + np.where(np.isfinite(t_m), t_m, 0.0)[:, None] * dirs
    normal = np.zeros_like(dirs)
    normal[ground, 2] = 1.0
    local, normal_local = point.copy(), normal.copy()
    solid = np.flatnonzero(prim >= 0)
    if len(solid):
        p = prim[solid]
        local[solid] = np.einsum("nji,nj->ni", prims.rot[p], point[solid] - prims.center[p])
        normal_local[solid] = local_normals(prims.kind[p], local[solid], prims.half[p])
        normal[solid] = np.einsum("nij,nj->ni", prims.rot[p], normal_local[solid])
    coverage = None
    if coverage_instances:
        inst = prims.inst[pid]
        codes = np.unique(inst[inst >= 0].astype(np.int64) * n_rays + ray[inst >= 0])
        coverage = np.bincount(codes // n_rays, minlength=coverage_instances)
    return Hits(t_m, prim, point, normal, local, normal_local, dirs, coverage)
