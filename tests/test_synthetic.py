"""The synthetic world: nuScenes format read back by the devkit, and physical consistency between
its sensors (LiDAR vs dense depth through the devkit's projection, radar vs the ray-cast surfaces,
masks vs annotated boxes), determinism, and the ray caster against brute force and closed forms."""
import hashlib
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from datasets.synthetic import generate, load_synthetic_config
from datasets.synthetic import objects as ob
from datasets.synthetic.pipeline import split_scenes
from datasets.synthetic.render import BOX, CYLINDER, SPHERE, PinholeGrid, SphericalGrid, cast, intersect
from datasets.synthetic.lidar import Lidar
from datasets.synthetic.sensors import CALIBRATION, RADAR, camera_matrix, sensor_pose
from datasets.synthetic.world import build_scene
from utils.config import ConfigError

REPO = Path(__file__).resolve().parents[1]
TINY = ["scenes=2", "samples_per_scene=2", "seed=3"]
VEHICLES = {ob.CAR, ob.VAN, ob.BUS, ob.TRUCK}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    cfg = load_synthetic_config(REPO / "configs" / "synthetic_world.yaml", TINY)
    root = generate(cfg, tmp_path_factory.mktemp("synthetic"), progress=False)
    return root, cfg


@pytest.fixture(scope="module")
def nusc(world):
    from nuscenes.nuscenes import NuScenes
    return NuScenes("v1.0-trainval", str(world[0]), verbose=False)


def _image_name(nusc, sample):
    return Path(nusc.get("sample_data", sample["data"]["CAM_FRONT"])["filename"]).stem


def test_devkit_loads_tables_and_chains(world, nusc):
    root, cfg = world
    assert [s["name"] for s in nusc.scene] == ["scene-0001", "scene-0002"]
    assert len(nusc.sample) == 4
    rates = {"CAM_FRONT": 12.0, "LIDAR_TOP": 20.0, "RADAR_FRONT": 13.0}
    for sample in nusc.sample:
        assert set(sample["data"]) == set(rates)
        for channel, hz in rates.items():
            sd = nusc.get("sample_data", sample["data"][channel])
            assert sd["is_key_frame"] and (root / sd["filename"]).is_file()
            assert abs(sd["timestamp"] - sample["timestamp"]) < 0.5e6 / hz + 1000
            chain = [sd]
            while chain[-1]["prev"]:
                chain.append(nusc.get("sample_data", chain[-1]["prev"]))
            assert all((root / r["filename"]).is_file() for r in chain)
            gaps = -np.diff([r["timestamp"] for r in chain]) * 1e-6
            assert np.all(np.abs(gaps - 1 / hz) < 0.0015), (channel, gaps)
            keys = [r for r in chain if r["is_key_frame"]]
            if sample["prev"]:
                assert keys[1]["token"] == nusc.get("sample", sample["prev"])["data"][channel]
            else:                                               # sweeps start 0.5 s before
                assert len(keys) == 1 and sample["timestamp"] - chain[-1]["timestamp"] > 0.4e6
    cam = nusc.get("calibrated_sensor", nusc.get("sample_data", nusc.sample[0]["data"]["CAM_FRONT"])
                   ["calibrated_sensor_token"])
    assert np.allclose(cam["camera_intrinsic"], camera_matrix(225, 400))
    assert cam["camera_intrinsic"][0][0] == pytest.approx(1252.8131 / 4)


def test_annotations_move_like_their_attributes(nusc):
    assert len(nusc.sample_annotation) > 20
    speeds = {"vehicle.moving": [], "vehicle.parked": [], "pedestrian.moving": []}
    for ann in nusc.sample_annotation:
        assert ann["num_lidar_pts"] + ann["num_radar_pts"] > 0
        attribute = nusc.get("attribute", ann["attribute_tokens"][0])["name"]
        velocity = nusc.box_velocity(ann["token"])
        if attribute in speeds and np.all(np.isfinite(velocity)):
            speeds[attribute].append(np.linalg.norm(velocity[:2]))
    assert np.median(speeds["vehicle.parked"]) < 0.01
    assert np.median(speeds["vehicle.moving"]) > 1.5
    assert 0.8 < np.median(speeds["pedestrian.moving"]) < 1.8
    boxes = nusc.get_boxes(nusc.sample[0]["data"]["LIDAR_TOP"])
    assert len(boxes) == len(nusc.sample[0]["anns"])


def test_lidar_projected_by_devkit_matches_dense_depth(world, nusc):
    """Inverse depth is bilinear in the image on a plane, so interpolating the dense map at the
    devkit's sub-pixel projection (pixel centres at +0.5) must give the LiDAR depth within its noise."""
    from nuscenes.nuscenes import NuScenesExplorer
    root, _ = world
    explorer = NuScenesExplorer(nusc)
    errors = []
    for sample in nusc.sample:
        pts, depth_m, _ = explorer.map_pointcloud_to_image(sample["data"]["LIDAR_TOP"],
                                                           sample["data"]["CAM_FRONT"])
        name = _image_name(nusc, sample)
        dense = cv2.imread(str(root / "depth_dense" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        seg = cv2.imread(str(root / "seg_mask" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert dense.dtype == np.uint16 and seg.dtype == np.uint8 and dense.shape == (225, 400)
        x, y = pts[0] - 0.5, pts[1] - 0.5
        x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
        ok = (x0 >= 0) & (y0 >= 0) & (x0 + 1 < dense.shape[1]) & (y0 + 1 < dense.shape[0])
        x, y, x0, y0, depth_m = x[ok], y[ok], x0[ok], y0[ok], depth_m[ok]
        quad = np.stack([dense[y0, x0], dense[y0, x0 + 1], dense[y0 + 1, x0], dense[y0 + 1, x0 + 1]]) / 1000.0
        classes = np.stack([seg[y0, x0], seg[y0, x0 + 1], seg[y0 + 1, x0], seg[y0 + 1, x0 + 1]])
        flat = (quad.min(0) > 0) & (quad.max(0) < 1.1 * quad.min(0)) & np.all(classes == classes[0], 0)
        fx, fy = (x - x0)[flat], (y - y0)[flat]
        inv = 1.0 / quad[:, flat]
        inv_i = (inv[0] * (1 - fx) + inv[1] * fx) * (1 - fy) + (inv[2] * (1 - fx) + inv[3] * fx) * fy
        assert flat.sum() > 1000
        errors.append(np.abs(1.0 / inv_i - depth_m[flat]))
    errors = np.concatenate(errors)
    assert np.median(errors) < 0.05
    assert np.mean(errors < 0.1) > 0.8


def _radar_rays(nusc, sd, scene):
    """Radar pose in the street frame from the tables (not from the generator's own poses)."""
    from pyquaternion import Quaternion
    pose = nusc.get("ego_pose", sd["ego_pose_token"])
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    ego_rot = scene.global_rot.T @ Quaternion(pose["rotation"]).rotation_matrix
    ego_pos = scene.to_street(np.array([pose["translation"]]))[0]
    sensor_pos = ego_rot @ np.array(cs["translation"]) + ego_pos
    return ego_rot @ Quaternion(cs["rotation"]).rotation_matrix, sensor_pos


def _ego_velocity(nusc, sd):
    """Global ego velocity (m/s) from the ego poses of the neighbouring sweeps in the tables."""
    a = nusc.get("sample_data", sd["prev"]) if sd["prev"] else sd
    b = nusc.get("sample_data", sd["next"]) if sd["next"] else sd
    pa, pb = (np.array(nusc.get("ego_pose", x["ego_pose_token"])["translation"]) for x in (a, b))
    return (pb - pa) / ((b["timestamp"] - a["timestamp"]) * 1e-6)


def test_radar_detections_lie_on_cast_surfaces(world, nusc):
    """Real detections (pdh0 1) lie on the ray-cast surfaces within the noise, artefacts mostly not;
    Doppler of static surfaces is minus the sensor's radial speed from the tables' ego poses."""
    from nuscenes.utils.data_classes import RadarPointCloud
    root, cfg = world
    sigma_r, sigma_a = cfg.radar.range_noise_m, np.radians(cfg.radar.azimuth_noise_deg)
    step = np.radians(0.05)
    fan = SphericalGrid(np.zeros(1), -np.radians(50), step, int(round(np.radians(100) / step)))
    spread = np.arange(-int(4 * sigma_a / step), int(4 * sigma_a / step) + 1)

    def around(points):
        """Range, azimuth and the fan columns within +-4 sigma of azimuth of radar points."""
        r, a = np.hypot(points[0], points[1]), np.arctan2(points[1], points[0])
        col = np.round((a + np.radians(50)) / step - 0.5).astype(int)
        return r, a, np.clip(col[:, None] + spread, 0, fan.shape[1] - 1)

    real_ok, artefact_ok, doppler_error, ego_speed = [], [], [], []
    for sample in nusc.sample:
        sd = nusc.get("sample_data", sample["data"]["RADAR_FRONT"])
        scene_rec = nusc.get("scene", sample["scene_token"])
        scene = build_scene(cfg, int(scene_rec["name"].split("-")[1]) - 1)
        kept = RadarPointCloud.from_file(str(root / sd["filename"])).points
        RadarPointCloud.disable_filters()
        try:
            everything = RadarPointCloud.from_file(str(root / sd["filename"])).points
        finally:
            RadarPointCloud.default_filters()
        assert kept.shape[1] >= 10 and np.all(kept[2] == 0) and np.all(kept[-4] == 0)
        assert everything.shape[1] > kept.shape[1]                  # invalid ones exist and are dropped
        rot, pos = _radar_rays(nusc, sd, scene)
        prims = scene.prims_at((sd["timestamp"] - scene.t0_us) * 1e-6)
        hits = cast(fan, rot, pos, prims, 250.0)
        pdh0 = 15                                                   # false-alarm probability class
        real, artefacts = kept[:, kept[pdh0] <= 1], everything[:, everything[pdh0] >= 3]
        for points, out in ((real, real_ok), (artefacts, artefact_ok)):
            r, _, near = around(points)
            out.extend(np.min(np.abs(hits.t_m[near] - r[:, None]), 1) < 4 * sigma_r)
        _, a, near = around(real)
        prim = hits.prim[near]
        static = np.all((prim >= 0) & np.all(prims.velocity[np.maximum(prim, 0)] == 0, 2), 1)
        v_sensor = rot.T @ scene.global_rot.T @ _ego_velocity(nusc, sd)
        ego_speed.append(np.linalg.norm(v_sensor))
        radial = real[6] * np.cos(a) + real[7] * np.sin(a)
        doppler_error.extend((radial + v_sensor[0] * np.cos(a) + v_sensor[1] * np.sin(a))[static])
        assert np.all(np.abs(real[8:10, static]) < 1e-3)            # compensated: static is 0
    assert len(real_ok) > 40 and np.mean(real_ok) > 0.97
    assert len(artefact_ok) >= 5 and np.mean(artefact_ok) < 0.5
    assert len(doppler_error) > 20 and np.median(np.abs(doppler_error)) < 0.1 and max(ego_speed) > 2


def test_masks_carry_the_drawn_classes(world, nusc):
    from nuscenes.utils.geometry_utils import view_points
    root, _ = world
    seen, checked, on_target = set(), 0, 0
    for sample in nusc.sample:
        name = _image_name(nusc, sample)
        seg = cv2.imread(str(root / "seg_mask" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        dense = cv2.imread(str(root / "depth_dense" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        seen |= set(np.unique(seg).tolist())
        assert np.all(dense[seg == ob.SKY] == 0)
        _, boxes, K = nusc.get_sample_data(sample["data"]["CAM_FRONT"])
        for box in boxes:
            if not box.name.startswith(("vehicle.car", "vehicle.bus", "vehicle.truck", "human")):
                continue
            u, v, z = view_points(box.center[:, None], K, normalize=False)[:, 0]
            u, v = u / z, v / z
            if not (3 < z < 40 and 0 <= u < seg.shape[1] and 0 <= v < seg.shape[0]):
                continue
            expected = {ob.PERSON} if box.name.startswith("human") else VEHICLES
            checked += 1
            on_target += seg[int(v), int(u)] in expected
    assert {ob.SKY, ob.ROAD, ob.SIDEWALK, ob.BUILDING, ob.CAR}.issubset(seen)
    assert seen.issubset({0, 1, 2, 4, 6, 9, 11, 12, 20, 32, 43, 80, 83, 93, 102, 116, 127})
    assert checked >= 5 and on_target / checked > 0.7


def test_create_infos_indexes_the_world(world, tmp_path):
    root, _ = world
    if not (REPO / "tools" / "create_infos.py").is_file():
        pytest.skip("tools/create_infos.py is absent")
    subprocess.run([sys.executable, str(REPO / "tools" / "create_infos.py"), "--data-root", str(root),
                    "--version", "v1.0-trainval", "--out-dir", str(tmp_path),
                    "--splits-file", str(root / "splits.json")], check=True, capture_output=True)
    from datasets.infos import load_infos
    train = load_infos(tmp_path / "nuscenes_radar_5sweeps_infos_train.pkl")
    val = load_infos(tmp_path / "nuscenes_radar_5sweeps_infos_val.pkl")
    assert [r["scene_name"] for r in train] == ["scene-0001"] * 2
    assert [r["scene_name"] for r in val] == ["scene-0002"] * 2
    for record in train + val:
        assert len(record["radar_infos"]["RADAR_FRONT"]) == 5 and not record["radar_sweeps_short"]
        assert (root / record["cam_infos"]["CAM_FRONT"]["filename"]).is_file()


def test_same_seed_writes_identical_bytes(world, tmp_path):
    root, cfg = world
    again = load_synthetic_config(REPO / "configs" / "synthetic_world.yaml", TINY + ["workers=1"])
    generate(again, tmp_path / "again", progress=False)

    def digests(folder):
        return {p.relative_to(folder).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
                for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "synthetic_config.yaml"}
    first, second = digests(root), digests(tmp_path / "again")
    assert len(first) > 100 and first == second


def test_cast_equals_brute_force_and_closed_forms():
    cfg = load_synthetic_config(None, ["seed=5"])
    scene = build_scene(cfg, 1)
    prims = scene.prims_at(2.0)

    class Everything:
        """The grid with windows covering all rays: every solid meets every ray."""
        def __init__(self, grid):
            self.grid, self.dirs, self.shape, self.wrap = grid, grid.dirs, grid.shape, grid.wrap

        def windows(self, corners):
            n = len(corners)
            return (np.zeros(n, int), np.full(n, self.shape[0]), np.zeros(n, int), np.full(n, self.shape[1]))

    camera = PinholeGrid(camera_matrix(36, 64), 36, 64)
    lidar = Lidar(load_synthetic_config(None, ["lidar.beams=8", "lidar.azimuth_steps=180"]).lidar).grid
    for grid, channel, far in ((camera, "CAM_FRONT", 300.0), (lidar, "LIDAR_TOP", 80.0)):
        rot, pos = sensor_pose(scene, channel, 2.0)
        fast, slow = cast(grid, rot, pos, prims, far), cast(Everything(grid), rot, pos, prims, far)
        assert np.array_equal(fast.prim, slow.prim) and np.allclose(fast.t_m, slow.t_m)
        assert (fast.prim >= 0).sum() > 0.2 * len(fast.prim)

    o = np.array([[-5.0], [0.3], [0.2]])                  # from x = -5 along +x
    d = np.array([[1.0], [0.0], [0.0]])
    half = np.array([[1.0], [2.0], [0.5]])
    assert intersect(BOX, o, d, half)[0] == pytest.approx(4.0)
    assert intersect(SPHERE, o, d, half)[0] == pytest.approx(5 - np.sqrt(1 - 0.3 ** 2 - 0.2 ** 2))
    assert intersect(CYLINDER, o, d, half)[0] == pytest.approx(5 - np.sqrt(1 - 0.3 ** 2))
    down = intersect(CYLINDER, np.array([[0.2], [0.0], [3.0]]), np.array([[0.0], [0.0], [-1.0]]), half)
    assert down[0] == pytest.approx(2.5)                   # through the top cap
    assert np.isinf(intersect(BOX, o, -d, half)[0])


def test_config_and_splits():
    with pytest.raises(ConfigError, match="lidar.beam"):
        load_synthetic_config(None, ["lidar.beam=64"])
    with pytest.raises(ConfigError, match="scenes"):
        load_synthetic_config(None, ["scenes=0"])
    names = [f"scene-{i:04d}" for i in range(1, 9)]
    assert split_scenes(names, 0.25) == {"train": names[:6], "val": names[6:], "test": []}
    assert split_scenes(names[:1], 0.25)["val"] == []
    assert CALIBRATION[RADAR].translation == (3.412, 0.0, 0.5)
