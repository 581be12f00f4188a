"""The released code's way of preparing a training / eval sample, re-implemented as the yardstick of
`tools/benchmark.py data --reference` (never used for training): CAM_FRONT with RADAR_FRONT, the
released pair only (benchmark_data refuses other data.cameras / data.radars).

What makes it slow is kept on purpose: the devkit's point-cloud classes transform the points step
by step, radar files are parsed point by point, the occlusion filter asks a KD-tree once per point
in a Python loop, and the disruption runs on PIL images (ImageEnhance, bicubic / nearest resize,
a 3x3 Gaussian kernel) with the semantic mask resized by torch's legacy nearest rule, as released.
Random draws follow `datasets.augment.sample_disruption`, so both pipelines see the same flips,
factors and crops; `disrupt` is also the yardstick of the augmentation's fidelity tests.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import numpy as np
import torch
import torch.nn.functional as F
from nuscenes.utils.data_classes import LidarPointCloud, RadarPointCloud
from nuscenes.utils.geometry_utils import view_points
from PIL import Image, ImageEnhance
from pyquaternion import Quaternion
from scipy.spatial import cKDTree

from datasets import augment
from datasets.infos import entry_path
from datasets.io import resolve_data_path
from datasets.infos import CAMERA, LIDAR, RADAR
from datasets.sample import SEG_CLASSES
from datasets.occlusion import scaled_radius_px


def _to_camera(points, entry: Dict[str, Any], cam: Dict[str, Any]) -> None:
    """In place, the devkit's four steps: sensor -> ego -> global -> ego (camera time) -> camera."""
    if "calibrated_sensor" in entry:
        cs = entry["calibrated_sensor"]
        s2e_t, s2e_r, e2g_t, e2g_r = (cs["translation"], cs["rotation"],
                                      entry["ego_pose"]["translation"], entry["ego_pose"]["rotation"])
    else:
        s2e_t, s2e_r = entry["sensor2ego_translation"], entry["sensor2ego_rotation"]
        e2g_t, e2g_r = entry["ego2global_translation"], entry["ego2global_rotation"]
    points.rotate(Quaternion(s2e_r).rotation_matrix)
    points.translate(np.array(s2e_t))
    points.rotate(Quaternion(e2g_r).rotation_matrix)
    points.translate(np.array(e2g_t))
    points.translate(-np.array(cam["ego_pose"]["translation"]))
    points.rotate(Quaternion(cam["ego_pose"]["rotation"]).rotation_matrix.T)
    points.translate(-np.array(cam["calibrated_sensor"]["translation"]))
    points.rotate(Quaternion(cam["calibrated_sensor"]["rotation"]).rotation_matrix.T)


def occlusion_per_point(u: np.ndarray, v: np.ndarray, z: np.ndarray, radius_px: float, rel: float) -> np.ndarray:
    tree = cKDTree(np.stack([u, v], axis=1))
    keep = np.ones(len(z), dtype=bool)
    for i in range(len(z)):
        nearest = z[tree.query_ball_point([u[i], v[i]], radius_px)].min()
        keep[i] = (z[i] - nearest) / z[i] <= rel
    return keep


class ReferencePipeline:
    """`sample(index)` returns img, radar_map, lidar_map (and seg_target) like RadarCameraDataset."""

    def __init__(self, cfg, infos, root: str | Path, mode: str, seg_dir: Path):
        self.cfg, self.infos, self.root, self.mode, self.seg_dir = cfg, infos, Path(root), mode, seg_dir

    def sample(self, index: int, rng: np.random.Generator) -> Dict[str, np.ndarray]:
        record = self.infos[index]
        cam = record["cam_infos"][CAMERA]
        img = Image.open(resolve_data_path(self.root, entry_path(cam)))
        img.load()
        w, h = img.size
        K = np.array(cam["calibrated_sensor"]["camera_intrinsic"])
        lidar = LidarPointCloud.from_file(str(resolve_data_path(self.root, entry_path(record["lidar_infos"][LIDAR]))))
        _to_camera(lidar, record["lidar_infos"][LIDAR], cam)
        radar_entry = record["radar_infos"][RADAR][0]
        radar = RadarPointCloud.from_file(str(resolve_data_path(self.root, entry_path(radar_entry))))
        _to_camera(radar, radar_entry, cam)
        lu, lv, lz = self._in_canvas(lidar.points[:3], K, h, w)
        if self.mode == "train":
            near = (lz > 0) & (lz < self.cfg.data.max_depth_m)
            lu, lv, lz = lu[near], lv[near], lz[near]
            keep = occlusion_per_point(lu, lv, lz, scaled_radius_px(self.cfg.data.occlusion_radius_px, w),
                                   self.cfg.data.occlusion_rel_threshold)
            lu, lv, lz = lu[keep], lv[keep], lz[keep]
        lidar_map = np.zeros((h, w), np.float32)
        lidar_map[lv.astype(int), lu.astype(int)] = lz
        radar_map = np.zeros((h, w), np.float32)
        for u, z in zip(*self._in_canvas(radar.points[:3], K, h, w)[::2]):
            radar_map[:, int(u)] = z
        out = {"img": img.convert("RGB"), "lidar_map": Image.fromarray(lidar_map),
               "radar_map": Image.fromarray(radar_map)}
        if self.mode == "train":
            if self.cfg.data.mask_supervision:
                ids = np.array(Image.open(self.seg_dir / f"{Path(entry_path(cam)).stem}.png"))
                out["seg_target"] = Image.fromarray(np.isin(ids, SEG_CLASSES).astype(np.uint8))
            out = disrupt(out, augment.sample_disruption(rng, "released", (h, w),
                                                         (self.cfg.data.height, self.cfg.data.width)))
        arrays = {k: np.array(v, dtype=np.float32) for k, v in out.items()}
        arrays["img"] = arrays["img"][:, :, ::-1].transpose(2, 0, 1)
        return {k: (v if k == "img" else v[None]) for k, v in arrays.items()}

    @staticmethod
    def _in_canvas(xyz: np.ndarray, K: np.ndarray, h: int, w: int):
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = view_points(xyz, K, normalize=True)
            keep = (uv[0] >= 0) & (uv[0] < w) & (uv[1] >= 0) & (uv[1] < h)     # depth not looked at
        z = xyz[2]
        return uv[0][keep], uv[1][keep], z[keep]



def gaussian_blur_3x3(img: Image.Image, sigma_px: float = augment.BLUR_SIGMA_PX) -> Image.Image:
    """3x3 Gaussian blur as torchvision's GaussianBlur computes it on a uint8 image: normalised
    taps at offsets -1, 0, 1, reflect padding, float convolution, rounded."""
    taps = torch.exp(-0.5 * (torch.arange(-1.0, 2.0) / sigma_px) ** 2)
    kernel = torch.outer(taps / taps.sum(), taps / taps.sum()).expand(3, 1, 3, 3)
    x = torch.from_numpy(np.array(img, dtype=np.float32)).permute(2, 0, 1)[None]
    y = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), kernel, groups=3)
    return Image.fromarray(y.round().clamp(0, 255)[0].permute(1, 2, 0).numpy().astype(np.uint8))


def disrupt(maps: Dict[str, Image.Image], d: augment.Disruption) -> Dict[str, Image.Image]:
    """The released disruption on PIL images: img (RGB), lidar_map / radar_map (mode F) and
    optionally seg_target (mode L, resized by torch's legacy nearest rule as released)."""
    if d.flip:
        maps = {k: m.transpose(Image.FLIP_LEFT_RIGHT) for k, m in maps.items()}
    img = ImageEnhance.Brightness(maps["img"]).enhance(d.brightness)
    img = ImageEnhance.Contrast(img).enhance(d.contrast)
    maps["img"] = ImageEnhance.Color(img).enhance(d.saturation)
    (res_h, res_w), (y0, x0), (out_h, out_w) = d.resized_hw, d.crop_yx, d.out_hw
    box = (x0, y0, x0 + out_w, y0 + out_h)
    out = {}
    for k, m in maps.items():
        if k == "seg_target":
            t = torch.from_numpy(np.array(m, dtype=np.float32))[None, None]
            m = Image.fromarray(F.interpolate(t, size=(res_h, res_w), mode="nearest")[0, 0].numpy().astype(np.uint8))
        else:
            m = m.resize((res_w, res_h), Image.BICUBIC if k == "img" else Image.NEAREST)
        out[k] = m.crop(box)
    out["img"] = gaussian_blur_3x3(out["img"])
    return out
