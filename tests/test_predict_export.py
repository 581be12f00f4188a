"""tools/predict.py (own data and nuScenes frames) and tools/export_onnx.py (ONNX + onnxruntime check)."""
import contextlib
import importlib
import io
import json
import logging
import re
import warnings

import cv2
import numpy as np
import pytest
import torch
from nuscenes.utils.data_classes import RadarPointCloud
from pyquaternion import Quaternion

from datasets import geometry
from datasets.infos import entry_path, entry_poses
from models import SpaDe
from tools import export_onnx, predict
from utils.config import Config
from datasets.io import read_depth_png
from datasets.frames import (PredictInputError, frame_sample, nuscenes_sample, own_frame,
                              write_outputs)
from utils.visualize import NO_VALUE_BGR, depth_tile

H, W = 225, 400          # small frames: padded to 256 x 512


@pytest.fixture(scope="module")
def model(ckpt):
    """The checkpoint's network, eval mode (the fused inference copy is cached on it)."""
    net = SpaDe()
    net.load_state_dict(torch.load(ckpt)["network"])
    return net.eval()


def small_image(tmp_path, name="street.png"):
    rng = np.random.default_rng(3)
    img = cv2.GaussianBlur(rng.integers(0, 256, (H, W, 3), dtype=np.uint8), (9, 9), 3)
    path = tmp_path / name
    cv2.imwrite(str(path), img)
    return path, img


def write_json(path, data):
    path.write_text(json.dumps(data))
    return path


K_SMALL = [[200.0, 0.0, 200.0], [0.0, 200.0, 112.5], [0.0, 0.0, 1.0]]


# ---- nuScenes frames: predict.py == eval.py --save-pred ------------------------------------------
def test_predict_equals_eval_save_pred(ckpt, real_infos, real_root, tmp_path, capsys):
    eval_script = importlib.import_module("eval")
    eval_script.main(["-m", str(ckpt), "--infos", str(real_infos), "--data-root", str(real_root),
                      "--max-samples", "1", "--save-pred", str(tmp_path / "eval"), "--quiet",
                      "data.num_workers=0"])
    predict.main(["-m", str(ckpt), "--data-root", str(real_root), "--infos", str(real_infos),
                  "--index", "0", "--out", str(tmp_path / "pred")])
    (written,) = (tmp_path / "eval").glob("*.png")
    ours = cv2.imread(str(tmp_path / "pred" / written.name), cv2.IMREAD_UNCHANGED)
    theirs = cv2.imread(str(written), cv2.IMREAD_UNCHANGED)
    assert ours.dtype == np.uint16 and ours.shape == (900, 1600)
    np.testing.assert_array_equal(ours, theirs)
    depth_m = np.load(tmp_path / "pred" / written.with_suffix(".npy").name)
    unsaturated = theirs < 65535
    np.testing.assert_allclose(depth_m[unsaturated], theirs[unsaturated] / 1000.0, atol=5e-4 + 1e-6)
    assert "1600 x 900" in capsys.readouterr().out


def test_nuscenes_frame_selectors_agree(real_records, real_infos, real_root):
    """--index, --name, --sample-token (in the info file, and through the devkit tables) pick the
    same frame and build the same inputs."""
    cfg = Config()
    record = real_records[0]
    name = entry_path(record["cam_infos"]["CAM_FRONT"]).split("/")[-1].rsplit(".", 1)[0]
    by_index = nuscenes_sample(cfg, real_root, infos_path=real_infos, index=0)
    others = [nuscenes_sample(cfg, real_root, infos_path=real_infos, name=name),
              nuscenes_sample(cfg, real_root, infos_path=real_infos, sample_token=record["sample_token"]),
              nuscenes_sample(cfg, real_root, sample_token=record["sample_token"])]
    assert by_index["name"] == name and by_index["radar_count"] > 0
    for other in others:
        for key in ("img", "radar_map", "radar_pts", "radar_count", "K"):
            np.testing.assert_array_equal(other[key], by_index[key])
    with pytest.raises(PredictInputError, match="no record with sample token nope"):
        nuscenes_sample(cfg, real_root, infos_path=real_infos, sample_token="nope")
    with pytest.raises(PredictInputError, match="not in v1.0-trainval"):
        nuscenes_sample(cfg, real_root, sample_token="nope")


# ---- outputs ------------------------------------------------------------------------------------
def test_outputs_round_trip(tmp_path):
    depth_m = np.zeros((4, 6), np.float32)
    depth_m[1, 2], depth_m[2, 3], depth_m[3, 5] = 1.2346, 42.0004, 70.0
    paths = write_outputs(depth_m, tmp_path / "out", "frame", max_depth_m=80.0)
    png = cv2.imread(str(paths["png"]), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint16 and png.shape == (4, 6)
    assert (png[1, 2], png[2, 3], png[3, 5], png[0, 0]) == (1235, 42000, 65535, 0)   # mm, saturated
    np.testing.assert_allclose(read_depth_png(paths["png"])[1, 2], 1.235, atol=1e-6)
    np.testing.assert_array_equal(np.load(paths["npy"]), depth_m)
    color = cv2.imread(str(paths["color"]), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(color, depth_tile(depth_m, 80.0))
    assert tuple(color[0, 0]) == NO_VALUE_BGR and tuple(color[3, 5]) != NO_VALUE_BGR


# ---- own data ------------------------------------------------------------------------------------
def test_own_frame_inputs_by_hand(tmp_path):
    """K f=200, c=(200, 112.5): (1, 0.5, 10) m lands on u = 220, so column 220 holds 10 m; the
    point behind the camera projects (x/z, y/z) to the principal point and, as released, writes
    its negative depth down column 200; the one left of the image only becomes a point feature."""
    image, img = small_image(tmp_path)
    pts = np.array([[1.0, 0.5, 10.0], [0.0, 0.0, -4.0], [-30.0, 0.0, 5.0]])
    np.save(tmp_path / "pts.npy", pts)
    k_path = write_json(tmp_path / "K.json", {"camera_intrinsic": K_SMALL})
    sample = frame_sample(own_frame(image, tmp_path / "pts.npy", k_path), Config())
    np.testing.assert_array_equal(sample["img"], img.transpose(2, 0, 1))
    expected = np.zeros((1, H, W), np.float32)
    expected[0, :, 220] = 10.0
    expected[0, :, 200] = -4.0
    np.testing.assert_array_equal(sample["radar_map"], expected)
    assert sample["radar_count"] == 3 and sample["radar_pts"].shape == (200, 3)
    np.testing.assert_array_equal(sample["radar_pts"][:3], pts.astype(np.float32))
    assert not sample["radar_pts"][3:].any() and sample["name"] == "street"


def test_own_data_cli(ckpt, model, tmp_path):
    image, _ = small_image(tmp_path)
    pts = np.array([[1.0, 0.5, 10.0], [-3.0, 1.0, 25.0]], np.float32)
    np.save(tmp_path / "pts.npy", pts)
    k_path = write_json(tmp_path / "K.json", {"camera_intrinsic": K_SMALL})
    predict.main(["-m", str(ckpt), "--image", str(image), "--radar-points", str(tmp_path / "pts.npy"),
                  "--intrinsics", str(k_path), "--out", str(tmp_path / "out"), "--device", "cpu"])
    depth_m = np.load(tmp_path / "out" / "street.npy")
    sample = frame_sample(own_frame(image, tmp_path / "pts.npy", k_path), Config())
    with torch.inference_mode():
        want = model.predict(*(torch.from_numpy(np.asarray(sample[k]))[None] for k in
                                      ("img", "radar_map", "radar_pts", "radar_count")))
    np.testing.assert_array_equal(depth_m, want[0, 0].numpy())
    color = cv2.imread(str(tmp_path / "out" / "street_color.png"))
    assert color.shape[1:] == (W, 3) and color.shape[0] > H          # the map, then its colour bar
    png_mm = cv2.imread(str(tmp_path / "out" / "street.png"), cv2.IMREAD_UNCHANGED)
    assert png_mm.dtype == np.uint16                                  # millimetres, rounded
    np.testing.assert_array_equal(png_mm, np.rint(depth_m.astype(np.float64) * 1000))
    np.testing.assert_allclose(read_depth_png(tmp_path / "out" / "street.png"), png_mm / 1000, atol=1e-6)


def test_pcd_with_extrinsics_equals_camera_frame_points(real_records, real_root, tmp_path):
    """A real RADAR_FRONT .pcd + radar->camera extrinsics (as a matrix and as a quaternion) gives
    the inputs of the same points transformed beforehand and saved as camera-frame .npy; the
    points are those of the devkit's RadarPointCloud with its default filters."""
    record = real_records[5]
    radar = record["radar_infos"]["RADAR_FRONT"][0]
    pcd = real_root / entry_path(radar)
    radar2ego, _ = entry_poses(radar)
    cam2ego, _ = entry_poses(record["cam_infos"]["CAM_FRONT"])
    T = geometry.rigid_inverse(cam2ego) @ radar2ego
    e_matrix = write_json(tmp_path / "E_matrix.json", {"matrix": T.tolist()})
    q = Quaternion(matrix=T[:3, :3])
    e_quat = write_json(tmp_path / "E_quat.json", {"rotation": list(q.elements),
                                                   "translation": T[:3, 3].tolist()})
    devkit_xyz = RadarPointCloud.from_file(str(pcd)).points[:3].T
    cam_xyz = geometry.transform_points(T, devkit_xyz)
    np.save(tmp_path / "radar_cam.npy", cam_xyz)
    image, _ = small_image(tmp_path)
    k_path = write_json(tmp_path / "K.json", {"camera_intrinsic": K_SMALL})
    cfg = Config()
    base = frame_sample(own_frame(image, tmp_path / "radar_cam.npy", k_path), cfg)
    assert base["radar_count"] == len(devkit_xyz) > 10 and base["radar_map"].any()
    for e_path in (e_matrix, e_quat):
        other = frame_sample(own_frame(image, pcd, k_path, e_path), cfg)
        np.testing.assert_array_equal(other["radar_map"], base["radar_map"])
        np.testing.assert_allclose(other["radar_pts"], base["radar_pts"], atol=1e-5)
        assert other["radar_count"] == base["radar_count"]
    with pytest.raises(PredictInputError, match=r"radar frame: pass --extrinsics"):
        own_frame(image, pcd, k_path)


@pytest.mark.parametrize("case, pattern", [
    ("points_4col", r"pts\.npy holds a float64 array of shape \(5, 4\); expected N x 3"),
    ("points_1d", r"pts\.npy holds a float64 array of shape \(6,\); expected N x 3"),
    ("points_nan", r"pts\.npy: 1 of 2 rows are not finite; drop them"),
    ("no_intrinsic_key", r"K\.json has no key 'camera_intrinsic' \(keys: \['K'\]\); write"),
    ("bad_intrinsic_shape", r"K\.json: 'camera_intrinsic' must be 3 x 3"),
    ("k_other_size", r"principal point \(800\.0, 450\.0\) lies outside the 400 x 225 image.*scale fx, cx"),
    ("bad_image", r"image .*broken\.jpg is not an image OpenCV can read"),
    ("missing_image", r"image .*absent\.jpg not found; check --image"),
    ("bad_quaternion", r"E\.json: rotation \[1\.0, 1\.0, 0\.0, 0\.0\] is not a unit quaternion"),
])
def test_clear_errors(case, pattern, ckpt, tmp_path):
    image, _ = small_image(tmp_path)
    pts, k, extra = np.ones((3, 3)), {"camera_intrinsic": K_SMALL}, []
    if case == "points_4col":
        pts = np.ones((5, 4))
    elif case == "points_1d":
        pts = np.ones(6)
    elif case == "points_nan":
        pts = np.array([[1.0, 0.0, 5.0], [np.nan, 0.0, 5.0]])
    elif case == "no_intrinsic_key":
        k = {"K": K_SMALL}
    elif case == "bad_intrinsic_shape":
        k = {"camera_intrinsic": [[200.0, 0.0, 200.0], [0.0, 200.0, 112.5]]}
    elif case == "k_other_size":
        k = {"camera_intrinsic": [[1266.0, 0, 800.0], [0, 1266.0, 450.0], [0, 0, 1]]}
    elif case == "bad_image":
        image = tmp_path / "broken.jpg"
        image.write_text("not a jpeg")
    elif case == "missing_image":
        image = tmp_path / "absent.jpg"
    elif case == "bad_quaternion":
        extra = ["--extrinsics", str(write_json(tmp_path / "E.json", {"rotation": [1.0, 1.0, 0.0, 0.0],
                                                                      "translation": [0, 0, 0]}))]
    np.save(tmp_path / "pts.npy", pts)
    write_json(tmp_path / "K.json", k)
    with pytest.raises(SystemExit) as exc:
        predict.main(["-m", str(ckpt), "--image", str(image), "--radar-points", str(tmp_path / "pts.npy"),
                      "--intrinsics", str(tmp_path / "K.json"), "--out", str(tmp_path / "out"), *extra])
    assert re.search(pattern, str(exc.value)), str(exc.value)
    assert not (tmp_path / "out").exists()


def test_bad_radar_file_or_nonfinite_prediction_writes_nothing(ckpt, real_records, real_root, tmp_path):
    """A nuScenes frame whose radar file has NaN points, and weights that give a NaN depth: one
    line each, no all-zero PNG."""
    from test_dataset import corrupt, small_root
    infos = small_root(tmp_path / "root", real_root, real_records, n=1)
    radar = real_records[0]["radar_infos"]["RADAR_FRONT"][0]["data_path"]
    corrupt(tmp_path / "root" / radar, "radar_nan")
    with pytest.raises(SystemExit, match=f"error: radar point cloud .*{radar} is corrupt: 5 of"):
        predict.main(["-m", str(ckpt), "--data-root", str(tmp_path / "root"), "--infos", str(infos),
                      "--index", "0", "--out", str(tmp_path / "out")])
    state = torch.load(ckpt)["network"]
    state = {k: v.float().fill_(float("nan")) if k.endswith("running_var") else v for k, v in state.items()}
    torch.save({"network": state}, tmp_path / "diverged.ckpt")
    image, _ = small_image(tmp_path)
    np.save(tmp_path / "pts.npy", np.ones((3, 3)))
    write_json(tmp_path / "K.json", {"camera_intrinsic": K_SMALL})
    with pytest.raises(SystemExit, match=r"error: the prediction for street has \d+ non-finite pixels; "
                                         "nothing written"):
        predict.main(["-m", str(tmp_path / "diverged.ckpt"), "--image", str(image), "--radar-points",
                      str(tmp_path / "pts.npy"), "--intrinsics", str(tmp_path / "K.json"),
                      "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


# ---- ONNX export -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(ckpt, tmp_path_factory):
    """Export once at 225 x 400 with --check: (file, exit status, printed text, the warnings and
    log records the export raised, as "Category: message" lines)."""
    for module in ("onnx", "onnxruntime", "onnxscript"):
        pytest.importorskip(module)
    out = tmp_path_factory.mktemp("onnx") / "spade.onnx"
    printed, records = io.StringIO(), []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: records.append(f"{record.levelname}: {record.getMessage()}")
    logging.getLogger().addHandler(handler)
    try:
        with contextlib.redirect_stdout(printed), warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            code = export_onnx.main(["-m", str(ckpt), "--height", str(H), "--width", str(W),
                                     "--out", str(out), "--check"])
    finally:
        logging.getLogger().removeHandler(handler)
    records += [f"{w.category.__name__}: {w.message}" for w in seen]
    return out, code, printed.getvalue(), records


def test_onnx_export_prints_no_known_noise(exported):
    """The exporter's messages that do not concern a SpaDe user (models/onnx_export.py
    EXPORT_NOISE_*: torchvision ops it skips, a deprecation inside torch, the shared batch axis)
    are filtered where they arise; others would still show."""
    noise = ("torchvision is not installed", "LeafSpec", "will not be used, since it shares")
    assert not [r for r in exported[3] if any(n in r for n in noise)], exported[3]


def test_onnx_export_and_check(exported):
    import onnx
    out, code, printed, _ = exported
    assert code == 0 and "check passed" in printed
    assert 0 < float(re.search(r"max \|ONNX - PyTorch\| = (\S+) m", printed).group(1)) < 1e-3
    graph = onnx.load(str(out))
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
            for i in list(graph.graph.input) + list(graph.graph.output)}
    assert dims == {"img": ["batch", 3, H, W], "radar_map": ["batch", 1, H, W],
                    "radar_pts": ["batch", 200, 3], "radar_count": ["batch"],
                    "depth": ["batch", 1, H, W]}
    scatters = [n for n in graph.graph.node if n.op_type == "ScatterElements"]   # radar downscale
    assert scatters and all(a.s == b"max" for n in scatters for a in n.attribute if a.name == "reduction")


def test_onnx_check_fails_on_mismatch(exported, ckpt, capsys):
    out = exported[0]
    code = export_onnx.main(["-m", str(ckpt), "--height", str(H), "--width", str(W), "--out", str(out),
                             "--check", "--skip-export", "--tolerance-m", "0"])
    assert code == 1 and "check FAILED" in capsys.readouterr().out


def test_onnx_zero_radar_points(exported, model):
    """The batch's second frame has no radar point (count 0, empty map): finite, equal to
    PyTorch, and different from the frame with radar (the radar inputs reach the graph)."""
    from datasets.frames import check_inputs
    from models.onnx_export import INPUT_NAMES, run_onnx
    inputs = check_inputs(H, W)
    assert inputs["radar_count"].tolist() == [60, 0] and not inputs["radar_map"][1].any()
    depth = run_onnx(exported[0], inputs)
    assert np.isfinite(depth).all() and np.abs(depth[0] - depth[1]).max() > 1e-3
    with torch.inference_mode():
        want = model.predict(*(inputs[k][1:] for k in INPUT_NAMES))
    np.testing.assert_allclose(depth[1:], want.numpy(), atol=1e-3)
