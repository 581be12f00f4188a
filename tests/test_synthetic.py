"""The synthetic world: nuScenes format read back by the devkit, and physical consistency between
its sensors (LiDAR vs dense depth through the devkit's projection, radar vs the ray-cast surfaces,
masks vs annotated boxes), determinism, and the ray caster against brute force and closed forms;
the same for the surround rig (six cameras, five radars), and the front rig's bytes unchanged."""
import hashlib
import os
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
from datasets.synthetic.config import RIG_NAMES
from datasets.synthetic.sensors import (CALIBRATION, JITTER_US, RADAR, RIGS,
                                        camera_matrix, sensor_pose)
from datasets.synthetic.world import build_scene
from utils.config import NUSCENES_CAMERAS, NUSCENES_RADARS, ConfigError

REPO = Path(__file__).resolve().parents[1]
TINY = ["scenes=2", "samples_per_scene=2", "seed=3"]
TINY_SURROUND = ["rig=surround", "scenes=1", "samples_per_scene=2", "seed=3", "workers=1",
                 "camera.height=90", "camera.width=160"]
VEHICLES = {ob.CAR, ob.VAN, ob.BUS, ob.TRUCK}
RATE_HZ = {"CAM": 12.0, "LIDAR": 20.0, "RADAR": 13.0}      # by channel prefix


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    cfg = load_synthetic_config(REPO / "configs" / "synthetic_world.yaml", TINY)
    root = generate(cfg, tmp_path_factory.mktemp("synthetic"), progress=False)
    return root, cfg


@pytest.fixture(scope="module")
def nusc(world):
    from nuscenes.nuscenes import NuScenes
    return NuScenes("v1.0-trainval", str(world[0]), verbose=False)


@pytest.fixture(scope="module")
def surround(tmp_path_factory):
    """A 1-scene world of the surround rig at 90x160 and its devkit tables: (root, cfg, nusc)."""
    from nuscenes.nuscenes import NuScenes
    cfg = load_synthetic_config(None, TINY_SURROUND)
    root = generate(cfg, tmp_path_factory.mktemp("surround"), progress=False)
    return root, cfg, NuScenes("v1.0-trainval", str(root), verbose=False)


def _image_name(nusc, sample, camera="CAM_FRONT"):
    return Path(nusc.get("sample_data", sample["data"][camera])["filename"]).stem


def _check_chains(nusc, root, channels):
    """Every key sample_data of `channels` is on disk, and so is its chain of sweeps at the
    channel's rate back to 0.5 s before the first key frame (linked to the previous sample's)."""
    for sample in nusc.sample:
        assert set(sample["data"]) == set(channels)
        for channel in channels:
            hz = RATE_HZ[channel.split("_")[0]]
            sd = nusc.get("sample_data", sample["data"][channel])
            assert sd["is_key_frame"] and (root / sd["filename"]).is_file()
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


def test_devkit_loads_tables_and_chains(world, nusc):
    root, cfg = world
    assert [s["name"] for s in nusc.scene] == ["scene-0001", "scene-0002"]
    assert len(nusc.sample) == 4
    _check_chains(nusc, root, ("CAM_FRONT", "LIDAR_TOP", "RADAR_FRONT"))
    for sample in nusc.sample:
        for channel, hz in (("LIDAR_TOP", 20.0), ("RADAR_FRONT", 13.0)):
            sd = nusc.get("sample_data", sample["data"][channel])
            assert abs(sd["timestamp"] - sample["timestamp"]) < 0.5e6 / hz + 1000
        sd = nusc.get("sample_data", sample["data"]["CAM_FRONT"])
        assert abs(sd["timestamp"] - sample["timestamp"] + 12_000) <= 2 * JITTER_US   # 12 ms before
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


def _lidar_vs_dense_m(nusc, root, sample, camera):
    """|LiDAR depth - dense depth| (m) at the key LIDAR_TOP points that the devkit's
    map_pointcloud_to_image projects into `camera`'s key image (lidar -> ego at the LiDAR time ->
    global -> ego at the camera time -> camera). Inverse depth is bilinear in the image on a plane,
    so the dense map is interpolated at the sub-pixel projection (pixel centres at +0.5), on
    patches of one class whose depths differ by less than 10 %."""
    from nuscenes.nuscenes import NuScenesExplorer
    pts, depth_m, _ = NuScenesExplorer(nusc).map_pointcloud_to_image(sample["data"]["LIDAR_TOP"],
                                                                     sample["data"][camera])
    sd = nusc.get("sample_data", sample["data"][camera])
    name = Path(sd["filename"]).stem
    dense = cv2.imread(str(root / "depth_dense" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
    seg = cv2.imread(str(root / "seg_mask" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
    assert dense.dtype == np.uint16 and seg.dtype == np.uint8
    assert dense.shape == seg.shape == (sd["height"], sd["width"])
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
    return np.abs(1.0 / inv_i - depth_m[flat])


def test_lidar_projected_by_devkit_matches_dense_depth(world, nusc):
    root, _ = world
    errors = [_lidar_vs_dense_m(nusc, root, sample, "CAM_FRONT") for sample in nusc.sample]
    assert min(map(len, errors)) > 1000
    errors = np.concatenate(errors)
    assert np.median(errors) < 0.05
    assert np.mean(errors < 0.1) > 0.8


def _sensor_in_street(nusc, sd, scene):
    """(street <- sensor rotation, sensor position) of a sample_data from the tables (not from the
    generator's own poses)."""
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


def _radar_vs_cast(nusc, root, cfg, sd, scene):
    """One radar sweep (sample_data `sd`) against the surfaces ray-cast from the radar's pose in
    the tables. -> kept, everything: 18 x N points with and without the devkit's filters; real_ok,
    artefact_ok: per kept real detection (pdh0 1) / artefact (pdh0 >= 3), whether a cast surface
    lies within 4 sigma of its range over +-4 sigma of its azimuth; doppler_error (m/s) of real
    detections on static surfaces: radial velocity + the sensor's radial speed from the tables' ego
    poses; speed: the sensor's speed (m/s)."""
    from nuscenes.utils.data_classes import RadarPointCloud
    sigma_r, sigma_a = cfg.radar.range_noise_m, np.radians(cfg.radar.azimuth_noise_deg)
    step = np.radians(0.05)
    fan = SphericalGrid(np.zeros(1), -np.radians(50), step, int(round(np.radians(100) / step)))
    spread = np.arange(-int(4 * sigma_a / step), int(4 * sigma_a / step) + 1)

    def around(points):
        """Range, azimuth and the fan columns within +-4 sigma of azimuth of radar points."""
        r, a = np.hypot(points[0], points[1]), np.arctan2(points[1], points[0])
        col = np.round((a + np.radians(50)) / step - 0.5).astype(int)
        return r, a, np.clip(col[:, None] + spread, 0, fan.shape[1] - 1)

    kept = RadarPointCloud.from_file(str(root / sd["filename"])).points
    RadarPointCloud.disable_filters()
    try:
        everything = RadarPointCloud.from_file(str(root / sd["filename"])).points
    finally:
        RadarPointCloud.default_filters()
    rot, pos = _sensor_in_street(nusc, sd, scene)
    prims = scene.prims_at((sd["timestamp"] - scene.t0_us) * 1e-6)
    hits = cast(fan, rot, pos, prims, 250.0)
    pdh0 = 15                                                   # false-alarm probability class
    real, artefacts = kept[:, kept[pdh0] <= 1], everything[:, everything[pdh0] >= 3]
    out = {"kept": kept, "everything": everything}
    for points, key in ((real, "real_ok"), (artefacts, "artefact_ok")):
        r, _, near = around(points)
        out[key] = np.min(np.abs(hits.t_m[near] - r[:, None]), 1) < 4 * sigma_r
    _, a, near = around(real)
    prim = hits.prim[near]
    static = np.all((prim >= 0) & np.all(prims.velocity[np.maximum(prim, 0)] == 0, 2), 1)
    v_sensor = rot.T @ scene.global_rot.T @ _ego_velocity(nusc, sd)
    radial = real[6] * np.cos(a) + real[7] * np.sin(a)
    out["doppler_error"] = (radial + v_sensor[0] * np.cos(a) + v_sensor[1] * np.sin(a))[static]
    out["speed"] = np.linalg.norm(v_sensor)
    assert np.all(np.abs(real[8:10, static]) < 1e-3)            # compensated: static is 0
    return out


def test_radar_detections_lie_on_cast_surfaces(world, nusc):
    """Real detections (pdh0 1) lie on the ray-cast surfaces within the noise, artefacts mostly not;
    Doppler of static surfaces is minus the sensor's radial speed from the tables' ego poses."""
    root, cfg = world
    sweeps = []
    for sample in nusc.sample:
        sd = nusc.get("sample_data", sample["data"]["RADAR_FRONT"])
        scene = build_scene(cfg, int(nusc.get("scene", sample["scene_token"])["name"].split("-")[1]) - 1)
        sweeps.append(_radar_vs_cast(nusc, root, cfg, sd, scene))
        kept = sweeps[-1]["kept"]
        assert kept.shape[1] >= 10 and np.all(kept[2] == 0) and np.all(kept[-4] == 0)
        assert sweeps[-1]["everything"].shape[1] > kept.shape[1]   # invalid ones exist and are dropped
    real_ok, artefact_ok, doppler_error = (np.concatenate([x[k] for x in sweeps])
                                           for k in ("real_ok", "artefact_ok", "doppler_error"))
    assert len(real_ok) > 40 and np.mean(real_ok) > 0.97
    assert len(artefact_ok) >= 5 and np.mean(artefact_ok) < 0.5
    assert len(doppler_error) > 20 and np.median(np.abs(doppler_error)) < 0.1
    assert max(x["speed"] for x in sweeps) > 2


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
    with pytest.raises(ConfigError, match="rig must be one of front, surround"):
        load_synthetic_config(None, ["rig=side"])
    assert set(RIG_NAMES) == set(RIGS)
    preset = load_synthetic_config(REPO / "configs" / "synthetic_world_surround.yaml")
    assert preset.rig == "surround" and not preset.camera.sweeps and load_synthetic_config().rig == "front"


# The front rig's world as the generator wrote it before the surround rig existed: sha256 (first
# 16 hex digits) per top-level entry of the root, synthetic_config.yaml aside (it records every
# knob, `rig` included). Recorded with numpy 1.26.4 and OpenCV 4.11.0 on x86-64 with AVX2 + FMA3.
FRONT_KNOBS = ["scenes=1", "samples_per_scene=2", "seed=4", "workers=1", "camera.height=45",
               "camera.width=80"]
FRONT_DIGESTS = {"depth_dense": "9621161bc9a27c49", "maps": "92558f17fce2f356",
                 "samples": "5b48ed2445da73c6", "seg_mask": "0a6e3a473611f36b",
                 "splits.json": "ba78ee181c04f44e", "sweeps": "4d0217f87628da54",
                 "v1.0-trainval": "049af191f3656ab4"}
FRONT_VERSIONS = ("1.26.4", "4.11.0")


def _part_digests(root):
    """{top-level entry: sha256 of its files' 'path sha256' lines}, synthetic_config.yaml aside."""
    lines = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name != "synthetic_config.yaml":
            rel = path.relative_to(root).as_posix()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            lines.setdefault(rel.split("/")[0], []).append(f"{rel} {digest}\n")
    return {part: hashlib.sha256("".join(text).encode()).hexdigest()[:16] for part, text in lines.items()}


def test_front_rig_writes_the_bytes_of_before(tmp_path):
    """rig=front (the default) writes every file and table as before the surround rig was added.
    numpy's and OpenCV's AVX-512 kernels are switched off in the generating process, so that
    machines with and without AVX-512 compute the same floats; other numpy/OpenCV versions or CPUs
    without AVX2 and FMA3 may round differently, and the test skips there."""
    from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    versions = (np.__version__, cv2.__version__)
    if versions != FRONT_VERSIONS:
        pytest.skip(f"digests recorded with numpy, OpenCV {FRONT_VERSIONS}, not {versions}")
    if not (__cpu_features__.get("AVX2") and __cpu_features__.get("FMA3")):
        pytest.skip("digests recorded on an x86-64 CPU with AVX2 and FMA3")
    env = dict(os.environ, OPENCV_CPU_DISABLE="AVX512-SKX", NPY_DISABLE_CPU_FEATURES=" ".join(
        f for f in __cpu_dispatch__ if f.startswith("AVX512")))
    subprocess.run([sys.executable, str(REPO / "tools" / "make_synthetic.py"), "--out", str(tmp_path),
                    *FRONT_KNOBS], check=True, capture_output=True, env=env)
    assert _part_digests(tmp_path) == FRONT_DIGESTS
    assert load_synthetic_config(tmp_path / "synthetic_config.yaml").rig == "front"


# the spinning LiDAR passes the cameras in this order (real slice: CAM_FRONT_LEFT 46 ms before the
# key LiDAR time ... CAM_BACK_LEFT 3 ms before)
SPIN_ORDER = ("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK", "CAM_BACK_LEFT")
# nominal radar boresights in the ego frame (deg, real slice rounded to 1 deg), ARS408 near scan
RADAR_YAW_DEG = {"RADAR_FRONT": 0, "RADAR_FRONT_RIGHT": -90, "RADAR_BACK_RIGHT": -175,
                 "RADAR_BACK_LEFT": 175, "RADAR_FRONT_LEFT": 91}
NEAR_FOV_DEG = 45.0


def test_surround_rig_tables_and_clocks(surround):
    """12 sensors and calibrations; all 12 channels in every sample, chains at their rates; each
    camera at its offset before the key LiDAR sweep, in the LiDAR's spin order within 50 ms; each
    radar on its own phase."""
    root, cfg, nusc = surround
    channels = (*NUSCENES_CAMERAS, "LIDAR_TOP", *NUSCENES_RADARS)
    assert sorted(r["channel"] for r in nusc.sensor) == sorted(channels)
    assert len(nusc.calibrated_sensor) == 12
    _check_chains(nusc, root, channels)
    rig = RIGS["surround"]
    for sample in nusc.sample:
        dt_us = {ch: nusc.get("sample_data", sample["data"][ch])["timestamp"] - sample["timestamp"]
                 for ch in channels}
        assert dt_us["LIDAR_TOP"] == 0
        for camera, offset_us in zip(rig.cameras, rig.camera_offset_us):
            assert abs(dt_us[camera] - offset_us) <= 2 * JITTER_US
        assert tuple(sorted(NUSCENES_CAMERAS, key=dt_us.get)) == SPIN_ORDER
        assert -50_000 < dt_us["CAM_FRONT_LEFT"] and dt_us["CAM_BACK_LEFT"] < 0
        radar_dt_us = [dt_us[r] for r in NUSCENES_RADARS]
        assert max(map(abs, radar_dt_us)) < 0.5e6 / 13 + 2 * JITTER_US
        assert max(radar_dt_us) - min(radar_dt_us) > 10_000        # not one shared phase


def test_surround_cameras_have_their_intrinsics_and_dense_truth(surround):
    """Each camera's intrinsics (CAM_BACK's wide lens: fx 797 px at 1600 wide, the others 1250-
    1258) scaled to the image; every key image has a depth_dense and a seg_mask of its size, with
    no depth on the sky and depth on most other pixels."""
    root, cfg, nusc = surround
    h, w = cfg.camera.height, cfg.camera.width
    for sample in nusc.sample:
        for camera in NUSCENES_CAMERAS:
            sd = nusc.get("sample_data", sample["data"][camera])
            K = np.array(nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])["camera_intrinsic"])
            fx_1600 = K[0, 0] * 1600 / w
            assert (790 < fx_1600 < 800) if camera == "CAM_BACK" else (1245 < fx_1600 < 1260)
            assert K[1, 1] * 900 / h == pytest.approx(fx_1600) and 0.5 < K[0, 2] / (w / 2) < 1.1
            image = cv2.imread(str(root / sd["filename"]))
            name = Path(sd["filename"]).stem
            dense = cv2.imread(str(root / "depth_dense" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
            seg = cv2.imread(str(root / "seg_mask" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
            assert image.shape == (h, w, 3) and dense.shape == seg.shape == (h, w)
            assert (sd["height"], sd["width"]) == (h, w)
            assert np.all(dense[seg == ob.SKY] == 0) and np.mean(dense[seg != ob.SKY] > 0) > 0.9
    assert len(list((root / "depth_dense").glob("*.png"))) == 6 * len(nusc.sample)
    assert len(list((root / "seg_mask").glob("*.png"))) == 6 * len(nusc.sample)


def test_dense_depth_is_the_world_seen_from_the_tables_camera(surround):
    """Each camera's dense depth equals, to the millimetre, the depth ray-cast from the camera pose
    that the tables give at its own timestamp (ego pose at that time, calibration, intrinsics): so
    each camera is rendered from its mount at its own time (5 ms off already changes 0.2-38 % of
    the pixels)."""
    root, cfg, nusc = surround
    scene = build_scene(cfg, 0)
    for sample in nusc.sample:
        for camera in NUSCENES_CAMERAS:
            sd = nusc.get("sample_data", sample["data"][camera])
            K = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])["camera_intrinsic"]
            grid = PinholeGrid(np.array(K), sd["height"], sd["width"])
            hits = cast(grid, *_sensor_in_street(nusc, sd, scene),
                        scene.prims_at((sd["timestamp"] - scene.t0_us) * 1e-6), 1000.0)
            z_mm = np.round(np.where(np.isfinite(hits.t_m), hits.t_m * grid.dirs[:, 2], 0.0) * 1000)
            expected_mm = np.where(z_mm <= 65535, z_mm, 0).reshape(grid.shape)
            dense = cv2.imread(str(root / "depth_dense" / f"{Path(sd['filename']).stem}.png"),
                               cv2.IMREAD_UNCHANGED)
            assert np.mean(np.abs(dense - expected_mm) > 1) < 1e-3, camera


def test_lidar_projected_into_every_camera_matches_its_dense_depth(surround):
    """The devkit's chain (LiDAR -> ego at the LiDAR time -> global -> ego at the camera's own time
    -> camera) puts the key LiDAR points on each camera's dense depth, although the cameras expose
    3-46 ms before the LiDAR and the ego moves."""
    root, _, nusc = surround
    for camera in NUSCENES_CAMERAS:
        errors = np.concatenate([_lidar_vs_dense_m(nusc, root, sample, camera) for sample in nusc.sample])
        assert len(errors) > 300, camera
        assert np.median(errors) < 0.05 and np.mean(errors < 0.1) > 0.8, camera


def test_each_radar_sees_its_own_field(surround):
    """Each radar's key sweeps have points, all within its near scan about its own boresight
    (through the tables' calibration into the ego frame, against the mount's nominal yaw); its
    real detections lie on the surfaces ray-cast from its pose in the tables, and their Doppler
    matches its motion."""
    from pyquaternion import Quaternion
    root, cfg, nusc = surround
    scene = build_scene(cfg, 0)
    margin_deg = 1.0 + 4 * cfg.radar.azimuth_noise_deg
    real_ok, doppler_error = [], []
    for radar in NUSCENES_RADARS:
        for sample in nusc.sample:
            sd = nusc.get("sample_data", sample["data"][radar])
            sweep = _radar_vs_cast(nusc, root, cfg, sd, scene)
            rot = Quaternion(nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])["rotation"])
            ego = rot.rotation_matrix @ sweep["everything"][:3]
            off_deg = (np.degrees(np.arctan2(ego[1], ego[0])) - RADAR_YAW_DEG[radar] + 180) % 360 - 180
            assert sweep["kept"].shape[1] >= 3, radar
            assert np.all(np.abs(off_deg) <= NEAR_FOV_DEG + margin_deg), radar
            real_ok.append(sweep["real_ok"])
            doppler_error.append(sweep["doppler_error"])
        on_surface = np.concatenate(real_ok[-len(nusc.sample):])
        assert len(on_surface) >= 3 and np.mean(on_surface) > 0.9, radar
    real_ok, doppler_error = np.concatenate(real_ok), np.concatenate(doppler_error)
    assert len(real_ok) > 50 and np.mean(real_ok) > 0.97
    assert len(doppler_error) > 20 and np.median(np.abs(doppler_error)) < 0.1


def test_create_infos_records_every_surround_channel(surround):
    from datasets.infos import create_infos, split_scenes as info_splits
    root, _, nusc = surround
    records = create_infos(nusc, info_splits("v1.0-trainval", root / "splits.json"), progress=False)["train"]
    assert len(records) == 2
    for record in records:
        assert set(record["cam_infos"]) == set(NUSCENES_CAMERAS)
        assert set(record["radar_infos"]) == set(NUSCENES_RADARS) and not record["radar_sweeps_short"]
        assert all(len(sweeps) == 5 for sweeps in record["radar_infos"].values())


def test_surround_mounts_and_clocks_are_the_real_slices(real_root):
    """Every channel's calibration and camera intrinsics are the real slice's numbers; the camera
    offsets are its medians of (key camera - key LiDAR) timestamps, to 0.1 ms."""
    import json
    tables = real_root / "v1.0-trainval"
    channel = {r["token"]: r["channel"] for r in json.loads((tables / "sensor.json").read_text())}
    calibrations = json.loads((tables / "calibrated_sensor.json").read_text())
    by_channel = {channel[r["sensor_token"]]: r for r in calibrations}
    assert set(by_channel) == set(CALIBRATION)
    for ch, record in by_channel.items():
        assert CALIBRATION[ch].translation == tuple(record["translation"])
        assert CALIBRATION[ch].rotation == tuple(record["rotation"])
        if ch in NUSCENES_CAMERAS:
            assert np.array_equal(camera_matrix(900, 1600, ch), record["camera_intrinsic"])
    sensor_of = {r["token"]: channel[r["sensor_token"]] for r in calibrations}
    key_us = {}
    for sd in json.loads((tables / "sample_data.json").read_text()):
        if sd["is_key_frame"]:
            channel_of_sd = sensor_of[sd["calibrated_sensor_token"]]
            key_us.setdefault(sd["sample_token"], {})[channel_of_sd] = sd["timestamp"]
    rig = RIGS["surround"]
    for camera, offset_us in zip(rig.cameras, rig.camera_offset_us):
        median_us = np.median([k[camera] - k["LIDAR_TOP"] for k in key_us.values()])
        assert abs(offset_us - median_us) <= 50, camera
