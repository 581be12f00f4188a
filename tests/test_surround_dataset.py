"""Surround view in the dataset (issue 21): data.cameras / data.radars, one sample per (key frame,
camera), each radar through its own pose, points behind the camera dropped outside the released
pair, pairs whose image is missing left out and listed. The real slice; records edited in tmp_path."""
import copy

import numpy as np
import pytest

from datasets import geometry
from datasets.infos import CAMERAS, RADARS, entry_path, entry_poses, save_infos
from datasets.nuscenes_dataset import RadarCameraDataset
from datasets.radar_sweeps import camera_radar
from utils.config import ConfigError, load_config
from utils.engine.tables import surround_markdown


def surround(root, *overrides):
    return load_config(None, ["data.cameras=all", "data.radars=all", f"data.root={root}", *overrides])


def test_channel_keys_expand_and_refuse():
    cfg = load_config(None, ["data.cameras=all", "data.radars=RADAR_BACK_LEFT"])
    assert cfg.data.cameras == list(CAMERAS) and len(CAMERAS) == 6 and cfg.data.cameras[0] == "CAM_FRONT"
    assert cfg.data.radars == ["RADAR_BACK_LEFT"] and len(RADARS) == 5
    assert load_config(None, []).data.cameras == ["CAM_FRONT"]
    for bad in ("data.cameras=CAM_TOP", "data.radars=[]", "data.cameras=[CAM_BACK, CAM_BACK]",
                "data.radars=[RADAR_FRONT, CAM_FRONT]"):
        with pytest.raises(ConfigError, match="data.(cameras|radars)"):
            load_config(None, [bad])


def test_one_sample_per_keyframe_and_camera(real_infos, real_root, real_records):
    ds = RadarCameraDataset(surround(real_root), real_infos, "eval", data_root=real_root)
    assert len(ds) == 6 * len(real_records) and not ds.dropped_pairs
    assert ds.pairs[:7] == [(0, camera) for camera in CAMERAS] + [(1, "CAM_FRONT")]
    index = ds.pairs.index((3, "CAM_BACK"))
    sample = ds[index]
    cam = real_records[3]["cam_infos"]["CAM_BACK"]
    assert sample["camera"] == "CAM_BACK" and sample["keyframe"] == 3 and sample["index"] == index
    assert sample["name"] == entry_path(cam).split("/")[-1][:-4] and "__CAM_BACK__" in sample["name"]
    np.testing.assert_array_equal(sample["K"], np.float32(cam["calibrated_sensor"]["camera_intrinsic"]))
    assert sample["K"][0, 0] < 900                     # CAM_BACK's wide lens
    # cam2ego: the camera's optical axis points backwards in the key frame's ego frame, and its
    # origin is the mounting point moved by the ego motion between the two timestamps
    T = sample["cam2ego"].astype(np.float64)
    assert T[:3, 2] @ np.array([-1.0, 0, 0]) > 0.99
    mount = np.asarray(cam["calibrated_sensor"]["translation"])
    _, ego_key = entry_poses(real_records[3]["lidar_infos"]["LIDAR_TOP"])
    _, ego_cam = entry_poses(cam)
    moved = np.linalg.norm(ego_cam[:3, 3] - ego_key[:3, 3])
    assert np.linalg.norm(T[:3, 3] - mount) <= moved + 1e-3 and moved < 1.0


def test_lidar_through_cam2ego_lands_on_its_pixel(real_infos, real_root):
    """A LiDAR pixel of the eval ground truth, back-projected with K and cam2ego, is a LiDAR point of
    the key frame's ego frame (to the pixel quantisation)."""
    from datasets.io import read_lidar_points
    ds = RadarCameraDataset(surround(real_root), real_infos, "eval", data_root=real_root)
    sample = ds[ds.pairs.index((7, "CAM_BACK_LEFT"))]
    rows, cols = np.nonzero(sample["lidar_map"][0])
    z = sample["lidar_map"][0, rows, cols].astype(np.float64)
    K = sample["K"].astype(np.float64)
    xyz_cam = np.stack([(cols + 0.5 - K[0, 2]) / K[0, 0] * z, (rows + 0.5 - K[1, 2]) / K[1, 1] * z, z], 1)
    xyz_ego = geometry.transform_points(sample["cam2ego"].astype(np.float64), xyz_cam)
    record = ds.infos[7]
    lidar = record["lidar_infos"]["LIDAR_TOP"]
    lidar2ego, _ = entry_poses(lidar)
    points = geometry.transform_points(lidar2ego, read_lidar_points(real_root / entry_path(lidar)))
    from scipy.spatial import cKDTree
    dist, _ = cKDTree(points).query(xyz_ego)
    assert len(z) > 2000 and np.all(dist <= z / K[0, 0] + 1e-3)


def test_behind_camera_points_dropped_outside_the_released_pair(real_infos, real_root, real_records):
    """With all five radars, points behind CAM_FRONT would be mirrored into the image with negative
    depth; the surround samples hold none, in the map, the point features and the LiDAR truth."""
    record = real_records[0]
    cam = record["cam_infos"]["CAM_FRONT"]
    K = np.asarray(cam["calibrated_sensor"]["camera_intrinsic"])
    xyz, (_, _, depth) = camera_radar(record, real_root, 1, K, 900, 1600, "CAM_FRONT", RADARS)
    assert (depth <= 0).sum() > 20 and (xyz[:, 2] <= 0).sum() > 100      # the trap, unfiltered
    ds = RadarCameraDataset(surround(real_root), real_infos, "eval", data_root=real_root)
    for index in range(0, len(ds), 5):
        frame = ds.load_frame(index)
        assert (frame.radar_uvz[2] > 0).all() and (frame.radar_xyz[:, 2] > 0).all()
        assert (frame.lidar_uvz[2] > 0).all()
    front = ds[0]
    assert front["radar_count"] == (xyz[:, 2] > 0).sum() and (front["radar_map"] >= 0).all()
    assert front["radar_count"] <= ds.cfg.data.max_radar_points      # all ahead of CAM_FRONT fit


def test_missing_side_image_drops_that_pair_only(real_root, real_records, tmp_path, caplog):
    records = copy.deepcopy(real_records[:3])
    records[1]["cam_infos"]["CAM_BACK"]["filename"] = "samples/CAM_BACK/not_there.jpg"
    del records[2]["cam_infos"]["CAM_FRONT_LEFT"]
    save_infos(records, tmp_path / "infos.pkl")
    ds = RadarCameraDataset(surround(real_root), tmp_path / "infos.pkl", "eval", data_root=real_root)
    assert len(ds) == 16 and (1, "CAM_BACK") not in ds.pairs and (2, "CAM_FRONT_LEFT") not in ds.pairs
    assert [(d["record"], d["camera"]) for d in ds.dropped_pairs] == [(1, "CAM_BACK"), (2, "CAM_FRONT_LEFT")]
    assert "not_there.jpg" in ds.dropped_pairs[0]["reason"] and "2 of 18" in caplog.text
    assert ds[len(ds) - 1]["camera"] == "CAM_BACK_LEFT"
    # the released pair does not look at the side cameras at all
    released = RadarCameraDataset(load_config(None, [f"data.root={real_root}"]), tmp_path / "infos.pkl",
                                  "eval", data_root=real_root)
    assert len(released) == 3 and released.pairs == [(0, "CAM_FRONT"), (1, "CAM_FRONT"), (2, "CAM_FRONT")]


def test_bad_side_record_is_named(real_root, real_records, tmp_path):
    """The configured side cameras' records are validated like CAM_FRONT's."""
    from datasets.infos import InfoFileError
    records = copy.deepcopy(real_records[:2])
    records[1]["cam_infos"]["CAM_BACK_RIGHT"]["ego_pose"]["rotation"] = [0, 0, 0, 0]
    save_infos(records, tmp_path / "infos.pkl")
    with pytest.raises(InfoFileError, match=r"record 1 .*cam_infos.CAM_BACK_RIGHT.ego_pose.rotation"):
        RadarCameraDataset(surround(real_root), tmp_path / "infos.pkl", "eval", data_root=real_root)
    RadarCameraDataset(load_config(None, [f"data.root={real_root}"]), tmp_path / "infos.pkl", "eval",
                       data_root=real_root)                               # not read: not checked


def test_surround_table_means_and_gap():
    def summary(front, back):
        return {"mae_mm": {"80": (front + back) / 2},
                "per_camera": {"CAM_FRONT": {"mae_mm": {"80": front}}, "CAM_BACK": {"mae_mm": {"80": back}}}}
    arms = [{"name": "front_only", "runs": [summary(1000, 3000), summary(1100, 3200)]},
            {"name": "all_cameras", "runs": [summary(1050, 2000), summary(1150, 2100)]}]
    text = surround_markdown(arms)
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| CAM")
            or line.startswith("| all")}
    assert "1050 ± 71" in rows["CAM_FRONT"] and "1100 ± 71" in rows["CAM_FRONT"]
    assert "3100 ± 141" in rows["CAM_BACK"] and "2050 ± 71" in rows["CAM_BACK"]
    gap = rows["CAM_BACK"].rstrip(" |").split(" | ")[-1]
    assert gap.startswith("-1050 ± ") and gap.endswith("*")      # beyond seed noise
    assert not rows["CAM_FRONT"].rstrip(" |").endswith("*")       # +50 within noise
