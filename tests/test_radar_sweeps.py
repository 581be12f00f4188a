"""Multi-sweep radar input (data.radar_sweeps, datasets/radar_sweeps.py) on the tiny world."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from datasets import geometry
from datasets.infos import CAMERA, RADAR, entry_path, entry_poses, infos_filename, load_infos, save_infos
from datasets.io import read_radar_points, resolve_data_path
from datasets.nuscenes_dataset import RadarCameraDataset
from datasets.radar_sweeps import camera_radar
from datasets.synthetic.radar import RADAR_DTYPE
from datasets.synthetic.writer import write_radar
from utils.config import load_config
from tiny_world import overrides, tiny_world


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tiny_world(tmp_path_factory.getbasetemp())


def camera_geometry(record):
    cam = record["cam_infos"][CAMERA]
    return np.asarray(cam["calibrated_sensor"]["camera_intrinsic"]), cam["height"], cam["width"]


def test_static_reflector_one_column_moving_one_column_per_sweep(root, tmp_path):
    """Two reflectors written into every sweep's sensor frame: one fixed in the world, one moving
    sideways at 10 m/s. Compensated into the camera at the image time, the fixed one lands on one
    column in all five sweeps, the moving one on five columns."""
    record = load_infos(root / infos_filename("train"))[1]
    K, h, w = camera_geometry(record)
    camera2ego, ego2global_cam = entry_poses(record["cam_infos"][CAMERA])
    camera2global = ego2global_cam @ camera2ego
    fixed = geometry.transform_points(camera2global, np.array([[2.0, 0.5, 25.0]]))[0]
    sideways = camera2global[:3, 0] * 10.0                   # m/s along the camera's x axis
    t_image = record["cam_infos"][CAMERA]["timestamp"] * 1e-6
    sweeps = record["radar_infos"][RADAR]
    assert len(sweeps) == 5
    for sweep in sweeps:
        sensor2ego, ego2global = entry_poses(sweep)
        world_points = np.stack([fixed, fixed + sideways * (sweep["timestamp"] * 1e-6 - t_image)])
        local = geometry.transform_points(geometry.rigid_inverse(ego2global @ sensor2ego), world_points)
        records = np.zeros(2, RADAR_DTYPE)
        records["x"], records["y"], records["z"] = local.T
        records["ambig_state"], records["pdh0"] = 3, 1
        path = resolve_data_path(tmp_path, entry_path(sweep))
        path.parent.mkdir(parents=True, exist_ok=True)
        write_radar(path, records)
    xyz, (u, v, depth) = camera_radar(record, tmp_path, 5, K, h, w)
    assert len(xyz) == 10 and len(u) == 10                   # oldest sweep first, 2 points each
    columns = u.astype(int)
    assert len(set(columns[0::2])) == 1                      # the fixed reflector
    assert len(set(columns[1::2])) == 5                      # the moving one, a column per sweep
    np.testing.assert_allclose(xyz[0::2], np.tile([2.0, 0.5, 25.0], (5, 1)), atol=1e-4)   # float32 files


def dataset(root, extra, infos, mode):
    return RadarCameraDataset(load_config(None, overrides(root, root / "unused_run") + extra), infos, mode)


def test_one_sweep_is_the_released_input(root, tmp_path):
    """radar_sweeps=1 gives the released samples bit for bit: the key frame projected alone (the
    same as the record cut to its key frame read with 5 sweeps), train and eval mode."""
    train_infos = root / infos_filename("train")
    records = load_infos(train_infos)
    key_only = copy.deepcopy(records)
    for record in key_only:
        record["radar_infos"][RADAR] = record["radar_infos"][RADAR][:1]
    key_only_infos = tmp_path / "key_only.pkl"
    save_infos(key_only, key_only_infos)
    for mode in ("train", "eval"):
        one = dataset(root, ["data.max_radar_points=20", "data.radar_sweeps=1"], train_infos, mode)
        cut = dataset(root, ["data.max_radar_points=20", "data.radar_sweeps=5"], key_only_infos, mode)
        for index in range(len(records)):
            a, b = one[index], cut[index]
            assert a.keys() == b.keys()
            for key in a:
                np.testing.assert_array_equal(a[key], b[key], err_msg=f"{mode} {index} {key}")
    record = records[2]                                       # the released chain, written out
    K, h, w = camera_geometry(record)
    key = record["radar_infos"][RADAR][0]
    camera2ego, ego2global_cam = entry_poses(record["cam_infos"][CAMERA])
    chain = geometry.sensor_to_camera(*entry_poses(key), ego2global_cam, camera2ego)
    xyz = geometry.transform_points(chain, read_radar_points(resolve_data_path(root, entry_path(key))))
    u, v, depth = geometry.project_points(K, xyz)
    keep = geometry.in_canvas(u, v, h, w)
    sample = dataset(root, [], train_infos, "eval")[2]
    np.testing.assert_array_equal(sample["radar_map"][0], geometry.radar_column_map(u[keep], depth[keep], h, w))
    assert sample["radar_count"] == len(xyz)


def test_more_sweeps_more_points(root):
    val_infos = root / infos_filename("val")
    counts = [dataset(root, ["data.max_radar_points=1000", f"data.radar_sweeps={n}"], val_infos, "eval")[0]
              ["radar_count"] for n in (1, 3, 5, 9)]
    sweeps = load_infos(val_infos)[0]["radar_infos"][RADAR]
    per_sweep = [len(read_radar_points(resolve_data_path(root, entry_path(s)))) for s in sweeps]
    assert counts == [per_sweep[0], sum(per_sweep[:3]), sum(per_sweep), sum(per_sweep)]   # 9: the 5 recorded
