"""Hostile or broken inputs (issue 20, rows 3 and 6): info-file paths that leave the data root,
files that are no regular files or are too large, non-physical own-data values, and info records
with non-finite poses, missing keys, wrong types or duplicated sample tokens. Each case is built
in the test's own temporary folder (the tiny synthetic world of tests/tiny_world.py)."""
import copy
import json
import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from datasets.frames import PredictInputError, own_frame, read_camera_radar, read_intrinsics
from datasets.infos import InfoFileError, entry_path, infos_filename, load_infos, save_infos
from datasets.io import DataFileError, read_image_bgr, read_lidar_points, resolve_data_path
from datasets.nuscenes_dataset import RadarCameraDataset
from utils.config import load_config
from tiny_world import overrides, tiny_world

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return tiny_world(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def records(world):
    return load_infos(world / infos_filename("val"))


def cfg_for(world, *extra):
    return load_config(None, overrides(world, "unused") + ["data.mask_supervision=false", *extra])


def write_records(path, records):
    save_infos(records, path)
    return path


# ---- row 3: paths and files ------------------------------------------------------------------
def test_info_path_outside_the_data_root_is_refused(world, records, tmp_path):
    """'samples/../../x/frame.jpg' named an image outside the root, which was read and scored;
    now refused, in the resolver and (naming record and path) when the info file is loaded."""
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(DataFileError, match=r"samples/\.\./\.\./x/frame\.jpg.*outside the data root"):
        resolve_data_path(root, "samples/../../x/frame.jpg")
    with pytest.raises(DataFileError, match="outside the data root"):
        resolve_data_path(root, "./data/nuScenes/samples/CAM_FRONT/../../../../etc/passwd")
    # the released forms and a symlinked samples/ folder (another disk) still work
    assert resolve_data_path(root, "./data/nuScenes/samples/CAM_FRONT/a.jpg") == root / "samples/CAM_FRONT/a.jpg"
    (root / "samples").symlink_to(world / "samples")
    cam = entry_path(records[0]["cam_infos"]["CAM_FRONT"])
    assert read_image_bgr(resolve_data_path(root, cam)).shape == (100, 180, 3)
    bad = copy.deepcopy(records)
    bad[1]["cam_infos"]["CAM_FRONT"]["filename"] = "samples/../../x/frame.jpg"
    path = write_records(tmp_path / "escape.pkl", bad)
    with pytest.raises(InfoFileError, match=rf"{re.escape(str(path))}: record 1 \(sample_token "
                                            rf"{bad[1]['sample_token']}\): cam_infos.CAM_FRONT.filename .*outside"):
        RadarCameraDataset(cfg_for(world), path, "eval", data_root=world)


CHILD = """
import os, resource, sys
sys.path.insert(0, {repo!r})
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
from datasets.io import DataFileError, read_image_bgr, read_lidar_points
for reader, path in ((read_image_bgr, {fifo!r}), (read_lidar_points, "/dev/zero")):
    try:
        reader(path)
        print("READ", path)
    except DataFileError as err:
        print("REFUSED", err)
    except BaseException as err:
        print("OTHER", type(err).__name__, err)
"""


def test_fifo_and_device_files_are_refused_without_reading(tmp_path):
    """A FIFO hung the reader and /dev/zero ate memory; now only regular files are opened (in a
    child process with a timeout and a memory limit, so the old behaviour cannot hang the suite)."""
    fifo = tmp_path / "frame.jpg"
    os.mkfifo(fifo)
    try:
        out = subprocess.run([sys.executable, "-c", CHILD.format(repo=str(REPO), fifo=str(fifo))],
                             capture_output=True, text=True, timeout=60).stdout
    except subprocess.TimeoutExpired:
        pytest.fail("reading a FIFO hung")
    lines = out.strip().splitlines()
    assert len(lines) == 2, out
    assert lines[0].startswith("REFUSED") and "not a regular file" in lines[0] and str(fifo) in lines[0], out
    assert lines[1].startswith("REFUSED") and "/dev/zero is not a regular file" in lines[1], out


def _png_gray(height, width):
    """A valid 8-bit grey PNG of zeros, compressed row by row (about 100 kB at 10000 x 10000)."""
    z = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    body = b"".join(z.compress(row) for _ in range(height)) + z.flush()

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def test_size_ceilings_bytes_and_pixels(tmp_path, monkeypatch):
    """A 10000 x 10000 image went out of memory in tools/predict.py; a huge point cloud was read
    whole. Now the bytes on disk and the image's pixel count (from its header, before decoding)
    have ceilings with a clear message."""
    huge = tmp_path / "huge.png"
    huge.write_bytes(_png_gray(10000, 10000))
    def no_decoding(*args):
        raise AssertionError("the image was decoded")
    monkeypatch.setattr("datasets.io.cv2.imdecode", no_decoding)   # refused from the header
    with pytest.raises(DataFileError, match=r"huge\.png is 10000 x 10000 = 100000000 pixels, over"):
        read_image_bgr(huge)
    np.save(tmp_path / "pts.npy", np.ones((3, 3)))
    (tmp_path / "K.json").write_text(json.dumps({"camera_intrinsic": [[5000, 0, 5000], [0, 5000, 5000], [0, 0, 1]]}))
    with pytest.raises(PredictInputError, match=r"huge\.png is 10000 x 10000 = 100000000 pixels"):
        own_frame(huge, tmp_path / "pts.npy", tmp_path / "K.json")
    big = tmp_path / "big.pcd.bin"
    with open(big, "wb") as f:                           # sparse: no disk space used
        f.truncate(100 * 2 ** 20)
    with pytest.raises(DataFileError, match=r"big\.pcd\.bin is 104857600 bytes, over the ceiling"):
        read_lidar_points(big)


def test_own_data_non_physical_values_are_refused(tmp_path):
    """Radar at 1e30 m or fx = 1e-300 gave predictions of 3e30 m with exit 0."""
    for value in (1e30, -5e4):
        np.save(tmp_path / "far.npy", np.array([[1.0, 0.0, 10.0], [0.0, 0.0, value]]))
        with pytest.raises(PredictInputError, match=r"far\.npy: 1 of 2 points lie farther than"):
            read_camera_radar(tmp_path / "far.npy")
    np.save(tmp_path / "radar.npy", np.array([[1.0, 0.0, 10.0]]))
    (tmp_path / "E.json").write_text(json.dumps({"rotation": [1, 0, 0, 0], "translation": [0, 0, 1e30]}))
    with pytest.raises(PredictInputError, match=r"radar\.npy: 1 of 1 points lie farther"):
        read_camera_radar(tmp_path / "radar.npy", tmp_path / "E.json")
    from test_predict_export import small_image
    image, _ = small_image(tmp_path)                      # 400 x 225
    for fx, says in ((1e-300, "focal length"), (1e300, "focal length"), (0.5, "focal length")):
        k = tmp_path / "K.json"
        k.write_text(json.dumps({"camera_intrinsic": [[fx, 0, 200], [0, 200, 112.5], [0, 0, 1]]}))
        with pytest.raises(PredictInputError, match=rf"K\.json: .*{says}"):
            own_frame(image, tmp_path / "radar.npy", k)
    k.write_text(json.dumps({"camera_intrinsic": [[200, 0, 200], [0, 200, 112.5], [0, 0, 1]]}))
    assert own_frame(image, tmp_path / "radar.npy", k).K[0, 0] == 200     # a sane K passes
    assert read_intrinsics(k)[1, 1] == 200


# ---- row 6: info records validated on load ---------------------------------------------------
def _set(record, keys, value):
    node = record
    for key in keys[:-1]:
        node = node[key]
    if value is KeyError:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value


BAD_RECORDS = {
    "nan_translation": (("lidar_infos", "LIDAR_TOP", "ego_pose", "translation"), [np.nan, 0.0, 0.0],
                        r"lidar_infos.LIDAR_TOP.ego_pose.translation .*not finite"),
    "zero_quaternion": (("cam_infos", "CAM_FRONT", "calibrated_sensor", "rotation"), [0, 0, 0, 0],
                        r"cam_infos.CAM_FRONT.calibrated_sensor.rotation .*unit quaternion"),
    "nan_fx": (("cam_infos", "CAM_FRONT", "calibrated_sensor", "camera_intrinsic"),
               [[np.nan, 0, 90], [0, 100, 50], [0, 0, 1]], r"cam_infos.CAM_FRONT.calibrated_sensor.camera_intrinsic .*finite"),
    "radar_nan_rotation": (("radar_infos", "RADAR_FRONT", 0, "ego2global_rotation"), [np.nan, 0, 0, 1],
                           r"radar_infos.RADAR_FRONT\[0\].ego2global_rotation"),
    "missing_cam_infos": (("cam_infos",), KeyError, r"no key 'cam_infos'"),
    "missing_intrinsic": (("cam_infos", "CAM_FRONT", "calibrated_sensor", "camera_intrinsic"), KeyError,
                          r"cam_infos.CAM_FRONT.calibrated_sensor has no key 'camera_intrinsic'"),
    "missing_sensor2ego": (("radar_infos", "RADAR_FRONT", 0, "sensor2ego_rotation"), KeyError,
                           r"radar_infos.RADAR_FRONT\[0\] has no key 'sensor2ego_rotation'"),
    "translation_is_text": (("lidar_infos", "LIDAR_TOP", "calibrated_sensor", "translation"), "1, 2, 3",
                            r"lidar_infos.LIDAR_TOP.calibrated_sensor.translation must be 3 numbers"),
    "radar_not_a_list": (("radar_infos", "RADAR_FRONT"), {"data_path": "sweeps/x.pcd"},
                         r"radar_infos.RADAR_FRONT must be a non-empty list"),
}


@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_bad_record_is_one_line_in_eval_and_a_recorded_skip_in_training(case, world, records, tmp_path):
    """A NaN pose or intrinsic dropped the frame from the metrics while it was still counted; a
    malformed record gave a traceback. Now eval mode (and train without skipping) refuses the
    file with one line naming it, the record index, its sample token and the field; training with
    data.skip_bad_samples replaces it by the next sample and records the skip."""
    keys, value, says = BAD_RECORDS[case]
    bad = copy.deepcopy(records)
    _set(bad[2], keys, value)
    path = write_records(tmp_path / f"{case}.pkl", bad)
    token = records[2]["sample_token"]
    pattern = rf"^info file {re.escape(str(path))}: record 2 \(sample_token {token}\): {says}"
    for mode, extra in (("eval", []), ("train", ["data.skip_bad_samples=false"])):
        with pytest.raises(InfoFileError) as err:
            RadarCameraDataset(cfg_for(world, *extra), path, mode, data_root=world)
        assert re.search(pattern, str(err.value)) and "\n" not in str(err.value), str(err.value)
    ds = RadarCameraDataset(cfg_for(world), path, "train", data_root=world)
    sample = ds[2]
    assert sample["index"] == 3 and ds.num_skipped == 1
    (skip,) = json.loads(sample["skipped"])
    assert skip["index"] == 2 and skip["file"] == str(path) and re.search(says, skip["reason"])
    assert ds[1]["skipped"] == "" and ds[1]["index"] == 1


def test_duplicate_sample_tokens_are_refused(world, records, tmp_path):
    """A duplicated record (or one sharing a sample token) was scored twice without a word."""
    path = write_records(tmp_path / "dup.pkl", records + [copy.deepcopy(records[1])])
    for mode in ("eval", "train"):
        with pytest.raises(InfoFileError, match=rf"{re.escape(str(path))}: records 1 and 4 have the same "
                                                rf"sample_token {records[1]['sample_token']}"):
            RadarCameraDataset(cfg_for(world), path, mode, data_root=world)


def test_validation_of_28k_records_finds_the_one_bad_record(records, tmp_path):
    """28,000 records of 5 radar sweeps (the size of nuScenes train, checked at once with NumPy):
    the one bad record among them is found and named."""
    from datasets.records import check_records
    many = []
    for i in range(7000):
        for r in records:
            many.append({**r, "sample_token": f"{r['sample_token']}-{i}"})
    many[-1] = copy.deepcopy(many[-1])
    many[-1]["cam_infos"]["CAM_FRONT"]["ego_pose"]["translation"] = [0.0, np.inf, 0.0]
    problems = check_records(many, "many.pkl", keep_bad=True)
    assert list(problems) == [len(many) - 1] and "ego_pose.translation" in problems[len(many) - 1]


def test_real_and_released_records_pass(real_records, real_root):
    """The real slice's records and their released path forms ('./data/nuScenes/samples/...',
    flat radar poses as NumPy arrays) validate."""
    from datasets.records import check_records
    released = copy.deepcopy(real_records)
    for r in released:
        cam = r["cam_infos"]["CAM_FRONT"]
        cam["filename"] = "./data/nuScenes/" + cam["filename"]
        for sweep in r["radar_infos"]["RADAR_FRONT"]:
            sweep["sensor2ego_rotation"] = np.asarray(sweep["sensor2ego_rotation"])
        del cam["height"], cam["width"]
    assert check_records(real_records, "real.pkl", keep_bad=False) == {}
    assert check_records(released, "released.pkl", keep_bad=False) == {}
