"""`RadarCameraDataset`: camera image + radar key frames + LIDAR_TOP labels (docs/spade.md 1-2).

    ds = RadarCameraDataset(cfg, cfg.data.train_infos, mode="train")
    ds.set_epoch(epoch)
    sample = ds[i]          # dict of docs/architecture.md, NumPy float32 C x H x W arrays
    record_index, camera = ds.pairs[i]

One sample per (key frame, camera) pair of data.cameras (released: CAM_FRONT only), record-major;
a camera's radar input is the points of every radar of data.radars (released: RADAR_FRONT)
through each radar's own pose into the camera at the camera's time (datasets/radar_sweeps.py).
Outside the released pair, a camera the record lacks or whose image file is missing leaves out
that pair only (listed in `dropped_pairs`, one warning), and points at depth <= 0 (behind the
camera, which the released in-image test mirrors in) are dropped from the radar input and the
eval LiDAR ground truth. Each sample carries its `camera`, `keyframe` (record index) and `cam2ego`.

eval: the released protocol at the camera's resolution (LiDAR ground truth: every point whose (u, v)
falls in the canvas, behind the camera too, written in file order; see datasets/geometry.py).
train: 0 < z < data.max_depth_m and the occlusion filter on the LiDAR label, then the camera-intrinsics
disruption (datasets/augment.py) cropping to data.height x data.width, and the semantic target.
data.radar_sweeps > 1 accumulates radar sweeps (datasets/radar_sweeps.py); data.label_kind=depth_png
trains on label maps instead of the LiDAR sweep (datasets/label_maps.py).
A sample's randomness depends only on (train.seed, epoch, index), never on the worker.
Records are validated when the info file is loaded (datasets/records.py): eval mode and train
without data.skip_bad_samples refuse a bad record (or duplicate sample tokens) with one line; train
with skipping replaces a bad record by the next sample and records it like a bad file.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
import os
from typing import Any, Dict, List, Optional, Tuple

import cv2
import numpy as np
from torch.utils.data import Dataset

from datasets import augment, geometry, radar_sweeps
from datasets.sample import SEG_LUT, Frame, eval_sample, frame_pose, radar_features, radar_map
from datasets.infos import LIDAR, InfoFileError, entry_path, entry_poses, load_infos, released_pair
from datasets.io import (DataFileError, read_depth_png, read_image_bgr, read_lidar_points,
                         read_seg_mask, resolve_data_path)
from datasets.label_maps import read_label
from datasets.records import BadRecordError, check_records
from datasets.occlusion import occlusion_keep, scaled_radius_px
from datasets.workers import reuse_freed_buffers
from utils.config import check_config

MAX_CONSECUTIVE_SKIPS = 10
MODES = ("train", "eval")
log = logging.getLogger(__name__)


def _camera_points(record: Dict[str, Any], camera: str, entry: Dict[str, Any], xyz: np.ndarray,
                   K: np.ndarray, h: int, w: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sensor-frame xyz: N x 3 of `entry` -> in-canvas (u, v, depth_m) in `camera`'s image."""
    camera2ego, ego2global_cam = entry_poses(record["cam_infos"][camera])
    sensor2ego, ego2global = entry_poses(entry)
    xyz_cam = geometry.transform_points(
        geometry.sensor_to_camera(sensor2ego, ego2global, ego2global_cam, camera2ego), xyz)
    u, v, depth = geometry.project_points(K, xyz_cam)
    keep = geometry.in_canvas(u, v, h, w)
    return u[keep], v[keep], depth[keep]


def camera_to_keyframe_ego(record: Dict[str, Any], camera: str) -> np.ndarray:
    """4 x 4 float64: `camera`'s frame -> the ego frame of the key frame (the LIDAR_TOP entry's ego
    pose), through the camera's calibration and its own ego pose at its timestamp."""
    camera2ego, ego2global_cam = entry_poses(record["cam_infos"][camera])
    _, ego2global_key = entry_poses(record["lidar_infos"][LIDAR])
    return geometry.rigid_inverse(ego2global_key) @ ego2global_cam @ camera2ego


class RadarCameraDataset(Dataset):
    """Samples of an info file; `mode` is 'train' or 'eval' (see the module docstring)."""

    def __init__(self, cfg, infos_path: str | Path, mode: str, data_root: Optional[str | Path] = None):
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}; expected one of {MODES}")
        if cfg.data.disruption not in augment.DISRUPTIONS:
            raise ValueError(f"data.disruption={cfg.data.disruption!r}; expected one of {augment.DISRUPTIONS}")
        check_config(cfg)                       # data.label_kind / label_dir fit together
        self.cfg, self.mode = cfg, mode
        self.root = Path(data_root if data_root is not None else cfg.data.root)
        self.seg_dir = Path(cfg.data.seg_mask_dir) if cfg.data.seg_mask_dir else self.root / "seg_mask"
        self.infos = load_infos(infos_path)
        if not self.infos:
            raise InfoFileError(f"info file {infos_path} holds no records (create_infos found no sample "
                                "of its split); point data.train_infos / data.val_infos (--infos) at "
                                "a split with samples")
        # every record checked now: eval (and train without skipping) refuses a bad one in one line;
        # train with skipping replaces it through the skip path when it is drawn (load_frame)
        self.infos_path = str(infos_path)
        self.cameras, self.radars = tuple(cfg.data.cameras), tuple(cfg.data.radars)
        self.released = released_pair(self.cameras, self.radars)
        self.bad_records = check_records(self.infos, infos_path,
                                         keep_bad=mode == "train" and cfg.data.skip_bad_samples,
                                         cameras=self.cameras, radars=self.radars,
                                         required=self.released)
        if self.bad_records:
            log.warning("%d of %d records of info file %s are invalid and will be skipped (first: %s)",
                        len(self.bad_records), len(self.infos), infos_path,
                        next(iter(self.bad_records.values())))
        self.pairs, self.dropped_pairs = self._pairs()
        self.epoch = 0
        self.num_skipped = 0       # bad samples replaced by a neighbour (in this process)
        reuse_freed_buffers()

    def _pairs(self) -> Tuple[List[Tuple[int, str]], List[Dict[str, Any]]]:
        """(record index, camera) of every sample, record-major, and the pairs left out (outside the
        released pair: a camera the record lacks, or whose image file is not on disk)."""
        if self.released:
            return [(i, self.cameras[0]) for i in range(len(self.infos))], []
        pairs, dropped = [], []
        for i, record in enumerate(self.infos):
            cams = record.get("cam_infos", {}) if isinstance(record, dict) else {}
            for camera in self.cameras:
                if i in self.bad_records or camera in cams and \
                        os.path.isfile(resolve_data_path(self.root, entry_path(cams[camera]))):
                    pairs.append((i, camera))        # a bad record's pairs go to the skip path
                else:
                    reason = "not in the record" if camera not in cams else \
                        f"image {entry_path(cams[camera])} not found under {self.root}"
                    dropped.append({"record": i, "camera": camera, "reason": reason})
        if dropped:
            log.warning("%d of %d (key frame, camera) pairs of info file %s are left out (first: "
                        "record %d %s: %s)", len(dropped), len(dropped) + len(pairs), self.infos_path,
                        dropped[0]["record"], dropped[0]["camera"], dropped[0]["reason"])
        if not pairs:
            raise InfoFileError(f"info file {self.infos_path}: no record holds an image of "
                                f"data.cameras={list(self.cameras)} under {self.root}; check the "
                                "data root and data.cameras")
        return pairs, dropped

    def __len__(self) -> int:
        return len(self.pairs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _rng(self, index: int) -> np.random.Generator:
        if self.mode == "eval":
            return np.random.default_rng(index)
        return np.random.default_rng([self.cfg.train.seed, self.epoch, index])

    def __getitem__(self, index: int) -> Dict[str, Any]:
        """The sample of `index`. Train mode with data.skip_bad_samples: a sample whose files are
        bad is replaced by the next one, and `skipped` (JSON text, "" when none) lists each
        replaced one as {index, file, reason}."""
        rng = self._rng(index)
        skip = self.mode == "train" and self.cfg.data.skip_bad_samples
        skipped = []
        for attempt in range(MAX_CONSECUTIVE_SKIPS + 1 if skip else 1):
            current = (index + attempt) % len(self)
            try:
                frame = self.load_frame(current)
                break
            except DataFileError as err:
                if not skip:
                    raise
                self.num_skipped += 1
                skipped.append({"index": current, "file": err.path, "reason": str(err)})
                log.warning("sample %d skipped, sample %d used instead: %s", current,
                            (current + 1) % len(self), err)
        else:
            raise DataFileError(f"{MAX_CONSECUTIVE_SKIPS + 1} consecutive samples from index {index} "
                                f"are unreadable under {self.root}; check the data root")
        if self.mode == "train":
            sample = self._train_sample(frame, rng)
            sample["skipped"] = json.dumps(skipped) if skipped else ""
        else:
            sample = eval_sample(frame, self.cfg.data, rng)
        sample["index"] = np.int64(current)
        sample["keyframe"] = np.int64(self.pairs[current][0])
        return sample

    def load_frame(self, index: int) -> Frame:
        """Read and project one sample's files (no randomness); in train mode with the mask loss
        also its semantic mask."""
        record_index, camera = self.pairs[index]
        if record_index in self.bad_records:
            raise BadRecordError(self.bad_records[record_index], self.infos_path)
        record = self.infos[record_index]
        cam = record["cam_infos"][camera]
        image_path = resolve_data_path(self.root, entry_path(cam))
        img = read_image_bgr(image_path)
        h, w = img.shape[:2]
        K = np.asarray(cam["calibrated_sensor"]["camera_intrinsic"], dtype=np.float64)
        check_image_size(img, cam, K, image_path)
        lidar = record["lidar_infos"][LIDAR]
        lidar_uvz = _camera_points(
            record, camera, lidar, read_lidar_points(resolve_data_path(self.root, entry_path(lidar))), K, h, w)
        if not self.released:                               # behind the camera: mirrored, dropped
            lidar_uvz = tuple(a[lidar_uvz[2] > 0] for a in lidar_uvz)
        radar_xyz, radar_uvz = radar_sweeps.camera_radar(record, self.root, self.cfg.data.radar_sweeps,
                                                         K, h, w, camera, self.radars,
                                                         ahead_only=not self.released)
        name = Path(entry_path(cam)).stem
        dense_path = self.root / "depth_dense" / f"{name}.png"
        dense = read_depth_png(dense_path, "regenerate the world with tools/make_synthetic.py") if self.mode == "eval" and dense_path.is_file() else None
        train = self.mode == "train"
        seg_ids = self._seg_ids(name, img.shape[:2]) if train and self.cfg.data.mask_supervision else None
        label_m = read_label(self.root, self.cfg.data, name) if train else None     # None: LiDAR label
        return Frame(name, img, K, lidar_uvz, radar_uvz, radar_xyz.astype(np.float32), dense, seg_ids,
                     label_m, camera, camera_to_keyframe_ego(record, camera))

    def _train_lidar(self, frame: Frame) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """In-canvas LiDAR with 0 < z < max_depth_m and the occlusion filter, file order."""
        u, v, depth = frame.lidar_uvz
        near = (depth > 0) & (depth < self.cfg.data.max_depth_m)
        u, v, depth = u[near], v[near], depth[near]
        radius_px = scaled_radius_px(self.cfg.data.occlusion_radius_px, frame.img.shape[1])
        keep = occlusion_keep(u, v, depth, radius_px, self.cfg.data.occlusion_rel_threshold)
        return u[keep], v[keep], depth[keep]

    def _sparse_maps(self, frame: Frame, lidar_uvz, d: augment.Disruption) -> Tuple[np.ndarray, np.ndarray]:
        """(lidar_map, radar_map), each out_h x out_w float32, after the disruption `d`."""
        (h, w), (out_h, out_w) = d.src_hw, d.out_hw
        columns = self.cfg.data.radar_columns
        if self.cfg.data.disruption == "geometric":      # project through the new intrinsics
            A = augment.disruption_affine(d)
            (lu, lv, lz), (ru, rv, rz) = [(A[0, 0] * u + A[0, 2], A[1, 1] * v + A[1, 2], z)
                                          for u, v, z in (lidar_uvz, frame.radar_uvz)]
            inside = geometry.in_canvas(ru, rv, out_h, out_w)
            return (geometry.rasterize_depth(lu, lv, lz, out_h, out_w),
                    radar_map(ru[inside], rv[inside], rz[inside], out_h, out_w, columns))
        lidar_map = augment.warp_sparse_nearest(*geometry.unique_pixels(*lidar_uvz, h, w), d)
        ru, rv, rz = frame.radar_uvz
        if columns:
            row = augment.warp_columns(geometry.column_depths(ru, rz, w), d)
            return lidar_map, np.repeat(row[None, :], out_h, axis=0)
        return lidar_map, augment.warp_sparse_nearest(*geometry.unique_pixels(ru, rv, rz, h, w), d)

    def _train_sample(self, frame: Frame, rng: np.random.Generator) -> Dict[str, Any]:
        src_hw = frame.img.shape[:2]
        lidar_uvz = self._train_lidar(frame)
        d = augment.sample_disruption(rng, self.cfg.data.disruption, src_hw,
                                      (self.cfg.data.height, self.cfg.data.width))
        lidar_map, radar_map = self._sparse_maps(frame, lidar_uvz, d)
        sample = {
            "img": augment.warp_image(frame.img, d),
            "radar_map": radar_map[None],
            **radar_features(frame.radar_xyz, self.cfg.data.max_radar_points, rng),
            "lidar_map": lidar_map[None],
            "K": (augment.disruption_affine(d) @ frame.K).astype(np.float32),
            "name": frame.name,
            **frame_pose(frame),
        }
        if frame.seg_ids is not None:
            sample["seg_target"] = cv2.LUT(augment.warp_dense_nearest(frame.seg_ids, d), SEG_LUT)[None]
        if frame.label_m is not None:                      # data.label_kind=depth_png: the label map
            label = augment.warp_dense_nearest(frame.label_m, d)
            sample["lidar_map"] = np.where(label < self.cfg.data.max_depth_m, label, 0)[None]
        return sample

    def _seg_ids(self, name: str, image_hw: Tuple[int, int]) -> np.ndarray:
        """h x w uint8 ADE20K-150 ids of seg_mask/<name>.png, checked against the image size."""
        path = self.seg_dir / f"{name}.png"
        ids = read_seg_mask(path)
        if ids.shape != image_hw:
            raise DataFileError(f"semantic mask {path} is {ids.shape[0]}x{ids.shape[1]} but its image is "
                                f"{image_hw[0]}x{image_hw[1]}; regenerate it with tools/gen_seg_masks.py",
                                path)
        return ids


def check_image_size(img: np.ndarray, cam: Dict[str, Any], K: np.ndarray, path: Path) -> None:
    """Reject an image whose size is not the one its info record gives (`height`, `width`, when
    recorded) or whose K puts the principal point outside it: K and the LiDAR ground truth
    belong to the recorded size."""
    h, w = img.shape[:2]
    recorded = (cam.get("height"), cam.get("width"))
    cx, cy = K[0, 2], K[1, 2]
    if None not in recorded and recorded != (h, w):
        why = f"its info record says {recorded[0]}x{recorded[1]}"
    elif not (0 < cx < w and 0 < cy < h):
        why = f"the principal point ({cx:.0f}, {cy:.0f}) of its intrinsics lies outside it"
    else:
        return
    raise DataFileError(f"image {path} is {h}x{w} but {why}: it was resized or replaced; restore the "
                        "original image (or regenerate the info file if the image is the right one)",
                        path)
