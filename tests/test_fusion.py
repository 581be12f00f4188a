"""Surround key frames (datasets/fusion.py, tools/predict.py with several cameras): back-projection
through pixel centres round-trips the project's projection within half a pixel; the fused cloud of
the LiDAR ground truth reproduces the LiDAR key sweep in the key frame's ego frame on the real
slice (distances and pixel counts against the devkit's own transforms); the files read back with
the devkit and NumPy; the picture."""
from pathlib import Path

import cv2
import numpy as np
import pytest
from nuscenes.utils.data_classes import LidarPointCloud
from nuscenes.utils.geometry_utils import transform_matrix
from pyquaternion import Quaternion
from scipy.spatial import cKDTree

from datasets import geometry
from datasets.build import build_dataset
from datasets.fusion import (CAMERAS, KeyframeError, backproject, fuse, keyframe_samples,
                             lidar_ego_points, write_npz, write_pcd_bin)
from datasets.infos import entry_path
from tools import predict
from utils.config import load_config
from utils.visualize import surround_panel

K_TEST = np.array([[700.0, 0.0, 410.3], [0.0, 690.0, 250.7], [0.0, 0.0, 1.0]])
H, W = 480, 800
EPS_M = 1e-4        # float32 storage of xyz, depth, K and cam2ego


def rigid(seed: int) -> np.ndarray:
    """A random 4 x 4 camera -> ego transform."""
    rng = np.random.default_rng(seed)
    q = rng.normal(size=4)
    return geometry.pose_matrix(rng.uniform(-2, 2, 3), q / np.linalg.norm(q))


def half_pixel_m(K: np.ndarray, depth_m: np.ndarray) -> np.ndarray:
    """N: the farthest a point at depth_m can lie from the ray through its pixel's centre: the
    largest |K^-1 (du, dv, 0)| over the pixel's corners du, dv = +-0.5, times the depth."""
    corners = np.array([[du, dv, 0.0] for du in (-0.5, 0.5) for dv in (-0.5, 0.5)])
    return np.linalg.norm(corners @ np.linalg.inv(K).T, axis=1).max() * np.asarray(depth_m, np.float64)


def pixel_keys(u, v, depth_m, h, w) -> np.ndarray:
    """Sorted distinct row * w + col of the points with depth > 0 inside the h x w canvas."""
    keep = (depth_m > 0) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    return np.unique(np.floor(v[keep]).astype(np.int64) * w + np.floor(u[keep]).astype(np.int64))


def test_backproject_round_trips_projection_within_half_a_pixel():
    rng = np.random.default_rng(0)
    xyz_cam = np.stack([rng.uniform(-30, 30, 20000), rng.uniform(-5, 5, 20000),
                        rng.uniform(-10, 80, 20000)], 1)        # some behind the camera
    cam2ego = rigid(1)
    u, v, depth = geometry.project_points(K_TEST, xyz_cam)
    ahead = depth > 0
    depth_map = geometry.rasterize_depth(u[ahead], v[ahead], depth[ahead], H, W)
    xyz_ego, pixel_uv, depth_m = backproject(depth_map, K_TEST, cam2ego)
    truth = geometry.transform_points(cam2ego, xyz_cam[ahead])
    dist_m, _ = cKDTree(truth).query(xyz_ego)
    assert (dist_m <= half_pixel_m(K_TEST, depth_m) + 1e-6).all()
    assert (dist_m / half_pixel_m(K_TEST, depth_m)).max() > 0.5        # the bound is no slack one
    keys = pixel_keys(u, v, depth, H, W)
    assert len(xyz_ego) == len(keys) > 5000
    np.testing.assert_array_equal(np.sort(pixel_uv[:, 1] * W + pixel_uv[:, 0]), keys)
    np.testing.assert_array_equal(depth_m, depth_map[pixel_uv[:, 1], pixel_uv[:, 0]])


def test_backproject_goes_through_pixel_centres():
    """Points at pixel centres (float32-exact depths) come back exactly: no corner convention."""
    rows, cols = np.array([0, 10, 479, 200]), np.array([0, 799, 5, 400])
    depth = np.array([1.0, 12.5, 70.25, 3.0])
    xyz_cam = (np.linalg.inv(K_TEST) @ np.stack([cols + 0.5, rows + 0.5, np.ones(4)])).T * depth[:, None]
    depth_map = np.zeros((H, W), np.float32)
    depth_map[rows, cols] = depth
    xyz_ego, pixel_uv, _ = backproject(depth_map, K_TEST, rigid(2))
    order = np.lexsort((cols, rows))                        # backproject is row-major
    np.testing.assert_array_equal(pixel_uv, np.stack([cols, rows], 1)[order])
    np.testing.assert_allclose(xyz_ego, geometry.transform_points(rigid(2), xyz_cam[order]), atol=1e-9)


def test_backproject_stride_and_missing_depths():
    rng = np.random.default_rng(3)
    depth_map = rng.uniform(1, 50, (7, 9)).astype(np.float32)
    missing = [(1, 2), (3, 3), (0, 0), (6, 6), (3, 6)]
    for (r, c), bad in zip(missing, (0.0, -1.0, np.nan, np.inf, 0.0)):
        depth_map[r, c] = bad
    xyz, pixel_uv, depth_m = backproject(depth_map, K_TEST, np.eye(4))
    assert len(depth_m) == 63 - len(missing) and depth_m.dtype == np.float32
    assert not {tuple(p) for p in pixel_uv[:, ::-1]} & set(missing)
    xyz3, pixel3, depth3 = backproject(depth_map, K_TEST, np.eye(4), stride=3)
    on_grid = (pixel_uv % 3 == 0).all(1)
    np.testing.assert_array_equal(pixel3, pixel_uv[on_grid])           # rows/cols 0, 3, 6 except missing
    assert len(pixel3) == 9 - 4                               # (0, 0), (3, 3), (6, 6), (3, 6) missing
    np.testing.assert_array_equal(xyz3, xyz[on_grid])
    np.testing.assert_array_equal(depth3, depth_m[on_grid])
    with pytest.raises(ValueError, match="stride"):
        backproject(depth_map, K_TEST, np.eye(4), stride=0)


def hand_sample(camera: str, seed: int, keyframe: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"img": rng.integers(0, 256, (3, H, W), dtype=np.uint8), "K": K_TEST.astype(np.float32),
            "cam2ego": rigid(seed).astype(np.float32), "camera": camera,
            "keyframe": np.int64(keyframe), "name": f"{camera}_{seed}"}


def test_fuse_fields_colours_and_camera_indices():
    samples = [hand_sample("CAM_BACK", 4), hand_sample("CAM_FRONT_LEFT", 5)]
    rng = np.random.default_rng(6)
    depths = [np.where(rng.random((H, W)) < 0.01, rng.uniform(1, 60, (H, W)), 0).astype(np.float32)
              for _ in samples]
    cloud = fuse(samples, depths)
    assert len(cloud) == sum(int((d > 0).sum()) for d in depths)
    assert (cloud.xyz_m.dtype, cloud.camera.dtype, cloud.pixel_uv.dtype, cloud.depth_m.dtype,
            cloud.color_rgb.dtype) == (np.float32, np.uint8, np.int32, np.float32, np.uint8)
    for sample, depth in zip(samples, depths):
        mine = cloud.camera == CAMERAS.index(sample["camera"])
        assert mine.sum() == (depth > 0).sum()
        col, row = cloud.pixel_uv[mine].T
        bgr = sample["img"][:, row, col].T
        np.testing.assert_array_equal(cloud.color_rgb[mine], bgr[:, ::-1])
        np.testing.assert_array_equal(cloud.depth_m[mine], depth[row, col])
        xyz, _, _ = backproject(depth, sample["K"], sample["cam2ego"])
        np.testing.assert_array_equal(cloud.xyz_m[mine], xyz.astype(np.float32))
    with pytest.raises(KeyframeError, match="key frames"):
        fuse([samples[0], hand_sample("CAM_BACK", 7, keyframe=3)], depths)
    with pytest.raises(KeyframeError, match="does not match its image"):
        fuse(samples[:1], [depths[0][:-1]])


def test_written_cloud_reads_back(tmp_path):
    samples = [hand_sample("CAM_FRONT", 8), hand_sample("CAM_BACK_RIGHT", 9)]
    depths = [np.full((H, W), 7.5, np.float32), np.full((H, W), 30.0, np.float32)]
    cloud = fuse(samples, depths, stride=5)
    assert len(cloud) == 2 * (H // 5) * (W // 5)
    pcd = write_pcd_bin(tmp_path / "kf.pcd.bin", cloud)
    points = LidarPointCloud.from_file(str(pcd)).points                 # 4 x N: x, y, z, intensity
    np.testing.assert_array_equal(points[:3].T, cloud.xyz_m)
    grey = cloud.color_rgb.astype(np.float64) @ [0.299, 0.587, 0.114]
    np.testing.assert_allclose(points[3], grey, atol=1e-3)
    ring = np.fromfile(pcd, np.float32).reshape(-1, 5)[:, 4]
    np.testing.assert_array_equal(ring, cloud.camera)
    assert set(ring) == {CAMERAS.index("CAM_FRONT"), CAMERAS.index("CAM_BACK_RIGHT")}
    with np.load(write_npz(tmp_path / "kf.npz", cloud), allow_pickle=False) as arrays:
        n = len(cloud)
        expected = {"xyz_m": ((n, 3), np.float32), "camera": ((n,), np.uint8),
                    "pixel_uv": ((n, 2), np.int32), "depth_m": ((n,), np.float32),
                    "color_rgb": ((n, 3), np.uint8)}
        assert sorted(arrays.files) == sorted([*expected, "cameras"])
        for name, (shape, dtype) in expected.items():
            assert arrays[name].shape == shape and arrays[name].dtype == dtype
            np.testing.assert_array_equal(arrays[name], getattr(cloud, name))
        assert tuple(arrays["cameras"]) == CAMERAS
    assert not list(tmp_path.glob(".*.tmp"))                            # atomic writes


def test_surround_panel_layout():
    depths = {"CAM_FRONT": np.full((900, 1600), 20.0, np.float32),
              "CAM_BACK": np.full((900, 1600), 40.0, np.float32)}
    clouds = [("CAM_FRONT", np.array([[10.0, 0.0, 0.0]])), ("CAM_BACK", np.array([[-10.0, 0.0, 0.0]]))]
    lidar = np.array([[0.0, 20.0, 0.0]])                                 # 20 m to the left
    picture = surround_panel(depths, clouds, lidar, tile_width_px=480, range_m=50.0)
    h = picture.shape[0]
    assert picture.shape == (h, 3 * 480 + h, 3) and h > 2 * 270
    bev = picture[:, 3 * 480:]
    px_per_m = h / 100.0
    at = lambda x, y: bev[int(h / 2 - x * px_per_m), int(h / 2 - y * px_per_m)]   # noqa: E731
    assert tuple(at(10.0, 0.0)) == (0, 0, 255) and tuple(at(-10.0, 0.0)) == (0, 200, 0)
    assert tuple(at(0.0, 20.0)) == (255, 255, 255)
    assert (picture[:h // 2, 480 * 2:480 * 3] == 0).mean() > 0.9          # FRONT_RIGHT: not predicted


# ---- the real slice: the LiDAR ground truth as the prediction reproduces the LiDAR --------------
@pytest.fixture(scope="module")
def surround_ds(real_root, real_infos):
    cfg = load_config(None, ["data.cameras=all", "data.radars=all"])
    return build_dataset(cfg, "val", infos=real_infos, data_root=real_root)


def devkit_lidar_ego(record: dict, root) -> np.ndarray:
    """N x 3: the LiDAR key sweep through the devkit's reader and its calibrated-sensor pose."""
    entry = record["lidar_infos"]["LIDAR_TOP"]
    cloud = LidarPointCloud.from_file(str(root / entry_path(entry)))
    cs = entry["calibrated_sensor"]
    cloud.rotate(Quaternion(cs["rotation"]).rotation_matrix)
    cloud.translate(np.array(cs["translation"]))
    return cloud.points[:3].T


def devkit_ego_to_camera(record: dict, camera: str) -> np.ndarray:
    """4 x 4: key-frame ego -> global -> ego at the camera's time -> camera (devkit matrices)."""
    key_pose = record["lidar_infos"]["LIDAR_TOP"]["ego_pose"]
    cam = record["cam_infos"][camera]
    def T(pose: dict, inverse: bool) -> np.ndarray:
        return transform_matrix(pose["translation"], Quaternion(pose["rotation"]), inverse)
    return T(cam["calibrated_sensor"], True) @ T(cam["ego_pose"], True) @ T(key_pose, False)


@pytest.mark.parametrize("record", [0, 23])
def test_fused_lidar_ground_truth_reproduces_lidar(surround_ds, real_root, record):
    samples = keyframe_samples(surround_ds, record)
    assert [s["camera"] for s in samples] == list(CAMERAS)
    cloud = fuse(samples, [s["lidar_map"][0] for s in samples])
    info = surround_ds.infos[record]
    lidar = devkit_lidar_ego(info, real_root)
    np.testing.assert_allclose(lidar_ego_points(info, real_root), lidar, atol=1e-5)
    dist_m, _ = cKDTree(lidar).query(cloud.xyz_m.astype(np.float64))
    for sample in samples:
        camera = CAMERAS.index(sample["camera"])
        mine = cloud.camera == camera
        K = np.asarray(info["cam_infos"][sample["camera"]]["calibrated_sensor"]["camera_intrinsic"])
        assert (dist_m[mine] <= half_pixel_m(K, cloud.depth_m[mine]) + EPS_M).all(), sample["camera"]
        u, v, depth = geometry.project_points(
            K, geometry.transform_points(devkit_ego_to_camera(info, sample["camera"]), lidar))
        assert mine.sum() == len(pixel_keys(u, v, depth, 900, 1600)) > 1000, sample["camera"]


def test_keyframe_record_out_of_range(surround_ds):
    with pytest.raises(KeyframeError, match="out of range.*40 records"):
        keyframe_samples(surround_ds, 40)


# ---- tools/predict.py: a surround key frame as one batch ----------------------------------------
def test_predict_keyframe_writes_maps_cloud_and_picture(ckpt, real_root, real_infos, real_records,
                                                        tmp_path, capsys):
    """Two cameras keep the test short; every camera of data.cameras goes the same way."""
    out = tmp_path / "kf"
    predict.main(["-m", str(ckpt), "--data-root", str(real_root), "--infos", str(real_infos),
                  "--index", "1", "data.cameras=[CAM_BACK,CAM_FRONT]", "data.radars=all",
                  "--cloud-stride", "8", "--out", str(out)])
    record = real_records[1]
    token = record["sample_token"]
    names = {c: Path(entry_path(record["cam_infos"][c])).stem for c in ("CAM_BACK", "CAM_FRONT")}
    depths = {c: np.load(out / f"{n}.npy") for c, n in names.items()}
    for camera, name in names.items():
        assert depths[camera].shape == (900, 1600)
        assert cv2.imread(str(out / f"{name}.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    with np.load(out / f"{token}.npz", allow_pickle=False) as arrays:
        n = len(arrays["depth_m"])
        assert n == sum(int((d[::8, ::8] > 0).sum()) for d in depths.values()) > 0
        for camera in names:
            mine = arrays["camera"] == CAMERAS.index(camera)
            col, row = arrays["pixel_uv"][mine].T
            assert (col % 8 == 0).all() and (row % 8 == 0).all()
            np.testing.assert_array_equal(arrays["depth_m"][mine], depths[camera][row, col])
    points = LidarPointCloud.from_file(str(out / f"{token}.pcd.bin")).points
    assert points.shape == (4, n)
    picture = cv2.imread(str(out / f"{token}_surround.png"))
    h = picture.shape[0]
    assert picture.shape == (h, 3 * 480 + h, 3) and h > 2 * 270
    printed = capsys.readouterr().out
    assert f"key frame {token}: 2 cameras fused into {n} points" in printed


def test_predict_keyframe_needs_an_info_file(ckpt, tmp_path):
    with pytest.raises(SystemExit, match="surround key frame needs --infos"):
        predict.main(["-m", str(ckpt), "--sample-token", "abc", "data.cameras=all",
                      "--out", str(tmp_path)])
