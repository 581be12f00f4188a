"""Procedural street scenes: road, kerbs, sidewalks, facades, street furniture, traffic, people.

    scene = build_scene(cfg, index=3)          # deterministic in (cfg.seed, index)
    prims = scene.prims_at(tau_s)              # solids at scene time tau (s)
    rot, pos = scene.ego_pose(tau_s)           # ego in the street frame

Street frame: x along the street (the ego drives +x), y left, z up, ground z = 0, the ego at x = 0
at tau = 0 (first key frame). Right-hand traffic: forward lanes at y < 0, oncoming at y > 0.
`Scene.to_global` places each scene in a nuScenes-like global frame (poses of the tables).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Tuple

import numpy as np

from datasets.synthetic import objects as ob
from datasets.synthetic.config import SyntheticConfig
from datasets.synthetic.render import BOX, Primitives

X_MIN_M, X_MAX_M = -150.0, 550.0          # extent of the built street
SCENE_LEAD_S = 0.5                        # sweeps recorded before the first key frame
KEY_PERIOD_S = 0.5                        # key frames at 2 Hz
SLAB_M = 8.0                              # longest sidewalk piece


@dataclass
class Road:
    """Cross-section of the street. Lane marks: rows (y centre, half width, kind 0 solid white,
    1 dashed white, 2 yellow); crossings: K x 2 x-intervals of side streets."""
    lane_w: float
    n_fwd: int
    n_back: int
    y_right: float                        # road edges (kerb lines), y_right < 0 < y_left
    y_left: float
    sidewalk_right: float
    sidewalk_left: float
    marks: np.ndarray
    crossings: np.ndarray

    def in_crossing(self, x: float, margin: float = 0.0) -> bool:
        return bool(np.any((x > self.crossings[:, 0] - margin) & (x < self.crossings[:, 1] + margin)))


@dataclass
class Instance:
    """An annotated object: nuScenes category and attribute, box at tau = 0, constant velocity."""
    category: str
    attribute: str
    center0: np.ndarray                   # 3, box centre (m, street frame)
    size: Tuple[float, float, float]      # width, length, height (m)
    yaw: float
    velocity: np.ndarray                  # 3 (m/s)

    def center(self, tau: float) -> np.ndarray:
        return self.center0 + self.velocity * tau


@dataclass
class Lighting:
    sun_dir: np.ndarray                   # unit vector towards the sun
    sun: float                            # direct light strength
    ambient: float
    zenith: np.ndarray                    # sky colours, BGR 0..1
    horizon: np.ndarray


@dataclass
class Scene:
    index: int
    name: str
    log: str
    description: str
    t0_us: int                            # timestamp of tau = 0
    prims: Primitives                     # solids at tau = 0 with their velocities
    instances: List[Instance]
    road: Road
    light: Lighting
    ego_y: float
    ego_speed: float                      # mean speed (m/s)
    ego_phase: float
    global_rot: np.ndarray = field(repr=False)   # street -> global
    global_pos: np.ndarray = field(repr=False)

    def prims_at(self, tau: float) -> Primitives:
        return self.prims.at(tau)

    def ego_pose(self, tau: float) -> Tuple[np.ndarray, np.ndarray]:
        """(rot 3 x 3, pos 3) of the ego frame in the street frame: speed varies by +-15 % over 8 s,
        a slow sway of 0.15 m in the lane; heading follows the path."""
        w, a = 2 * np.pi / 8.0, 0.15
        v = self.ego_speed
        x = v * tau + v * a / w * (np.cos(self.ego_phase) - np.cos(w * tau + self.ego_phase))
        dx = v * (1 + a * np.sin(w * tau + self.ego_phase))
        sway = 0.15 if v > 0 else 0.0
        ws = 2 * np.pi / 11.0
        y = self.ego_y + sway * np.sin(ws * tau)
        dy = sway * ws * np.cos(ws * tau)
        yaw = np.arctan2(dy, dx) if v > 0 else 0.0
        return ob.yaw_matrix(yaw), np.array([x, y, 0.0])

    def to_global(self, rot: np.ndarray, pos: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        return self.global_rot @ rot, self.global_rot @ pos + self.global_pos

    def to_street(self, points_global: np.ndarray) -> np.ndarray:
        """N x 3 global points -> street frame."""
        return (points_global - self.global_pos) @ self.global_rot


def scene_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    """Random stream `stream` of scene `index`: 0-8 layout (build_scene), 1000+ clocks and sensors."""
    return np.random.default_rng([seed, index, stream])


def build_scene(cfg: SyntheticConfig, index: int) -> Scene:
    """Scene `index` of the world; each part draws from its own random stream, so that changing one
    knob (e.g. object density) leaves the streets, lighting and ego path of every scene as they were."""
    road = _road(scene_rng(cfg.seed, index, 0))
    misc = scene_rng(cfg.seed, index, 1)
    ego_speed = 0.0 if misc.random() < 0.12 else cfg.world.ego_speed_mps * misc.uniform(0.4, 1.4)
    ego_phase, yaw = misc.uniform(0, 2 * np.pi), misc.uniform(-np.pi, np.pi)
    global_pos = np.array([misc.uniform(300, 2000), misc.uniform(300, 2000), 0.0])
    light = _lighting(misc)
    ego_y = -(road.n_fwd - 0.5) * road.lane_w
    solids = ob.SolidList()
    instances: List[Instance] = []
    duration = SCENE_LEAD_S + cfg.samples_per_scene * KEY_PERIOD_S
    _sidewalks(solids, road)
    for side, stream in ((-1, 2), (1, 3)):
        _buildings(solids, road, side, scene_rng(cfg.seed, index, stream))
        _furniture(solids, road, side, scene_rng(cfg.seed, index, stream + 2),
                   cfg.world.street_furniture_density)
    density = cfg.world.object_density
    _parked(solids, instances, road, scene_rng(cfg.seed, index, 6), density)
    _traffic(solids, instances, road, scene_rng(cfg.seed, index, 7), density, ego_speed, ego_y, duration)
    _people(solids, instances, road, scene_rng(cfg.seed, index, 8), density, duration)
    counts = {c: sum(i.category == c for i in instances) for c in
              ("vehicle.car", "human.pedestrian.adult", "vehicle.bicycle")}
    description = (f"synthetic street, {road.n_fwd}+{road.n_back} lanes, "
                   f"{len(road.crossings)} side street(s), {counts['vehicle.car']} cars, "
                   f"{counts['human.pedestrian.adult']} pedestrians, {counts['vehicle.bicycle']} cyclists, "
                   f"ego {ego_speed:.1f} m/s")
    return Scene(index=index, name=f"scene-{index + 1:04d}", log=f"synth-{cfg.seed}-{index:04d}",
                 description=description,
                 t0_us=1_600_000_000_000_000 + cfg.seed * 10_000_000_000 + index * 3_600_000_000,
                 prims=solids.build(), instances=instances, road=road, light=light, ego_y=ego_y,
                 ego_speed=ego_speed, ego_phase=ego_phase, global_rot=ob.yaw_matrix(yaw),
                 global_pos=global_pos)


def _road(rng: np.random.Generator) -> Road:
    lane_w = rng.uniform(3.2, 3.7)
    n_fwd, n_back = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    park_r = 2.4 if rng.random() < 0.75 else 0.0
    park_l = 2.4 if rng.random() < 0.6 else 0.0
    marks = [(0.12, 0.06, 2), (-0.12, 0.06, 2)]
    marks += [(-i * lane_w, 0.07, 1) for i in range(1, n_fwd)]
    marks += [(i * lane_w, 0.07, 1) for i in range(1, n_back)]
    marks += [(-n_fwd * lane_w, 0.08, 0), (n_back * lane_w, 0.08, 0)]
    crossings = np.zeros((0, 2))
    if rng.random() < 0.5:
        x0 = rng.uniform(50, 220)
        crossings = np.array([[x0, x0 + rng.uniform(14, 20)]])
    return Road(lane_w, n_fwd, n_back, -(n_fwd * lane_w + park_r), n_back * lane_w + park_l,
                rng.uniform(3.0, 5.0), rng.uniform(3.0, 5.0), np.array(marks), crossings)


def _side(road: Road, side: int) -> Tuple[float, float]:
    """(kerb line y, sidewalk width) of the right (-1) or left (+1) side."""
    return (road.y_right, road.sidewalk_right) if side < 0 else (road.y_left, road.sidewalk_left)


def _segments(road: Road) -> List[Tuple[float, float]]:
    """x-intervals of the street between side streets."""
    edges = [X_MIN_M] + list(road.crossings.ravel()) + [X_MAX_M]
    return list(zip(edges[::2], edges[1::2]))


def _sidewalks(solids: ob.SolidList, road: Road) -> None:
    """Slabs 0.15 m high (their street-side faces are the kerbs), cut into short pieces so that each
    piece covers a small window of every sensor's rays."""
    for side in (-1, 1):
        kerb, width = _side(road, side)
        for x0, x1 in _segments(road):
            cuts = np.linspace(x0, x1, int(np.ceil((x1 - x0) / SLAB_M)) + 1)
            for a, b in zip(cuts[:-1], cuts[1:]):
                solids.add(BOX, ((a + b) / 2, kerb + side * width / 2, 0.075),
                           ((b - a) / 2, width / 2, 0.075), ob.SIDEWALK, ob.M_SIDEWALK, (0.62, 0.64, 0.66))


FACADES = np.array([[0.55, 0.62, 0.7], [0.3, 0.35, 0.6], [0.75, 0.78, 0.8], [0.45, 0.45, 0.47],
                    [0.35, 0.5, 0.65], [0.6, 0.55, 0.5], [0.25, 0.3, 0.45], [0.7, 0.72, 0.66]])


def _buildings(solids: ob.SolidList, road: Road, side: int, rng: np.random.Generator) -> None:
    """Front row along the sidewalk (gaps with fences or walls), a taller back row behind."""
    kerb, width = _side(road, side)
    front = kerb + side * width
    for x0, x1 in _segments(road):
        x = x0
        while x < x1 - 3:
            w = min(rng.uniform(8, 30), x1 - x)
            if rng.random() < 0.22 and w > 4:            # a gap: fence or low wall, ground behind
                gap = min(rng.uniform(3, 10), w)
                if rng.random() < 0.6:
                    fence = rng.random() < 0.6
                    h = rng.uniform(1.2, 2.0) if fence else rng.uniform(0.6, 1.2)
                    solids.add(BOX, (x + gap / 2, front + side * 0.1, h / 2), (gap / 2, 0.05, h / 2),
                               ob.FENCE if fence else ob.WALL, ob.M_FENCE if fence else ob.M_BRICK,
                               (0.3, 0.35, 0.35) if fence else (0.3, 0.35, 0.6))
                x += gap
                continue
            setback = rng.uniform(0, 3.0) if rng.random() < 0.35 else 0.0
            depth = rng.uniform(10, 20)
            height = float(np.clip(rng.lognormal(np.log(14), 0.5), 5, 45))
            y = front + side * (setback + depth / 2)
            color = FACADES[rng.integers(len(FACADES))] * rng.uniform(0.85, 1.1)
            floor_h, spacing = rng.uniform(3.0, 3.6), rng.uniform(2.4, 4.0)
            solids.add(BOX, (x + w / 2, y, height / 2), (w / 2, depth / 2, height / 2), ob.BUILDING,
                       ob.M_FACADE, color, param=(floor_h, spacing, rng.random(), float(rng.random() < 0.5)))
            if setback > 1.0 and rng.random() < 0.5:
                solids.add(BOX, (x + w / 2, front + side * 0.15, 0.45), (w / 2, 0.15, 0.45), ob.WALL,
                           ob.M_BRICK, (0.3, 0.35, 0.6))
            x += w
    back = front + side * rng.uniform(25, 35)
    x = X_MIN_M
    while x < X_MAX_M:
        w = rng.uniform(15, 40)
        height = rng.uniform(15, 50)
        color = FACADES[rng.integers(len(FACADES))] * rng.uniform(0.8, 1.0)
        solids.add(BOX, (x + w / 2, back + side * 10, height / 2), (w / 2, 10, height / 2), ob.BUILDING,
                   ob.M_FACADE, color, param=(rng.uniform(3.0, 3.6), rng.uniform(2.4, 4.0), rng.random(), 0))
        x += w + (rng.uniform(5, 15) if rng.random() < 0.3 else 0.0)


def _furniture(solids: ob.SolidList, road: Road, side: int, rng: np.random.Generator,
               density: float) -> None:
    """Trees, street lights and signs on the sidewalk, 0.6 m from the kerb."""
    kerb, _ = _side(road, side)
    y = kerb + side * 0.6
    if density <= 0:
        return
    x = X_MIN_M + rng.uniform(0, 10)
    while x < X_MAX_M:
        if not road.in_crossing(x, margin=2.0):
            u = rng.random()
            if u < 0.45:
                ob.tree(solids, x, y, rng)
            elif u < 0.75:
                ob.street_light(solids, x, y, -side, rng)
            elif u < 0.87:
                ob.sign(solids, x, y, rng)
        x += rng.uniform(7, 14) / density


def _add_instance(solids: ob.SolidList, instances: List[Instance], x: float, y: float, yaw: float,
                  speed: float, build, category: str, attribute: str) -> None:
    velocity = np.array([speed * np.cos(yaw), speed * np.sin(yaw), 0.0])
    placer = ob.Placer(solids, x, y, yaw, len(instances), velocity)
    w, l, h = build(placer)
    instances.append(Instance(category, attribute, np.array([x, y, h / 2]), (w, l, h), yaw, velocity))


CATEGORY = {"car": "vehicle.car", "van": "vehicle.car", "truck": "vehicle.truck", "bus": "vehicle.bus.rigid"}


def _parked(solids, instances, road: Road, rng, density: float) -> None:
    for side in (-1, 1):
        kerb, _ = _side(road, side)
        if abs(kerb) - (road.n_fwd if side < 0 else road.n_back) * road.lane_w < 1.0:
            continue                                     # no parking lane on this side
        y, yaw = kerb - side * 1.2, (0.0 if side < 0 else np.pi)
        x = X_MIN_M + rng.uniform(0, 5)
        while x < X_MAX_M:
            u = rng.random()
            kind = "car" if u < 0.75 else ("van" if u < 0.9 else "motorbike")
            length = {"car": 4.9, "van": 5.4, "motorbike": 2.0}[kind]
            if rng.random() < min(1.0, 0.7 * density) and not road.in_crossing(x + length / 2, margin=length):
                if kind == "motorbike":
                    _add_instance(solids, instances, x + 1.0, y + side * 0.5, yaw, 0.0,
                                  lambda p: ob.motorbike(p, rng), "vehicle.motorcycle", "cycle.without_rider")
                else:
                    _add_instance(solids, instances, x + length / 2, y, yaw, 0.0,
                                  lambda p: ob.vehicle(p, kind, rng), CATEGORY[kind], "vehicle.parked")
            x += length + rng.uniform(0.8, 3.0)


def _traffic(solids, instances, road: Road, rng, density: float, ego_speed: float, ego_y: float,
             duration: float) -> None:
    """Vehicles in every lane at the lane's speed (no overtaking within a lane), cyclists at the right
    edge; the ego lane keeps 15 m clear around the ego and carries cars and vans only."""
    if density <= 0:
        return
    lanes = [(-(i + 0.5) * road.lane_w, 1) for i in range(road.n_fwd)]
    lanes += [((i + 0.5) * road.lane_w, -1) for i in range(road.n_back)]
    for y, direction in lanes:
        ego_lane = abs(y - ego_y) < 1e-6
        speed = ego_speed if ego_lane else (max(2.0, ego_speed + rng.uniform(-3, 5)) if direction > 0
                                            else rng.uniform(6, 13))
        travel = speed * (duration + 1.0)
        x = X_MIN_M - (travel if direction > 0 else 0.0) + rng.uniform(0, 20)
        x_end = X_MAX_M + (travel if direction < 0 else 0.0)
        while x < x_end:
            u = rng.random()
            kind = "car" if u < 0.7 else ("van" if u < 0.82 else ("truck" if u < 0.91 else "bus"))
            if ego_lane and kind in ("truck", "bus"):
                kind = "car"
            length = {"car": 4.9, "van": 5.4, "truck": 9.0, "bus": 12.5}[kind]
            center = x + length / 2
            clear = not (ego_lane and abs(center - 0.0) < 15.0 + length / 2)
            if clear:
                attribute = "vehicle.moving" if speed > 0 else "vehicle.stopped"
                yaw = 0.0 if direction > 0 else np.pi
                _add_instance(solids, instances, center, y, yaw, speed,
                              lambda p: ob.vehicle(p, kind, rng), CATEGORY[kind], attribute)
            x += length + rng.uniform(8, 30) / density
    y_bike = -road.n_fwd * road.lane_w + 0.4
    speed = rng.uniform(3.5, 6.0)
    for _ in range(rng.poisson(3 * density)):
        x = rng.uniform(X_MIN_M, X_MAX_M - speed * duration)
        _add_instance(solids, instances, x, y_bike, 0.0, speed, lambda p: ob.cyclist(p, rng),
                      "vehicle.bicycle", "cycle.with_rider")


def _people(solids, instances, road: Road, rng, density: float, duration: float) -> None:
    """Walkers in two streams per sidewalk (one per direction, one speed each), standing people by
    the facades."""
    if density <= 0:
        return
    for side in (-1, 1):
        kerb, width = _side(road, side)
        for offset, direction in ((1.5, 1), (min(2.3, width - 0.7), -1)):
            speed = rng.uniform(1.0, 1.6)
            yaw = 0.0 if direction > 0 else np.pi
            x = X_MIN_M + rng.exponential(15 / density)
            while x < X_MAX_M:
                _add_instance(solids, instances, x, kerb + side * offset, yaw, speed,
                              lambda p: ob.pedestrian(p, rng), "human.pedestrian.adult", "pedestrian.moving")
                x += 1.0 + rng.exponential(18 / density)
        x = X_MIN_M + rng.exponential(30 / density)
        while x < X_MAX_M:
            if not road.in_crossing(x, margin=1.0):
                _add_instance(solids, instances, x, kerb + side * (width - 0.5), rng.uniform(-np.pi, np.pi),
                              0.0, lambda p: ob.pedestrian(p, rng), "human.pedestrian.adult",
                              "pedestrian.standing")
            x += 1.0 + rng.exponential(30 / density)


def _lighting(rng: np.random.Generator) -> Lighting:
    elevation, azimuth = np.radians(rng.uniform(20, 65)), rng.uniform(0, 2 * np.pi)
    sun_dir = np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                        np.sin(elevation)])
    if rng.random() < 0.3:                               # overcast
        grey = rng.uniform(0.7, 0.85)
        return Lighting(sun_dir, 0.25, 0.95, np.array([grey + 0.03, grey, grey - 0.02]),
                        np.array([grey + 0.08] * 3))
    return Lighting(sun_dir, rng.uniform(0.75, 0.95), rng.uniform(0.45, 0.6),
                    np.array([0.85, 0.55, 0.3]) * rng.uniform(0.9, 1.05),
                    np.array([0.92, 0.86, 0.8]) * rng.uniform(0.95, 1.05))
