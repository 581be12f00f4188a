"""Single frames outside a dataset (tools/predict.py, the ONNX check): your own image, radar
points and intrinsics, one nuScenes sample by token / index / name, a synthetic frame with real
formats, and the files a frame's prediction is written to.

    frame = own_frame("img.jpg", "radar.npy", "K.json")            # camera-frame points
    frame = own_frame("img.jpg", "radar.pcd", "K.json", "E.json")  # radar-frame .pcd + extrinsics
    sample = frame_sample(frame, cfg)          # the dataset's eval-mode sample (docs/architecture.md)
    sample = nuscenes_sample(cfg, root, infos_path="val.pkl", index=3)   # or sample_token=...
    paths = write_outputs(depth_m, "out/", sample["name"])   # .png (uint16 mm), .npy (m), _color.png
    batch = check_inputs(900, 1600)            # two frames (with / without radar) as a batch

Camera frame (the nuScenes / OpenCV convention): x right, y down, z forward, metres; a point
projects to pixel (u, v) = (fx x/z + cx, fy y/z + cy) through the 3 x 3 intrinsic K of the image
as it is given (after any resize or crop of your own). Own data and nuScenes samples go through
the same sample builder as the dataset, so the network inputs follow the released semantics
(docs/spade.md section 2): radar depth down whole columns, camera-frame xyz as point features.

Own-data inputs are refused with one line naming the file and the fix when they are not physical:
input files must be regular files under a size ceiling (a FIFO or /dev/zero is never read; see
datasets/io.py); radar points finite with no coordinate beyond MAX_RADAR_DISTANCE_M (2 km) after
the extrinsics; K a pinhole matrix with its principal point inside the image and focal lengths of
MIN_FOCAL_RATIO .. MAX_FOCAL_RATIO (0.05 .. 100) x the image's longer side (datasets/records.py).
An info file (--infos) is validated like the dataset's (datasets/records.py).
"""
from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch

from datasets import geometry
from datasets.build import build_dataset
from datasets.infos import CAMERA, entry_path, load_infos, load_nuscenes, make_record, save_infos
from datasets.io import (DataFileError, RefusedFileError, read_image_bgr, read_radar_points,
                         read_regular_file, write_depth_png)
from datasets.records import MAX_FOCAL_RATIO, MIN_FOCAL_RATIO, check_records
from datasets.sample import Frame, eval_sample
from utils.config import Config
from utils.files import atomic_write, write_png
from utils.visualize import depth_tile

K_EXAMPLE = '{"camera_intrinsic": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]}'
E_EXAMPLE = ('{"rotation": [w, x, y, z], "translation": [x, y, z]} or {"matrix": 4 x 4 rows}, '
             "radar -> camera")
POINTS_HINT = ("save an N x 3 float array of camera-frame x right, y down, z forward in metres, "
               "e.g. np.save(path, xyz[:, :3])")
# Own-data radar points: no coordinate beyond 2 km (8x the 250 m of nuScenes' Continental ARS 408;
# a cloud in millimetres exceeds it with any return beyond 2 m). 1e30 m gave 3e30 m predictions.
MAX_RADAR_DISTANCE_M = 2000.0
MAX_JSON_BYTES = 1 << 20             # an intrinsics / extrinsics file is a few hundred bytes
MAX_POINTS_BYTES = 64 << 20          # .npy radar points: 2.8M float64 points; nuScenes: ~125


class PredictInputError(ValueError):
    """An input file of tools/predict.py is missing, unreadable or has the wrong content."""


def _read_json(path: Path, what: str, example: str) -> Dict[str, Any]:
    try:
        raw = read_regular_file(path, f"{what} file", MAX_JSON_BYTES, "check the path")
    except DataFileError as err:               # not found, no regular file, too large, unreadable
        raise PredictInputError(str(err)) from None
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PredictInputError(f"{what} file {path} is not readable JSON ({err}); it must hold "
                                f"{example}") from None
    if not isinstance(data, dict):
        raise PredictInputError(f"{what} file {path} must hold a JSON object: {example}")
    return data


def _matrix(value: Any, shape: tuple, path: Path, key: str, example: str) -> np.ndarray:
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        m = np.zeros(0)
    if m.shape != shape or not np.isfinite(m).all():
        raise PredictInputError(f"{path}: '{key}' must be {shape[0]} x {shape[1]} finite numbers, "
                                f"got {value!r}; expected {example}")
    return m


def read_intrinsics(path: str | Path) -> np.ndarray:
    """3 x 3 float64 K from JSON key `camera_intrinsic` (a nuScenes calibrated_sensor record works)."""
    path = Path(path)
    data = _read_json(path, "intrinsics", K_EXAMPLE)
    if "camera_intrinsic" not in data:
        raise PredictInputError(f"intrinsics file {path} has no key 'camera_intrinsic' (keys: "
                                f"{sorted(data)}); write {K_EXAMPLE} in pixels of the image you pass")
    K = _matrix(data["camera_intrinsic"], (3, 3), path, "camera_intrinsic", K_EXAMPLE)
    if K[0, 0] <= 0 or K[1, 1] <= 0 or not np.allclose(K[2], [0, 0, 1]):
        raise PredictInputError(f"intrinsics file {path}: camera_intrinsic {K.tolist()} is not a "
                                f"pinhole matrix (fx, fy > 0, last row [0, 0, 1]); expected {K_EXAMPLE}")
    return K


def check_intrinsics(K: np.ndarray, h: int, w: int, path: str | Path) -> None:
    """Reject a K whose principal point lies outside the h x w image (K of another resolution)
    or whose focal lengths are not those of a camera for this image (MIN_FOCAL_RATIO ..
    MAX_FOCAL_RATIO x the longer side: fields of view of 169 .. 0.6 deg; fx = 1e-300 gave
    predictions of 3e30 m)."""
    cx, cy = K[0, 2], K[1, 2]
    scale = ("after resizing an image by sx = new_w / old_w, sy = new_h / old_h scale fx, cx by sx "
             "and fy, cy by sy (after a crop, subtract its left/top offset from cx/cy)")
    if not (0 < cx < w and 0 < cy < h):
        raise PredictInputError(
            f"intrinsics file {path}: principal point ({cx:.1f}, {cy:.1f}) lies outside the "
            f"{w} x {h} image, so K belongs to another image size; {scale}")
    lo, hi = MIN_FOCAL_RATIO * max(h, w), MAX_FOCAL_RATIO * max(h, w)
    fx, fy = K[0, 0], K[1, 1]
    if not (lo <= fx <= hi and lo <= fy <= hi):
        raise PredictInputError(
            f"intrinsics file {path}: focal lengths fx={fx:g}, fy={fy:g} px are outside {lo:g} .. "
            f"{hi:g} px ({MIN_FOCAL_RATIO:g} .. {MAX_FOCAL_RATIO:g} x the longer side of the {w} x {h} "
            f"image); give them in pixels of this image ({scale})")


def read_extrinsics(path: str | Path) -> np.ndarray:
    """4 x 4 float64 radar -> camera: {"rotation": [w, x, y, z], "translation": [3]} or {"matrix"}."""
    path = Path(path)
    data = _read_json(path, "extrinsics", E_EXAMPLE)
    if "matrix" in data:
        T = _matrix(data["matrix"], (4, 4), path, "matrix", E_EXAMPLE)
        if not np.allclose(T[3], [0, 0, 0, 1]):
            raise PredictInputError(f"extrinsics file {path}: last row of 'matrix' must be [0, 0, 0, 1]")
    elif "rotation" in data and "translation" in data:
        q = _matrix(data["rotation"], (4,), path, "rotation", E_EXAMPLE)
        t = _matrix(data["translation"], (3,), path, "translation", E_EXAMPLE)
        if abs(np.linalg.norm(q) - 1.0) > 1e-3:
            raise PredictInputError(f"extrinsics file {path}: rotation {q.tolist()} is not a unit "
                                    "quaternion [w, x, y, z]")
        T = geometry.pose_matrix(t, q)
    else:
        raise PredictInputError(f"extrinsics file {path} has neither 'matrix' nor 'rotation' + "
                                f"'translation' (keys: {sorted(data)}); write {E_EXAMPLE}")
    R = T[:3, :3]
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-4) or np.linalg.det(R) < 0:
        raise PredictInputError(f"extrinsics file {path}: the rotation part is not a rotation "
                                "(R R^T != I or det < 0)")
    return T


def read_points_npy(path: str | Path) -> np.ndarray:
    """N x 3 float64 points of a `.npy` file (N may be 0)."""
    path = Path(path)
    try:
        raw = read_regular_file(path, "radar points file", MAX_POINTS_BYTES, "check --radar-points")
    except DataFileError as err:               # not found, no regular file, too large, unreadable
        raise PredictInputError(str(err)) from None
    try:
        xyz = np.load(io.BytesIO(raw), allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise PredictInputError(f"radar points file {path} is not a readable .npy array ({err}); "
                                f"{POINTS_HINT}") from None
    if xyz.ndim != 2 or xyz.shape[1] != 3 or not np.issubdtype(xyz.dtype, np.number):
        raise PredictInputError(f"radar points file {path} holds a {xyz.dtype} array of shape "
                                f"{xyz.shape}; expected N x 3: {POINTS_HINT}")
    bad = ~np.isfinite(xyz).all(1)
    if bad.any():
        raise PredictInputError(f"radar points file {path}: {int(bad.sum())} of {len(xyz)} rows are "
                                "not finite; drop them (xyz[np.isfinite(xyz).all(1)])")
    return xyz.astype(np.float64)


def read_camera_radar(path: str | Path, extrinsics_path: Optional[str | Path] = None) -> np.ndarray:
    """N x 3 float64 camera-frame radar points.

    `.npy`: N x 3, in the camera frame, or in the radar frame when `extrinsics_path` is given.
    `.pcd`: a nuScenes RADAR `.pcd` (devkit RadarPointCloud default filters), radar frame; needs
    `extrinsics_path` (radar -> camera).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        xyz = read_points_npy(path)
    elif suffix == ".pcd":
        if extrinsics_path is None:
            raise PredictInputError(f"radar point cloud {path} is in the radar frame: pass "
                                    f"--extrinsics E.json (radar -> camera) with {E_EXAMPLE}")
        try:
            xyz = read_radar_points(path).astype(np.float64)
        except DataFileError as err:
            raise PredictInputError(str(err)) from None
    else:
        raise PredictInputError(f"radar points file {path}: unknown type {suffix!r}; give a .npy "
                                "(N x 3) or a nuScenes RADAR .pcd")
    if extrinsics_path is not None:
        xyz = geometry.transform_points(read_extrinsics(extrinsics_path), xyz)
    far = ~(np.abs(xyz).max(1, initial=0) <= MAX_RADAR_DISTANCE_M)
    if far.any():
        raise PredictInputError(
            f"radar points file {path}: {int(far.sum())} of {len(xyz)} points lie farther than "
            f"{MAX_RADAR_DISTANCE_M:g} m from the camera (largest |coordinate| "
            f"{float(np.abs(xyz).max()):.3g} m): no radar sees that far; give metres (not "
            f"millimetres){' and check --extrinsics' if extrinsics_path is not None else ''}")
    return xyz


def read_user_image(path: str | Path) -> np.ndarray:
    """H x W x 3 uint8 BGR of any image OpenCV reads."""
    path = Path(path)
    if not path.exists():
        raise PredictInputError(f"image {path} not found; check --image")
    try:
        return read_image_bgr(path)
    except RefusedFileError as err:               # no regular file, or over a size ceiling
        raise PredictInputError(str(err)) from None
    except DataFileError:
        raise PredictInputError(f"image {path} is not an image OpenCV can read (or it is truncated); "
                                "give a complete JPEG or PNG") from None


def camera_frame(name: str, img: np.ndarray, K: np.ndarray, xyz_cam: np.ndarray) -> Frame:
    """A dataset `Frame` (no LiDAR) from an image, its K and camera-frame radar points N x 3."""
    h, w = img.shape[:2]
    u, v, depth_m = geometry.project_points(K, xyz_cam)
    keep = geometry.in_canvas(u, v, h, w)
    empty = np.zeros(0)
    return Frame(name, img, K, (empty, empty, empty), (u[keep], v[keep], depth_m[keep]),
                 np.asarray(xyz_cam, dtype=np.float32), None)


def own_frame(image_path: str | Path, radar_path: str | Path, intrinsics_path: str | Path,
              extrinsics_path: Optional[str | Path] = None) -> Frame:
    """The frame of your own image, radar points and intrinsics (see `read_camera_radar`)."""
    img = read_user_image(image_path)
    K = read_intrinsics(intrinsics_path)
    check_intrinsics(K, *img.shape[:2], intrinsics_path)
    xyz_cam = read_camera_radar(radar_path, extrinsics_path)
    return camera_frame(Path(image_path).stem, img, K, xyz_cam)


def frame_sample(frame: Frame, cfg) -> Dict[str, Any]:
    """The eval-mode sample of `frame` (radar subset, when over data.max_radar_points, seeded 0);
    `lidar_map` is all zero for own data."""
    return eval_sample(frame, cfg.data, np.random.default_rng(0))


def find_record_index(records, infos_path, name: Optional[str], sample_token: Optional[str],
                      cameras: Sequence[str] = (CAMERA,)) -> int:
    """Index of the record whose sample token is `sample_token`, or whose image of one of
    `cameras` has basename `name`; PredictInputError naming the selectors when none does."""
    for i, record in enumerate(records):
        cams = [record.get("cam_infos", {}).get(camera) for camera in cameras]
        if (sample_token is not None and record.get("sample_token") == sample_token) or \
                (name is not None and any(cam and Path(entry_path(cam)).stem == name for cam in cams)):
            return i
    wanted = f"sample token {sample_token}" if sample_token is not None else f"image name {name}"
    raise PredictInputError(f"info file {infos_path} has no record with {wanted}; pick the frame by "
                            "--index, --name (image basename without extension) or --sample-token")


def nuscenes_sample(cfg, data_root: str | Path, *, infos_path: Optional[str | Path] = None,
                    index: Optional[int] = None, name: Optional[str] = None,
                    sample_token: Optional[str] = None, version: str = "v1.0-trainval") -> Dict[str, Any]:
    """The dataset's eval-mode sample of one nuScenes frame (the key frame's image of
    data.cameras[0] with data.radars: released, CAM_FRONT + RADAR_FRONT).

    With `infos_path`: the record at `index`, or the one whose image basename is `name` or whose
    sample token is `sample_token`; the sample is then exactly what eval.py feeds the network for
    it. Without: the devkit (`version` tables under `data_root`) makes the record of
    `sample_token`, taken as index 0 (this only matters for the random radar subset of frames
    with more than data.max_radar_points points).
    """
    if infos_path is not None:
        records = load_infos(infos_path)
        check_records(records, infos_path, keep_bad=False)      # InfoFileError: one line
        if index is None:
            index = find_record_index(records, infos_path, name, sample_token, cfg.data.cameras)
        if not 0 <= index < len(records):
            raise PredictInputError(f"--index {index} is out of range: info file {infos_path} has "
                                    f"{len(records)} records")
        ds = build_dataset(cfg, "val", infos=infos_path, data_root=data_root)
        pair = (index, cfg.data.cameras[0])
        if pair not in ds.pairs:
            raise PredictInputError(f"record {index} of info file {infos_path} has no usable "
                                    f"{pair[1]} image under {data_root}")
        return ds[ds.pairs.index(pair)]
    if sample_token is None:
        raise PredictInputError("a nuScenes frame needs --sample-token, or --infos with --index, "
                                "--name or --sample-token")
    try:
        nusc = load_nuscenes(data_root, version)
    except DataFileError as err:
        raise PredictInputError(f"{err} (--data-root, --version)") from None
    try:
        record = make_record(nusc, nusc.get("sample", sample_token))
    except KeyError:
        raise PredictInputError(f"sample token {sample_token} is not in {version} under "
                                f"{data_root}") from None
    with tempfile.TemporaryDirectory() as tmp:
        save_infos([record], Path(tmp) / "one_sample.pkl")
        return build_dataset(cfg, "val", infos=Path(tmp) / "one_sample.pkl", data_root=data_root)[0]


def write_outputs(depth_m: np.ndarray, out_dir: str | Path, name: str,
                  max_depth_m: float = 80.0) -> Dict[str, Path]:
    """depth_m: H x W (m) -> out_dir/<name>.png (uint16 mm, as eval.py --save-pred writes),
    <name>.npy (float32 m) and <name>_color.png (turbo colours on 0..max_depth_m, BGR)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    depth_m = np.asarray(depth_m, dtype=np.float32)
    paths = {"png": out_dir / f"{name}.png", "npy": out_dir / f"{name}.npy",
             "color": out_dir / f"{name}_color.png"}
    write_depth_png(paths["png"], depth_m)
    atomic_write(paths["npy"], lambda f: np.save(f, depth_m))
    write_png(paths["color"], depth_tile(depth_m, max_depth_m))
    return paths


def synthetic_frame(height: int, width: int, num_points: int = 60, seed: int = 0) -> Frame:
    """A frame with real formats: a smooth BGR uint8 image with noise, a nuScenes-like K scaled
    to the width, and `num_points` radar points (camera frame, some outside the canvas)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ramps = np.stack([xs / width, ys / height, 1 - xs / width], -1) * 200
    img = np.clip(ramps + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)
    f_px = 1266.0 * width / 1600
    K = np.array([[f_px, 0, width / 2], [0, f_px, height / 2], [0, 0, 1]])
    xyz = np.stack([rng.uniform(-25, 25, num_points), rng.uniform(-1, 2, num_points),
                    rng.uniform(-5, 70, num_points)], 1)
    return camera_frame("synthetic", img, K, xyz)


def check_inputs(height: int, width: int, max_points: int = 200,
                 radar_columns: bool = True) -> Dict[str, torch.Tensor]:
    """A batch of 2 inputs in the dataset's format: a synthetic frame with radar points (columns,
    point features), and the same image with no radar point at all (empty map, count 0)."""
    cfg = Config()
    cfg.data.max_radar_points, cfg.data.radar_columns = max_points, radar_columns
    with_radar = frame_sample(synthetic_frame(height, width), cfg)
    no_radar = frame_sample(synthetic_frame(height, width, num_points=0), cfg)
    batch = {name: torch.from_numpy(np.stack([with_radar[name], no_radar[name]]))
             for name in ("img", "radar_map", "radar_pts", "radar_count")}
    batch["img"] = batch["img"].float()          # the exported graph takes a float32 image
    return batch
