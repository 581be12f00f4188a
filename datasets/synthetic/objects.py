"""Solid templates of the street's things: vehicles, people, cyclists, trees, poles, signs.

Every template adds its parts to a `SolidList` in the object's frame (x forward, y left, z up, origin
on the ground at the box centre) placed at (x, y) with heading `yaw`; it returns the annotation box
size (width, length, height) in metres, as nuScenes orders it.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

from datasets.synthetic.render import BOX, CYLINDER, SPHERE, Primitives

# ADE20K-150 class ids (0-based, docs/spade.md section 1)
WALL, BUILDING, SKY, TREE, ROAD, GRASS, SIDEWALK, PERSON, CAR = 0, 1, 2, 4, 6, 9, 11, 12, 20
FENCE, SIGNBOARD, BUS, TRUCK, POLE, VAN, MINIBIKE, BICYCLE = 32, 43, 80, 83, 93, 102, 116, 127

# materials (textures.py gives each its albedo)
(M_GROUND, M_SIDEWALK, M_FACADE, M_ROOF, M_PAINT, M_CABIN, M_TYRE, M_SKIN, M_CLOTH, M_BARK,
 M_FOLIAGE, M_METAL, M_SIGN, M_FENCE, M_BRICK, M_BUS, M_LAMP) = range(17)

_AXIS_Y = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])   # local z -> y: wheel axles


def yaw_matrix(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


class SolidList:
    """Collects solids one by one (scene build time only), then packs them into `Primitives`."""

    def __init__(self):
        self.rows: List[tuple] = []

    def add(self, kind: int, center: Sequence[float], half: Sequence[float], cls: int, material: int,
            color: Sequence[float], rot: np.ndarray | None = None, param: Sequence[float] = (0, 0, 0, 0),
            inst: int = -1, velocity: Sequence[float] = (0, 0, 0)) -> None:
        self.rows.append((kind, center, np.eye(3) if rot is None else rot, half, cls, material, color,
                          param, inst, velocity))

    def build(self) -> Primitives:
        cols = list(zip(*self.rows)) if self.rows else [[]] * 10
        dtypes = [np.int8, float, float, float, np.uint8, np.int16, np.float32, np.float32, np.int32, float]
        shapes = [(0,), (0, 3), (0, 3, 3), (0, 3), (0,), (0,), (0, 3), (0, 4), (0,), (0, 3)]
        arrays = [np.asarray(c, dtype=t) if len(c) else np.zeros(s, t)
                  for c, t, s in zip(cols, dtypes, shapes)]
        return Primitives(*arrays)


class Placer:
    """Adds parts given in an object's frame to a SolidList at pose (x, y, yaw), moving at `velocity`."""

    def __init__(self, solids: SolidList, x: float, y: float, yaw: float, inst: int,
                 velocity: Sequence[float]):
        self.solids, self.inst, self.velocity = solids, inst, velocity
        self.rot = yaw_matrix(yaw)
        self.origin = np.array([x, y, 0.0])

    def part(self, kind: int, center: Sequence[float], half: Sequence[float], cls: int, material: int,
             color: Sequence[float], rot: np.ndarray | None = None,
             param: Sequence[float] = (0, 0, 0, 0)) -> None:
        world_rot = self.rot if rot is None else self.rot @ rot
        self.solids.add(kind, self.origin + self.rot @ np.asarray(center, float), half, cls, material,
                        color, world_rot, param, self.inst, self.velocity)

    def wheels(self, xs: Sequence[float], half_track: float, radius: float, width: float,
               cls: int) -> None:
        for x in xs:
            for y in sorted({-half_track, half_track}):          # one wheel per axle on the track 0
                self.part(CYLINDER, (x, y, radius), (radius, radius, width / 2), cls, M_TYRE,
                          (0.08, 0.08, 0.08), _AXIS_Y)


PAINTS = np.array([[0.92, 0.92, 0.92], [0.1, 0.1, 0.1], [0.65, 0.65, 0.67], [0.15, 0.15, 0.7],
                   [0.6, 0.25, 0.1], [0.35, 0.35, 0.38], [0.15, 0.45, 0.2], [0.2, 0.6, 0.85]])
CLOTHES = np.array([[0.15, 0.15, 0.18], [0.45, 0.3, 0.15], [0.7, 0.7, 0.72], [0.2, 0.2, 0.6],
                    [0.1, 0.35, 0.1], [0.55, 0.5, 0.45], [0.3, 0.1, 0.5], [0.25, 0.5, 0.75]])
SKINS = np.array([[0.55, 0.65, 0.85], [0.4, 0.5, 0.7], [0.25, 0.33, 0.45], [0.45, 0.6, 0.8]])


def vehicle(p: Placer, kind: str, rng: np.random.Generator) -> Tuple[float, float, float]:
    """car | van | truck | bus -> (width, length, height)."""
    paint = PAINTS[rng.integers(len(PAINTS))]
    if kind == "car":
        L, W, H = rng.uniform(4.2, 4.9), rng.uniform(1.75, 1.9), rng.uniform(1.42, 1.6)
        body_top, r = 0.95, 0.33
        p.part(BOX, (0, 0, (0.28 + body_top) / 2), (L / 2, W / 2, (body_top - 0.28) / 2), CAR, M_PAINT,
               paint, param=(1, 0, 0, 0))
        p.part(BOX, (-0.06 * L, 0, (body_top + H) / 2), (0.27 * L, W / 2 - 0.08, (H - body_top) / 2),
               CAR, M_CABIN, paint)
        p.wheels((-L / 2 + 0.85, L / 2 - 0.85), W / 2 - 0.17, r, 0.22, CAR)
        return W, L, H
    if kind == "van":
        L, W, H = rng.uniform(4.8, 5.4), rng.uniform(1.9, 2.0), rng.uniform(1.95, 2.3)
        p.part(BOX, (-0.45, 0, (0.3 + H) / 2), (L / 2 - 0.45, W / 2, (H - 0.3) / 2), VAN, M_PAINT,
               paint, param=(0, 1, 1.4, 0))
        p.part(BOX, (L / 2 - 0.45, 0, 0.7), (0.45, W / 2 - 0.05, 0.4), VAN, M_PAINT, paint,
               param=(1, 0, 0, 0))
        p.wheels((-L / 2 + 0.9, L / 2 - 1.0), W / 2 - 0.18, 0.35, 0.24, VAN)
        return W, L, H
    if kind == "truck":
        L, W, H = rng.uniform(6.5, 9.0), rng.uniform(2.35, 2.5), rng.uniform(3.0, 3.6)
        cab = 2.2
        p.part(BOX, (L / 2 - cab / 2, 0, 1.7), (cab / 2, W / 2 - 0.05, 1.2), TRUCK, M_PAINT, paint,
               param=(1, 1, cab, 0))
        cargo = (0.85, 0.85, 0.85) if rng.random() < 0.6 else PAINTS[rng.integers(len(PAINTS))]
        p.part(BOX, (-cab / 2 - 0.1, 0, (1.05 + H) / 2), ((L - cab) / 2 - 0.1, W / 2, (H - 1.05) / 2),
               TRUCK, M_PAINT, cargo)
        p.part(BOX, (-cab / 2, 0, 0.8), ((L - cab) / 2, W / 2 - 0.4, 0.25), TRUCK, M_METAL,
               (0.2, 0.2, 0.2))
        p.wheels((-L / 2 + 1.1, -L / 2 + 2.2, L / 2 - 1.2), W / 2 - 0.3, 0.5, 0.35, TRUCK)
        return W, L, H
    L, W, H = rng.uniform(10.0, 12.5), 2.55, rng.uniform(3.0, 3.3)
    p.part(BOX, (0, 0, (0.35 + H) / 2), (L / 2, W / 2, (H - 0.35) / 2), BUS, M_BUS, paint,
           param=(1.3 - 0.35, 2.6 - 0.35, 0, 0))
    p.wheels((-L / 2 + 2.6, L / 2 - 2.4), W / 2 - 0.3, 0.5, 0.3, BUS)
    return W, L, H


def pedestrian(p: Placer, rng: np.random.Generator, x: float = 0.0,
               seat_z: float | None = None) -> Tuple[float, float, float]:
    """A person: legs, torso, arms, head. With `seat_z` the person sits (hips at that height) with
    thighs forward and hands on a handlebar ahead, as on a bicycle."""
    H = rng.uniform(1.6, 1.9)
    shirt, pants = CLOTHES[rng.integers(len(CLOTHES))], CLOTHES[rng.integers(len(CLOTHES))]
    skin = SKINS[rng.integers(len(SKINS))]
    hip, torso_h = 0.5 * H, 0.5 * H - 0.24
    base = hip if seat_z is None else seat_z
    if seat_z is None:
        for y in (-0.1, 0.1):
            p.part(BOX, (x, y, hip / 2), (0.09, 0.08, hip / 2), PERSON, M_CLOTH, pants)
            p.part(BOX, (x, 2.6 * y, base + torso_h / 2 - 0.03), (0.06, 0.05, torso_h / 2 + 0.03),
                   PERSON, M_CLOTH, shirt)
    else:
        p.part(BOX, (x + 0.2, 0, seat_z + 0.06), (0.22, 0.16, 0.08), PERSON, M_CLOTH, pants)
        p.part(BOX, (x + 0.4, 0, (0.35 + seat_z) / 2), (0.06, 0.14, (seat_z - 0.35) / 2), PERSON,
               M_CLOTH, pants)
        for y in (-0.22, 0.22):
            p.part(BOX, (x + 0.3, y, base + torso_h - 0.15), (0.28, 0.05, 0.05), PERSON, M_CLOTH, shirt)
    p.part(BOX, (x, 0, base + torso_h / 2), (0.12, 0.2, torso_h / 2), PERSON, M_CLOTH, shirt)
    p.part(SPHERE, (x, 0, base + torso_h + 0.13), (0.11, 0.11, 0.11), PERSON, M_SKIN, skin)
    return 0.65, 0.7, base + torso_h + 0.24


def cyclist(p: Placer, rng: np.random.Generator) -> Tuple[float, float, float]:
    """Bicycle (wheels, frame, handlebar) with a seated rider; annotated as vehicle.bicycle."""
    frame_color = PAINTS[rng.integers(len(PAINTS))]
    p.wheels((-0.55, 0.55), 0.0, 0.34, 0.05, BICYCLE)
    p.part(BOX, (0, 0, 0.62), (0.5, 0.025, 0.1), BICYCLE, M_PAINT, frame_color)
    p.part(BOX, (0.5, 0, 0.9), (0.03, 0.3, 0.03), BICYCLE, M_METAL, (0.2, 0.2, 0.2))
    _, _, h = pedestrian(p, rng, x=-0.25, seat_z=0.88)
    return 0.6, 1.75, h


def motorbike(p: Placer, rng: np.random.Generator) -> Tuple[float, float, float]:
    color = PAINTS[rng.integers(len(PAINTS))]
    p.wheels((-0.7, 0.7), 0.0, 0.3, 0.12, MINIBIKE)
    p.part(BOX, (0, 0, 0.6), (0.55, 0.18, 0.22), MINIBIKE, M_PAINT, color)
    p.part(BOX, (-0.25, 0, 0.88), (0.35, 0.15, 0.06), MINIBIKE, M_CLOTH, (0.1, 0.1, 0.1))
    p.part(BOX, (0.55, 0, 1.0), (0.04, 0.35, 0.03), MINIBIKE, M_METAL, (0.3, 0.3, 0.3))
    return 0.75, 2.0, 1.1


def tree(solids: SolidList, x: float, y: float, rng: np.random.Generator) -> None:
    trunk_h, crown_r = rng.uniform(3.2, 4.5), rng.uniform(1.2, 1.8)
    solids.add(CYLINDER, (x, y, trunk_h / 2), (0.15, 0.15, trunk_h / 2), TREE, M_BARK, (0.15, 0.25, 0.35))
    green = np.array([0.15, 0.45, 0.25]) * rng.uniform(0.7, 1.2)
    crown_z = max(trunk_h + 0.4 * crown_r, 3.3 + crown_r)
    solids.add(SPHERE, (x, y, crown_z), (crown_r,) * 3, TREE, M_FOLIAGE, green, param=(rng.random(), 0, 0, 0))
    solids.add(SPHERE, (x + rng.uniform(-0.5, 0.5), y, crown_z + 0.7 * crown_r), (0.7 * crown_r,) * 3,
               TREE, M_FOLIAGE, green * 1.1, param=(rng.random(), 0, 0, 0))


def street_light(solids: SolidList, x: float, y: float, toward_road: float, rng: np.random.Generator) -> None:
    """Pole with an arm reaching over the road (`toward_road` = +1 or -1 in y)."""
    h = rng.uniform(6.5, 8.5)
    grey = (0.45, 0.45, 0.47)
    solids.add(CYLINDER, (x, y, h / 2), (0.1, 0.1, h / 2), POLE, M_METAL, grey)
    solids.add(BOX, (x, y + toward_road * 0.9, h - 0.1), (0.05, 0.9, 0.05), POLE, M_METAL, grey)
    solids.add(BOX, (x, y + toward_road * 1.75, h - 0.2), (0.2, 0.3, 0.08), POLE, M_LAMP, (0.8, 0.85, 0.85))


def sign(solids: SolidList, x: float, y: float, rng: np.random.Generator) -> None:
    solids.add(CYLINDER, (x, y, 1.25), (0.04, 0.04, 1.25), POLE, M_METAL, (0.5, 0.5, 0.5))
    face = [(0.75, 0.3, 0.1), (0.1, 0.1, 0.75), (0.1, 0.6, 0.1), (0.15, 0.8, 0.9)][rng.integers(4)]
    solids.add(BOX, (x, y, 2.7), (0.03, 0.35, 0.35), SIGNBOARD, M_SIGN, face)
