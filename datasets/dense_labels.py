"""Dense labels as prior work builds them: many LiDAR sweeps accumulated around a key frame.

    recipe = load_recipe("accum_boxes", ["sweeps_before=5"])    # configs/dense_labels/<name>.yaml
    label = build_label(plan, read_points, camera, recipe, moving_boxes)   # AccumulatedLabel

For each sweep of the plan (datasets/lidar_sweeps.py): points nearer than `min_distance_m` to the
sensor dropped (the car's own returns, as the devkit's multi-sweep reader), then sensor -> ego at
the sweep's time -> global -> ego at the image time -> camera (one float64 4 x 4 chain per sweep:
ego-motion compensation assuming a static world), kept when in the canvas with
0 < z < `max_depth_m`. Points in the box of a moving object are flagged; with `remove_moving` those
of the sweeps other than the key frame are dropped (the key frame's own points are where the object
is, and stay). Then the nearest point per pixel (z-buffer), the project's occlusion
filter (datasets/occlusion.py) with `occlusion_radius_px` (at 1600 px width, scaled; 0 = off),
and optionally hole filling: linear interpolation between the labels around a gap, along columns
then rows, for gaps up to `fill_max_gap_px` wide (at 1600 px width).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Sequence

import numpy as np
import yaml

from datasets import geometry
from datasets.lidar_sweeps import SweepPlan, in_boxes
from datasets.occlusion import occlusion_keep, scaled_radius_px
from utils.config import apply_mapping, parse_overrides

PRESETS = Path(__file__).resolve().parents[1] / "configs" / "dense_labels"


@dataclass
class LabelRecipe:
    """How a dense label is built (written beside the labels as recipe.yaml)."""
    sweeps_before: int = 10            # chain positions before the key frame (20 Hz: 0.5 s)
    sweeps_after: int = 10             # and after it
    min_distance_m: float = 1.0        # drop points this near the sensor
    max_depth_m: float = 80.0          # keep 0 < camera z < this
    remove_moving: bool = False        # drop other sweeps' points in boxes of moving objects
    moving_speed_mps: float = 0.5      # an object is moving above this speed (box_velocity)
    box_wlh_factor: float = 1.1        # boxes enlarged by this factor (devkit points_in_box)
    occlusion_radius_px: float = 10.0  # occlusion filter radius at 1600 px width (0 = off)
    occlusion_rel_threshold: float = 0.1
    fill_max_gap_px: float = 0.0       # hole filling: widest gap bridged, at 1600 px width (0 = off)


def load_recipe(preset: str, overrides: Sequence[str] = ()) -> LabelRecipe:
    """A preset (configs/dense_labels/<preset>.yaml, or a YAML path; `base:` names a preset file
    it builds on) with key=value overrides; unknown keys, wrong types and negative values raise
    ValueError naming them."""
    path = Path(preset) if preset.endswith((".yaml", ".yml")) else PRESETS / f"{preset}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PRESETS.glob("*.yaml")))
        raise ValueError(f"label preset {path} not found; choose one of {known} or give a YAML path")
    recipe = LabelRecipe()
    for layer in _recipe_layers(path):
        apply_mapping(recipe, layer)
    apply_mapping(recipe, parse_overrides(overrides))
    negative = [k for k, v in asdict(recipe).items() if not isinstance(v, bool) and v < 0]
    if negative:
        raise ValueError(f"label recipe {path}: {', '.join(negative)} must not be negative")
    return recipe


def _recipe_layers(path: Path) -> List[Dict]:
    """The YAML mappings of a preset, its `base:` (a file beside it) first."""
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"label preset {path} must hold a mapping of recipe keys")
    base = data.pop("base", None)
    return (_recipe_layers(path.parent / base) if base else []) + [data]


@dataclass
class Camera:
    """The key frame's image geometry: K (3 x 3), size, camera -> ego and ego -> global at the
    image time (4 x 4 float64)."""
    K: np.ndarray
    height: int
    width: int
    camera2ego: np.ndarray
    ego2global: np.ndarray


# What a label pixel's point was: SOURCE_STATIC (or none), on a moving object in the key frame,
# on a moving object in another sweep (where the object was then: the smear).
SOURCE_STATIC, SOURCE_MOVING_KEY, SOURCE_MOVING_OTHER = 0, 1, 2


@dataclass
class AccumulatedLabel:
    """depth_m: H x W float32 (0 = none); source: H x W uint8, SOURCE_* of each label pixel's
    point (filled pixels: SOURCE_STATIC); stats: counts of sweeps, points and pixels."""
    depth_m: np.ndarray
    source: np.ndarray
    stats: Dict[str, int]


def _sweep_points(sweep, xyz: np.ndarray, camera: Camera, recipe: LabelRecipe,
                  moving_boxes: Dict[str, list]) -> Dict[str, np.ndarray]:
    """One sweep's kept points: u, v, z (N float64) and source (N uint8, SOURCE_*)."""
    xyz = xyz[np.einsum("ij,ij->i", xyz, xyz) >= recipe.min_distance_m ** 2]
    xyz_global = geometry.transform_points(sweep.ego2global @ sweep.sensor2ego, xyz)
    to_camera = geometry.rigid_inverse(camera.camera2ego) @ geometry.rigid_inverse(camera.ego2global)
    u, v, z = geometry.project_points(camera.K, geometry.transform_points(to_camera, xyz_global))
    keep = geometry.in_canvas(u, v, camera.height, camera.width) & (z > 0) & (z < recipe.max_depth_m)
    source = np.zeros(int(keep.sum()), dtype=np.uint8)
    if moving_boxes.get(sweep.sample_data_token):
        inside = in_boxes(xyz_global[keep], moving_boxes[sweep.sample_data_token], recipe.box_wlh_factor)
        source[inside] = SOURCE_MOVING_KEY if sweep.offset == 0 else SOURCE_MOVING_OTHER
    return {"u": u[keep], "v": v[keep], "z": z[keep], "source": source}


def nearest_per_pixel(u: np.ndarray, v: np.ndarray, z: np.ndarray, width: int) -> np.ndarray:
    """Indices of the nearest point (smallest z) of each occupied pixel (in-canvas u, v: N)."""
    pixel = v.astype(np.int64) * width + u.astype(np.int64)
    order = np.lexsort((z, pixel))
    first = np.ones(len(order), dtype=bool)
    first[1:] = pixel[order][1:] != pixel[order][:-1]
    return order[first]


def _fill_columns(depth_m: np.ndarray, max_gap_px: float) -> np.ndarray:
    """H x W depth with each empty pixel that lies between two labelled pixels of its column at
    most `max_gap_px` apart set to their linear interpolation."""
    h = depth_m.shape[0]
    rows = np.arange(h)[:, None]
    labelled = depth_m > 0
    above = np.maximum.accumulate(np.where(labelled, rows, -1), axis=0)
    below = np.flip(np.minimum.accumulate(np.flip(np.where(labelled, rows, h), 0), axis=0), 0)
    fill = ~labelled & (above >= 0) & (below < h) & (below - above <= max_gap_px)
    cols = np.nonzero(fill)[1]
    top, bottom = above[fill], below[fill]
    weight = (np.nonzero(fill)[0] - top) / (bottom - top)
    out = depth_m.copy()
    out[fill] = (1 - weight) * depth_m[top, cols] + weight * depth_m[bottom, cols]
    return out


def fill_holes(depth_m: np.ndarray, max_gap_px: float) -> np.ndarray:
    """H x W depth (0 = none) with its gaps of at most `max_gap_px` bridged by linear
    interpolation, along columns (between LiDAR rings) and then along rows; values across an
    object's edge are guesses between the two surfaces, as in any interpolated label."""
    if max_gap_px <= 0:
        return depth_m
    return _fill_columns(_fill_columns(depth_m, max_gap_px).T, max_gap_px).T


def build_label(plan: SweepPlan, read_points: Callable[[str], np.ndarray], camera: Camera,
                recipe: LabelRecipe, moving_boxes: Dict[str, list]) -> AccumulatedLabel:
    """The accumulated label of one key frame. `read_points(recorded path)` -> N x 3 sensor-frame
    xyz; `moving_boxes`: sweep sample_data token -> devkit Boxes (global frame) of the moving
    objects at its time, the key frame's included (datasets/lidar_sweeps.MovingBoxes; empty
    without annotations: every point counts as static)."""
    parts: List[Dict[str, np.ndarray]] = [{k: np.zeros(0, np.uint8 if k == "source" else np.float64)
                                           for k in ("u", "v", "z", "source")}]     # no sweep at all
    parts += [_sweep_points(s, read_points(s.path), camera, recipe, moving_boxes) for s in plan.sweeps]
    pts = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    stats = {"sweeps": len(plan.sweeps), "points": len(pts["z"]),
             "moving_points_key": int((pts["source"] == SOURCE_MOVING_KEY).sum()),
             "moving_points_other": int((pts["source"] == SOURCE_MOVING_OTHER).sum())}
    if recipe.remove_moving:
        pts = {k: a[pts["source"] != SOURCE_MOVING_OTHER] for k, a in pts.items()}
    nearest = nearest_per_pixel(pts["u"], pts["v"], pts["z"], camera.width)
    pts = {k: a[nearest] for k, a in pts.items()}
    radius = scaled_radius_px(recipe.occlusion_radius_px, camera.width)
    kept = occlusion_keep(pts["u"], pts["v"], pts["z"], radius, recipe.occlusion_rel_threshold)
    stats["occluded_pixels"] = int((~kept).sum())
    pts = {k: a[kept] for k, a in pts.items()}
    rows, cols = pts["v"].astype(np.int64), pts["u"].astype(np.int64)
    depth = np.zeros((camera.height, camera.width), dtype=np.float32)
    depth[rows, cols] = pts["z"]
    source = np.zeros(depth.shape, dtype=np.uint8)
    source[rows, cols] = pts["source"]
    stats["measured_pixels"] = len(rows)
    depth = fill_holes(depth, scaled_radius_px(recipe.fill_max_gap_px, camera.width))
    stats["filled_pixels"] = int(np.count_nonzero(depth)) - len(rows)
    return AccumulatedLabel(depth, source, stats)
