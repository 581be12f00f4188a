"""Point transforms, projection and rasterisation: against the devkit on the real slice, and on
hand-computed inputs."""
import numpy as np
import pytest
import torch
from pyquaternion import Quaternion

from datasets import geometry
from datasets.infos import create_infos, entry_path, entry_poses, split_scenes
from datasets.io import read_lidar_points, read_radar_points, resolve_data_path


@pytest.fixture(scope="module")
def nusc(real_root):
    from nuscenes.nuscenes import NuScenes
    return NuScenes("v1.0-trainval", str(real_root), verbose=False)


@pytest.fixture(scope="module")
def records(nusc):
    return create_infos(nusc, split_scenes("v1.0-trainval"), progress=False)["val"]


def camera_points(record, entry, reader, root):
    """Camera-frame xyz of an entry's points and their (u, v, depth), all points."""
    cam = record["cam_infos"]["CAM_FRONT"]
    camera2ego, ego2global_cam = entry_poses(cam)
    sensor2ego, ego2global = entry_poses(entry)
    T = geometry.sensor_to_camera(sensor2ego, ego2global, ego2global_cam, camera2ego)
    xyz = geometry.transform_points(T, reader(resolve_data_path(root, entry_path(entry))))
    K = np.array(cam["calibrated_sensor"]["camera_intrinsic"])
    return xyz, geometry.project_points(K, xyz)


@pytest.mark.parametrize("sensor", ["LIDAR_TOP", "RADAR_FRONT"])
def test_projection_matches_devkit(nusc, records, real_root, sensor, monkeypatch):
    """Same points as NuScenesExplorer.map_pointcloud_to_image after its cuts (depth > 1 m, 1 px
    margin), same order, pixels within 1e-3 px, same depths. The devkit keeps LiDAR points in
    float32 through global coordinates (~1e-4 m rounding, up to 0.05 px); its points are promoted
    to float64 here so that the comparison tests the geometry chain itself. Radar: both sides use
    the devkit's default radar filters."""
    from nuscenes.nuscenes import NuScenesExplorer
    from nuscenes.utils.data_classes import LidarPointCloud
    stock = LidarPointCloud.from_file.__func__
    monkeypatch.setattr(LidarPointCloud, "from_file", classmethod(
        lambda cls, path: cls(stock(cls, path).points.astype(np.float64))))
    explorer = NuScenesExplorer(nusc)
    for record in records[::10]:
        cam = record["cam_infos"]["CAM_FRONT"]
        if sensor == "LIDAR_TOP":
            entry, reader = record["lidar_infos"][sensor], read_lidar_points
        else:
            entry, reader = record["radar_infos"][sensor][0], read_radar_points
        _, (u, v, depth) = camera_points(record, entry, reader, real_root)
        h, w = cam["height"], cam["width"]
        ours = geometry.in_canvas(u, v, h, w)
        devkit_cut = ours & (depth > 1.0) & (u > 1) & (u < w - 1) & (v > 1) & (v < h - 1)
        points, depths, _ = explorer.map_pointcloud_to_image(entry["sample_data_token"], cam["sample_data_token"])
        assert points.shape[1] == devkit_cut.sum() > 0
        np.testing.assert_allclose(points[0], u[devkit_cut], atol=1e-3)
        np.testing.assert_allclose(points[1], v[devkit_cut], atol=1e-3)
        np.testing.assert_allclose(depths, depth[devkit_cut], atol=1e-6)


def test_points_per_frame(records, real_root):
    """About 50 radar points and more than 2000 LiDAR pixels per CAM_FRONT frame."""
    radar_counts, lidar_pixels = [], []
    for record in records:
        cam = record["cam_infos"]["CAM_FRONT"]
        h, w = cam["height"], cam["width"]
        _, (u, v, d) = camera_points(record, record["radar_infos"]["RADAR_FRONT"][0], read_radar_points, real_root)
        radar_counts.append((geometry.in_canvas(u, v, h, w) & (d > 0)).sum())
        _, (u, v, d) = camera_points(record, record["lidar_infos"]["LIDAR_TOP"], read_lidar_points, real_root)
        keep = geometry.in_canvas(u, v, h, w) & (d > 0)
        lidar_pixels.append(np.count_nonzero(geometry.rasterize_depth(u[keep], v[keep], d[keep], h, w)))
    assert 35 <= np.mean(radar_counts) <= 70
    assert min(lidar_pixels) > 2000


def test_radar_reader_matches_devkit(records, real_root):
    from nuscenes.utils.data_classes import RadarPointCloud
    for record in records[::4]:
        path = resolve_data_path(real_root, entry_path(record["radar_infos"]["RADAR_FRONT"][0]))
        expected = RadarPointCloud.from_file(str(path)).points[:3].T
        np.testing.assert_array_equal(read_radar_points(path).astype(np.float64), expected)


def test_chain_by_hand():
    """Sensor 1 m above ego; ego at sensor time 10 m along global x; ego at camera time 8 m along
    x, turned 90 deg left; camera = ego. A sensor point (1, 0, 0): global (11, 0, 1); in the later
    ego frame (3, 0, 1) rotated by -90 deg about z: (0, -3, 1)."""
    sensor2ego = geometry.pose_matrix([0, 0, 1], [1, 0, 0, 0])
    ego2global_s = geometry.pose_matrix([10, 0, 0], [1, 0, 0, 0])
    ego2global_c = geometry.pose_matrix([8, 0, 0], Quaternion(axis=[0, 0, 1], degrees=90).elements)
    T = geometry.sensor_to_camera(sensor2ego, ego2global_s, ego2global_c, np.eye(4))
    np.testing.assert_allclose(geometry.transform_points(T, [[1.0, 0.0, 0.0]]), [[0, -3, 1]], atol=1e-12)
    np.testing.assert_allclose(geometry.rigid_inverse(T) @ T, np.eye(4), atol=1e-12)


def test_projection_and_canvas_by_hand():
    K = np.array([[100.0, 0, 50], [0, 100, 20], [0, 0, 1]])
    xyz = np.array([[1.0, 0.5, 2.0], [0, 0, -1], [-1.0, 0, 2.0], [0.999, 0.0, 2.0]])
    u, v, depth = geometry.project_points(K, xyz)
    np.testing.assert_allclose(u[[0, 2]], [100, 0])
    np.testing.assert_allclose(v[0], 45)
    # behind the camera: (0, 0, -1) projects to (50, 20), the principal point, and is in the canvas
    np.testing.assert_allclose([u[1], v[1], depth[1]], [50, 20, -1])
    # w = 100: u = 100 is outside, u = 0 inside; depth is not looked at (released)
    assert geometry.in_canvas(u, v, 40, 100).tolist() == [False, True, True, True]
    assert geometry.in_canvas(u, v, 46, 101).tolist() == [True, True, True, True]


def test_behind_camera_point_overwrites_then_drops_out():
    """Released evaluation: a later behind-camera point overwrites a valid one at its pixel, and
    the pixel then fails 0 < gt <= R."""
    from utils.metrics import per_image_errors
    K = np.array([[100.0, 0, 50], [0, 100, 20], [0, 0, 1]])
    xyz = np.array([[0.0, 0.0, 10.0], [0.1, 0.0, 10.0], [0.0, 0.0, -3.0]])   # last: behind
    u, v, depth = geometry.project_points(K, xyz)
    keep = geometry.in_canvas(u, v, 40, 100)
    gt = geometry.rasterize_depth(u[keep], v[keep], depth[keep], 40, 100)
    assert gt[20, 50] == -3.0 and gt[20, 51] == 10.0
    pred = torch.full((1, 1, 40, 100), 12.0)
    errors = per_image_errors(pred, torch.from_numpy(gt)[None, None], 80)
    assert errors["mae_m"].item() == pytest.approx(2.0)      # only the pixel holding 10 m counts


def test_rasterize_file_order_and_truncation():
    u = np.array([3.9, 3.2, 0.0, 7.99, 8.0, -0.5])
    v = np.array([1.5, 1.0, 0.0, 2.99, 0.0, 1.0])
    depth = np.array([5.0, 6.0, 1.0, 2.0, 9.0, 9.0])
    out = geometry.rasterize_depth(u, v, depth, 3, 8)
    expected = np.zeros((3, 8), np.float32)
    expected[1, 3] = 6.0            # (3.9, 1.5) then (3.2, 1.0): same pixel, the later wins
    expected[0, 0] = 1.0
    expected[2, 7] = 2.0            # u = 8.0 and u = -0.5 are outside an 8-wide canvas
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.float32


def test_radar_column_map():
    out = geometry.radar_column_map(np.array([2.5, 5.1, 2.0, 9.0]), np.array([10.0, 20.0, 30.0, 40.0]), 4, 6)
    assert out.shape == (4, 6) and out.dtype == np.float32
    expected_row = np.array([0, 0, 30, 0, 0, 20], np.float32)   # u = 9 is off the canvas
    np.testing.assert_array_equal(out, np.tile(expected_row, (4, 1)))


def test_radar_behind_camera_writes_its_column():
    """Released canvas test on (u, v) alone: a radar point behind the camera whose projection
    lands in the image writes its negative depth down its column (both modes)."""
    from datasets.sample import eval_sample
    from utils.config import Config
    from datasets.frames import camera_frame
    K = np.array([[100.0, 0, 50], [0, 100, 20], [0, 0, 1]])
    xyz = np.array([[0.0, 0.0, 10.0], [-0.3, 0.0, -3.0]])          # the second: u = 60, z = -3
    frame = camera_frame("t", np.zeros((40, 100, 3), np.uint8), K, xyz)
    sample = eval_sample(frame, Config().data, np.random.default_rng(0))
    radar = sample["radar_map"][0]
    assert (radar[:, 50] == 10).all() and (radar[:, 60] == -3).all()
    assert np.count_nonzero(radar[0]) == 2 and sample["radar_count"] == 2
