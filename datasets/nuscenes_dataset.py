"""`RadarCameraDataset`: CAM_FRONT image + RADAR_FRONT key frame + LIDAR_TOP labels (docs/spade.md 1-2).

    ds = RadarCameraDataset(cfg, cfg.data.train_infos, mode="train")
    ds.set_epoch(epoch)
    sample = ds[i]          # dict of docs/architecture.md, NumPy float32 C x H x W arrays

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
from typing import Any, Dict, Optional, Tuple

import cv2
import numpy as np
from torch.utils.data import Dataset

from datasets import augment, geometry, radar_sweeps
from datasets.sample import SEG_LUT, Frame, eval_sample, radar_features, radar_map
from datasets.infos import CAMERA, LIDAR, InfoFileError, entry_path, entry_poses, load_infos
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


def _camera_points(record: Dict[str, Any], entry: Dict[str, Any], xyz: np.ndarray, K: np.ndarray,
                   h: int, w: int) -> Tuple[np.ndarray, Tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Sensor-frame xyz: N x 3 -> (camera-frame xyz: N x 3, in-canvas (u, v, depth_m))."""
    camera2ego, ego2global_cam = entry_poses(record["cam_infos"][CAMERA])
    sensor2ego, ego2global = entry_poses(entry)
    xyz_cam = geometry.transform_points(
        geometry.sensor_to_camera(sensor2ego, ego2global, ego2global_cam, camera2ego), xyz)
    u, v, depth = geometry.project_points(K, xyz_cam)
    keep = geometry.in_canvas(u, v, h, w)
    return xyz_cam, (u[keep], v[keep], depth[keep])


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
        self.bad_records = check_records(self.infos, infos_path,
                                         keep_bad=mode == "train" and cfg.data.skip_bad_samples)
        if self.bad_records:
            log.warning("%d of %d records of info file %s are invalid and will be skipped (first: %s)",
                        len(self.bad_records), len(self.infos), infos_path,
                        next(iter(self.bad_records.values())))
        self.epoch = 0
        self.num_skipped = 0       # bad samples replaced by a neighbour (in this process)
        reuse_freed_buffers()

    def __len__(self) -> int:
        return len(self.infos)

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
        return sample

    def load_frame(self, index: int) -> Frame:
        """Read and project one sample's files (no randomness); in train mode with the mask loss
        also its semantic mask."""
        if index in self.bad_records:
            raise BadRecordError(self.bad_records[index], self.infos_path)
        record = self.infos[index]
        cam = record["cam_infos"][CAMERA]
        image_path = resolve_data_path(self.root, entry_path(cam))
        img = read_image_bgr(image_path)
        h, w = img.shape[:2]
        K = np.asarray(cam["calibrated_sensor"]["camera_intrinsic"], dtype=np.float64)
        check_image_size(img, cam, K, image_path)
        lidar = record["lidar_infos"][LIDAR]
        _, lidar_uvz = _camera_points(
            record, lidar, read_lidar_points(resolve_data_path(self.root, entry_path(lidar))), K, h, w)
        radar_xyz, radar_uvz = radar_sweeps.camera_radar(record, self.root, self.cfg.data.radar_sweeps, K, h, w)
        name = Path(entry_path(cam)).stem
        dense_path = self.root / "depth_dense" / f"{name}.png"
        dense = read_depth_png(dense_path, "regenerate the world with tools/make_synthetic.py") if self.mode == "eval" and dense_path.is_file() else None
        train = self.mode == "train"
        seg_ids = self._seg_ids(name, img.shape[:2]) if train and self.cfg.data.mask_supervision else None
        label_m = read_label(self.root, self.cfg.data, name) if train else None     # None: LiDAR label
        return Frame(name, img, K, lidar_uvz, radar_uvz, radar_xyz.astype(np.float32), dense, seg_ids,
                     label_m)

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
