"""Surface properties at ray hits: ADE20K class, albedo (procedural textures), gloss, LiDAR reflectivity.

Textures are functions of world or solid-local coordinates in metres (lane marks, tiles, windows,
bricks, foliage), so their density falls with distance like real texture. Material parameters
(`Primitives.param`): facade (floor height, window spacing, seed, shopfront 0/1); paint (lights 0/1,
glazed 0/1, glazed length from the front (m), -); bus (window band bottom, top above the body floor);
foliage (seed, ...).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from datasets.synthetic import objects as ob
from datasets.synthetic.render import GROUND, Hits, Primitives
from datasets.synthetic.world import Road

_GLASS = np.array([0.32, 0.27, 0.22])
_WHITE = np.array([0.85, 0.85, 0.85])
_YELLOW = np.array([0.1, 0.7, 0.85])


@dataclass
class Surface:
    """Per hit (R): cls uint8 ADE20K id (SKY where nothing), albedo R x 3 BGR 0..1, gloss 0..1
    (mirror weight of the sky), reflectivity 0..1 (LiDAR intensity, radar unaffected)."""
    cls: np.ndarray
    albedo: np.ndarray
    gloss: np.ndarray
    reflectivity: np.ndarray


_TABLE = np.random.default_rng(20240501)
_PERM = np.tile(_TABLE.permutation(256), 2)
_VALUES = _TABLE.random(256)


def _hash(ix: np.ndarray, iy: np.ndarray, salt: int) -> np.ndarray:
    """Pseudo-random value in [0, 1) per integer lattice point (period 256 cells)."""
    return _VALUES[_PERM[_PERM[(ix + 131 * salt) & 255] + (iy & 255)]]


_PERIOD = 64                                # noise tiles repeat every 64 units
_TEXELS = 8                                 # table samples per unit


def _lattice_noise(x: np.ndarray, y: np.ndarray, period: int, salt: int) -> np.ndarray:
    """Smooth value noise in [0, 1), unit cells, periodic in `period` cells."""
    fx, fy = np.floor(x), np.floor(y)
    ix, iy = fx.astype(np.int64) % period, fy.astype(np.int64) % period
    jx, jy = (ix + 1) % period, (iy + 1) % period
    u, v = x - fx, y - fy
    u, v = u * u * (3 - 2 * u), v * v * (3 - 2 * v)
    a, b, c, d = _hash(ix, iy, salt), _hash(jx, iy, salt), _hash(ix, jy, salt), _hash(jx, jy, salt)
    return (a * (1 - u) + b * u) * (1 - v) + (c * (1 - u) + d * u) * v


@functools.lru_cache(maxsize=4)
def _noise_table(octaves: int) -> np.ndarray:
    """Tileable fractal noise sampled at _TEXELS per unit over one period (float32 table)."""
    g = np.arange(_PERIOD * _TEXELS) / _TEXELS
    x, y = np.meshgrid(g, g, indexing="ij")
    total, norm = np.zeros_like(x), 0.0
    for k in range(octaves):
        total += 0.5 ** k * _lattice_noise(x * 2 ** k, y * 2 ** k, _PERIOD * 2 ** k, k)
        norm += 0.5 ** k
    return (total / norm).astype(np.float32)


def fbm(x: np.ndarray, y: np.ndarray, salt: int = 0, octaves: int = 3) -> np.ndarray:
    """Fractal value noise in [0, 1) (unit base cell), looked up bilinearly in a precomputed
    tileable table; `salt` shifts to an unrelated patch."""
    table = _noise_table(octaves)
    n = table.shape[0]
    u, v = (x + 13.37 * salt) * _TEXELS, (y + 7.91 * salt) * _TEXELS
    fu, fv = np.floor(u), np.floor(v)
    iu, iv = fu.astype(np.int64) % n, fv.astype(np.int64) % n
    ju, jv = (iu + 1) % n, (iv + 1) % n
    a, b = u - fu, v - fv
    return ((table[iu, iv] * (1 - a) + table[ju, iv] * a) * (1 - b)
            + (table[iu, jv] * (1 - a) + table[ju, jv] * a) * b)


def value_noise(x: np.ndarray, y: np.ndarray, salt: int = 0) -> np.ndarray:
    """Single-octave smooth noise in [0, 1) with unit cells."""
    return fbm(x, y, salt, octaves=1)


def _face_coords(local: np.ndarray, n_local: np.ndarray, half: np.ndarray):
    """(u, v) on a box face: u horizontal from the face's left edge, v height above the box bottom."""
    along_y = np.abs(n_local[:, 0]) > 0.5
    u = np.where(along_y, local[:, 1] + half[:, 1], local[:, 0] + half[:, 0])
    return u, local[:, 2] + half[:, 2]


def _ground(p: np.ndarray, road: Road):
    x, y = p[:, 0], p[:, 1]
    crossing = np.zeros(len(x), bool)
    for x0, x1 in road.crossings:
        crossing |= (x > x0) & (x < x1)
    on_road = ((y > road.y_right) & (y < road.y_left)) | crossing
    cls = np.where(on_road, ob.ROAD, ob.GRASS).astype(np.uint8)
    asphalt = 0.24 + 0.1 * fbm(x * 1.5, y * 1.5, 11, octaves=2) + 0.05 * value_noise(x * 9, y * 9, 12)
    albedo = asphalt[:, None] * np.array([1.0, 1.0, 1.02])
    refl = np.full(len(x), 0.12)
    paint = np.zeros(len(x), bool)
    yellow = np.zeros(len(x), bool)
    for y0, hw, kind in road.marks:
        m = (np.abs(y - y0) < hw) & ~crossing
        if kind == 1:
            m &= np.mod(x, 12.0) < 3.0
        (yellow if kind == 2 else paint)[...] |= m
    for x0, x1 in road.crossings:
        band = ((x > x0 - 4.5) & (x < x0 - 0.5)) | ((x > x1 + 0.5) & (x < x1 + 4.5))
        paint |= band & (y > road.y_right) & (y < road.y_left) & (np.mod(y, 1.2) < 0.6)
    wear = 0.8 + 0.2 * value_noise(x * 3, y * 3, 13)[:, None]
    albedo[paint] = _WHITE * wear[paint]
    albedo[yellow] = _YELLOW * wear[yellow]
    refl[paint | yellow] = 0.8
    grass = ~on_road
    tone = 0.6 + 0.6 * fbm(x[grass] * 2, y[grass] * 2, 14, octaves=2)
    albedo[grass] = np.array([0.2, 0.42, 0.28]) * tone[:, None]
    return cls, albedo, refl


def surface(hits: Hits, prims: Primitives, road: Road) -> Surface:
    n_rays = len(hits.t_m)
    cls = np.full(n_rays, ob.SKY, np.uint8)
    albedo = np.zeros((n_rays, 3))
    gloss = np.zeros(n_rays)
    refl = np.zeros(n_rays)
    g = np.flatnonzero(hits.prim == GROUND)
    cls[g], albedo[g], refl[g] = _ground(hits.point[g], road)
    s = np.flatnonzero(hits.prim >= 0)
    if len(s) == 0:
        return Surface(cls, albedo, gloss, refl)
    s = s[np.argsort(prims.material[hits.prim[s]], kind="stable")]   # one slice per material
    pid = hits.prim[s]
    cls[s] = prims.cls[pid]
    mat = prims.material[pid]
    bounds = np.searchsorted(mat, np.arange(ob.M_LAMP + 2))
    base = prims.color[pid].astype(np.float64)
    param = prims.param[pid].astype(np.float64)
    half = prims.half[pid]
    local = hits.local[s]
    p = hits.point[s]
    n_local = hits.normal_local[s]
    out = base.copy()
    shine = np.zeros(len(s))
    r = np.full(len(s), -1.0)

    def where(m):
        return slice(bounds[m], bounds[m + 1])

    i = where(ob.M_SIDEWALK)
    if i.stop > i.start:
        x, y = p[i, 0], p[i, 1]
        joint = (np.mod(x, 1.0) < 0.03) | (np.mod(y, 1.0) < 0.03)
        tone = 0.85 + 0.2 * fbm(x * 2, y * 2, 21) - 0.25 * joint
        kerb = np.abs(n_local[i, 2]) < 0.5
        out[i] = base[i] * tone[:, None] * np.where(kerb, 0.85, 1.0)[:, None]
    i = where(ob.M_FACADE)
    if i.stop > i.start:
        u, v = _face_coords(local[i], n_local[i], half[i])
        floor_h, spacing, seed, shop = param[i].T
        fu, fv = np.mod(u / spacing, 1.0), np.mod(v / floor_h, 1.0)
        upper = (v > floor_h) & (fu > 0.22) & (fu < 0.78) & (fv > 0.3) & (fv < 0.85)
        fs = np.mod(u / (2 * spacing), 1.0)
        shopfront = (shop > 0.5) & (v > 0.3) & (v < 0.8 * floor_h) & (fs > 0.08) & (fs < 0.92)
        roof = n_local[i, 2] > 0.5
        glass = (upper | shopfront) & ~roof
        wall = base[i] * (0.8 + 0.25 * fbm(u * 0.7, v * 0.7, 31, octaves=2))[:, None]
        lit = value_noise(np.floor(u / spacing), np.floor(v / floor_h) + 97 * seed, 32)
        out[i] = np.where(glass[:, None], _GLASS * (0.6 + 0.7 * lit)[:, None], wall)
        out[i][roof] = 0.3
        shine[i][glass] = 0.45
        r[i][glass] = 0.05
    i = where(ob.M_PAINT)
    if i.stop > i.start:
        lights, glazed, glazed_len = param[i, 0], param[i, 1], param[i, 2]
        front, back = n_local[i, 0] > 0.5, n_local[i, 0] < -0.5
        side_y = np.abs(local[i, 1]) > half[i, 1] - 0.4
        upper_z = local[i, 2] > 0.35 * half[i, 2]
        lamp = (lights > 0.5) & side_y & (np.abs(local[i, 1]) < half[i, 1] - 0.08) & upper_z
        glass = (glazed > 0.5) & (local[i, 2] > 0.05 * half[i, 2]) & (local[i, 2] < 0.85 * half[i, 2]) & (
            front | ((np.abs(n_local[i, 1]) > 0.5) & (local[i, 0] > half[i, 0] - glazed_len)))
        out[i] = base[i] * (0.9 + 0.15 * value_noise(local[i, 0] * 4, local[i, 2] * 4, 41))[:, None]
        out[i][lamp & front] = (0.8, 0.95, 1.0)
        out[i][lamp & back] = (0.1, 0.1, 0.8)
        out[i][glass] = _GLASS * 0.6
        shine[i] = np.where(glass, 0.5, 0.18)
        r[i][glass] = 0.05
    i = where(ob.M_CABIN)
    if i.stop > i.start:
        vertical = np.abs(n_local[i, 2]) < 0.5
        pillar = np.abs(local[i, 0]) > half[i, 0] - 0.1
        glass = vertical & ~pillar & (local[i, 2] < 0.8 * half[i, 2])
        out[i] = np.where(glass[:, None], _GLASS * 0.55, base[i])
        shine[i] = np.where(glass, 0.55, 0.18)
        r[i][glass] = 0.05
    i = where(ob.M_BUS)
    if i.stop > i.start:
        h = local[i, 2] + half[i, 2]
        band = (h > param[i, 0]) & (h < param[i, 1]) & (np.abs(n_local[i, 2]) < 0.5)
        mullion = (np.abs(n_local[i, 1]) > 0.5) & (np.mod(local[i, 0], 1.3) < 0.08)
        glass = band & ~mullion
        out[i] = np.where(glass[:, None], _GLASS * 0.6, base[i])
        shine[i] = np.where(glass, 0.5, 0.18)
        r[i][glass] = 0.05
    i = where(ob.M_TYRE)
    if i.stop > i.start:
        hub = (np.abs(n_local[i, 2]) > 0.5) & (np.hypot(local[i, 0], local[i, 1]) < 0.55 * half[i, 0])
        out[i][hub] = 0.55
    i = where(ob.M_BARK)
    if i.stop > i.start:
        ang = np.arctan2(local[i, 1], local[i, 0])
        out[i] = base[i] * (0.6 + 0.6 * value_noise(ang * 3, local[i, 2] * 6, 51))[:, None]
    i = where(ob.M_FOLIAGE)
    if i.stop > i.start:
        q = p[i] * 3.0 + param[i, :1] * 50
        leaf = fbm(q[:, 0] + q[:, 2], q[:, 1] - q[:, 2], 61)
        out[i] = base[i] * (0.45 + 0.9 * leaf)[:, None]
    for m, salt in ((ob.M_CLOTH, 71), (ob.M_SKIN, 72)):
        i = where(m)
        if i.stop > i.start:
            out[i] = base[i] * (0.85 + 0.25 * value_noise(local[i, 0] * 8, local[i, 2] * 8, salt))[:, None]
    i = where(ob.M_METAL)
    shine[i] = 0.25
    i = where(ob.M_SIGN)
    if i.stop > i.start:
        face = np.abs(n_local[i, 0]) > 0.5
        border = (np.abs(local[i, 1]) > half[i, 1] - 0.05) | (np.abs(local[i, 2]) > half[i, 2] - 0.05)
        out[i] = np.where((face & border)[:, None], _WHITE, np.where(face[:, None], base[i], 0.5))
        r[i][face] = 1.0
    i = where(ob.M_FENCE)
    if i.stop > i.start:
        u, v = _face_coords(local[i], n_local[i], half[i])
        slat = (np.mod(u, 0.14) < 0.08) | (v > 2 * half[i, 2] - 0.08)
        out[i] = base[i] * np.where(slat, 1.0, 0.35)[:, None]
    i = where(ob.M_BRICK)
    if i.stop > i.start:
        u, v = _face_coords(local[i], n_local[i], half[i])
        row = np.floor(v / 0.075)
        mortar = (np.mod(v, 0.075) < 0.012) | (np.mod(u + 0.11 * np.mod(row, 2), 0.22) < 0.012)
        out[i] = np.where(mortar[:, None], 0.7, base[i] * (0.8 + 0.3 * _hash(row.astype(np.int64),
                          np.floor(u / 0.22).astype(np.int64), 81))[:, None])
    i = where(ob.M_LAMP)
    out[i] = 0.95

    albedo[s] = np.clip(out, 0.0, 1.0)
    gloss[s] = shine
    lum = albedo[s] @ np.array([0.11, 0.59, 0.3])
    refl[s] = np.where(r >= 0, r, 0.2 + 0.6 * lum)
    return Surface(cls, albedo, gloss, refl)
