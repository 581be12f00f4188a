"""Evaluation per camera: the released per-image protocol pooled over every (key frame,
camera) image and summarised per camera; per-camera numbers checked by hand and against an
evaluation of each camera's images alone; the CSV's camera column read back; the front-only
console table unchanged; a surround eval.py run on the real slice."""
import csv
import json
import math

import numpy as np
import pytest
import torch
from torch.utils.data import Subset

import eval as eval_script
from models import SpaDe
from models.baselines import RadarColumnDepth
from utils.checkpoint import save_checkpoint
from utils.config import NUSCENES_CAMERAS, NUSCENES_RADARS, config_to_dict, load_config
from utils.engine.evaluate import evaluate, format_table, write_results
from utils.engine.evaluators import DenseEvaluator, LidarEvaluator, PredictionWriter
from utils.jsonio import dumps

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RANGES = (50, 80)
PRED_M = 10.0                     # the fake prediction, everywhere (CAM_BACK_LEFT: one pixel 70 m)
# LiDAR truth (2 x 2, m) of two key frames x three cameras, record-major as the dataset orders them
CAMERAS = ("CAM_FRONT", "CAM_BACK", "CAM_BACK_LEFT")
LIDAR_M = {("CAM_FRONT", 0): [[9, 0], [0, 0]], ("CAM_BACK", 0): [[12, 16], [0, 0]],
           ("CAM_BACK_LEFT", 0): [[0, 0], [0, 0]], ("CAM_FRONT", 1): [[7, 0], [0, 60]],
           ("CAM_BACK", 1): [[0, 0], [0, 90]], ("CAM_BACK_LEFT", 1): [[0, 0], [0, 0]]}


def fake_samples(cameras=CAMERAS, with_camera=True):
    """Eval-mode samples (2 x 2 images) of two key frames x `cameras`, with dense truth."""
    rng = np.random.default_rng(0)
    samples = []
    for keyframe in (0, 1):
        for camera in cameras:
            sample = {"index": np.int64(len(samples)), "name": f"n0{keyframe}__{camera}__frame{keyframe}",
                      "img": np.zeros((3, 2, 2), np.float32), "radar_map": np.zeros((1, 2, 2), np.float32),
                      "lidar_map": np.asarray(LIDAR_M[camera, keyframe], np.float32)[None],
                      "dense_depth": rng.uniform(5, 40, (1, 2, 2)).astype(np.float32)}
            samples.append({**sample, "camera": camera} if with_camera else sample)
    return samples


def predict(batch):
    pred_m = torch.full_like(batch["lidar_map"], PRED_M)
    pred_m[[c == "CAM_BACK_LEFT" for c in batch.get("camera", [])], 0, 0, 0] = 70.0   # saturates the PNG
    return pred_m


def run(samples, pred_dir, batch_size=4):
    evaluators = [LidarEvaluator(RANGES), DenseEvaluator(RANGES), PredictionWriter(pred_dir)]
    return evaluate(predict, samples, evaluators, batch_size=batch_size, progress=False)


def pooled(summary):
    """The summary without what is pooled only (`seconds`, `per_camera`), as strict JSON text."""
    return dumps({k: v for k, v in summary.items() if k not in ("seconds", "per_camera")})


def test_per_camera_numbers_by_hand(tmp_path):
    """Batches of 4 straddle the cameras; |10 - truth| per LiDAR pixel, mean over pixels, then
    over the images with truth in range (m -> mm)."""
    summary = run(fake_samples(), tmp_path / "pred")["summary"]
    front, back, left = (summary["per_camera"][c] for c in CAMERAS)
    assert list(summary["per_camera"]) == list(CAMERAS)
    # CAM_FRONT: image 0 errs 1 m; image 1 errs 3 m (0-50) and 3, 50 m (0-80)
    assert front["mae_mm"]["50"] == pytest.approx(1000 * (1 + 3) / 2)
    assert front["mae_mm"]["80"] == pytest.approx(1000 * (1 + (3 + 50) / 2) / 2)
    assert front["rmse_mm"]["80"] == pytest.approx(1000 * (1 + math.sqrt((9 + 2500) / 2)) / 2)
    # CAM_BACK: image 0 errs 2, 6 m; image 1's only point (90 m) is out of range: empty
    assert back["mae_mm"] == pytest.approx({"50": 4000.0, "80": 4000.0})
    assert back["rmse_mm"]["50"] == pytest.approx(1000 * math.sqrt((4 + 36) / 2))
    assert back["images"] == {"50": 1, "80": 1} and back["empty"] == {"50": 1, "80": 1}
    # CAM_BACK_LEFT: no truth at all
    assert all(math.isnan(v) for v in left["mae_mm"].values()) and left["empty"] == {"50": 2, "80": 2}
    # pooled over all six images: the released per-image mean
    assert summary["mae_mm"]["50"] == pytest.approx(1000 * (1 + 4 + 3) / 3)
    assert summary["num_samples"] == 6 == sum(s["num_samples"] for s in (front, back, left))
    assert summary["saved_pixels_saturated"] == left["saved_pixels_saturated"] == 2
    assert "saved_pixels_saturated" not in front and "per_camera" not in front
    assert sorted(p.name for p in (tmp_path / "pred").glob("*.png")) == sorted(
        f"{s['name']}.png" for s in fake_samples())                   # one file per (key frame, camera)


def test_per_camera_equals_an_evaluation_of_that_camera_alone(tmp_path):
    """Every key of each camera's summary (protocol, dense, leakage, saturation) as computed
    from that camera's images alone."""
    samples = fake_samples()
    summary = run(samples, tmp_path / "all")["summary"]
    for camera in CAMERAS:
        own = Subset(samples, [i for i, s in enumerate(samples) if s["camera"] == camera])
        alone = run(own, tmp_path / camera, batch_size=3)["summary"]
        assert pooled(summary["per_camera"][camera]) == pooled(alone)
        assert list(alone["per_camera"]) == [camera]


def test_csv_camera_column_and_strict_json(tmp_path):
    result = run(fake_samples(), tmp_path / "pred")
    csv_path = write_results(result, tmp_path / "results.json")
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames[:3] == ["index", "name", "camera"]
    assert [r["camera"] for r in rows] == list(CAMERAS) * 2
    assert [r["index"] for r in rows] == [str(i) for i in range(6)]
    assert float(rows[1]["mae_50_mm"]) == pytest.approx(4000.0) and rows[2]["mae_50_mm"] == "nan"
    written = json.loads((tmp_path / "results.json").read_text(), parse_constant=pytest.fail)
    left = written["per_camera"]["CAM_BACK_LEFT"]
    assert left["mae_mm"] == {"50": None, "80": None} and left["num_samples"] == 2
    assert written["nulls"]["/per_camera/CAM_BACK_LEFT/mae_mm/80"].startswith(
        "undefined: no ground-truth pixel in this range")
    assert written["per_camera"]["CAM_FRONT"]["mae_mm"]["50"] == pytest.approx(2000.0)


def test_table_has_a_row_per_camera(tmp_path):
    text = format_table(run(fake_samples(), tmp_path / "pred")["summary"], title="t")
    lines = text.splitlines()
    mae = lines.index(next(line for line in lines if line.startswith("MAE (mm)")))
    assert lines[mae + 1].split() == ["CAM_FRONT", "2000.0", "13750.0"]
    assert lines[mae + 2].split() == ["CAM_BACK", "4000.0", "4000.0"]
    assert lines[mae + 3].split() == ["CAM_BACK_LEFT", "n/a", "n/a"]
    assert lines[mae + 4].startswith("RMSE (mm)") and lines[mae + 5].split()[0] == "CAM_FRONT"
    assert "CAM_BACK_LEFT MAE (mm) 0-50 m" in text
    assert lines[-1] == "6 images (CAM_FRONT 2, CAM_BACK 2, CAM_BACK_LEFT 2)"


def test_one_camera_per_camera_is_the_pooled_summary(tmp_path):
    samples = fake_samples(cameras=("CAM_FRONT",))
    summary = run(samples, tmp_path / "pred", batch_size=1)["summary"]
    assert list(summary["per_camera"]) == ["CAM_FRONT"]
    assert pooled(summary["per_camera"]["CAM_FRONT"]) == pooled(summary)
    assert summary["mae_mm"]["50"] == pytest.approx(2000.0)


def test_samples_without_camera_have_no_breakdown(tmp_path):
    result = run(fake_samples(with_camera=False), tmp_path / "pred")
    assert "per_camera" not in result["summary"] and list(result["rows"][0])[:3] == ["index", "name", "mae_50_mm"]


# format_table's text for this summary before evaluation per camera existed (the released pair's
# console table must not change)
FRONT_ONLY_TABLE = """t
range               0-50 m      0-80 m
MAE (mm)            2666.7         n/a
RMSE (mm)           2824.0      9876.5
dense MAE              1.0         2.0
dense RMSE             3.0         4.0
n/a (MAE (mm) 0-80 m): no ground-truth pixel in this range in any image
LDL: MAE on LiDAR pixels 5.0 mm, elsewhere 6.0 mm (ratio 1.20); stripe index n/a (the prediction (or \
the truth) has no horizontal gradient energy to divide by: a prediction constant along every row, like \
the row-median baseline's one depth per row, has no LiDAR-row pattern to measure)
6 images"""


def test_front_only_console_table_is_unchanged():
    nan = float("nan")
    summary = {"num_samples": 6, "mae_mm": {"50": 2666.6666, "80": nan}, "rmse_mm": {"50": 2824.0, "80": 9876.54},
               "images": {"50": 3, "80": 3}, "empty": {"50": 3, "80": 3},
               "dense": {"mae_mm": {"50": 1.0, "80": 2.0}, "rmse_mm": {"50": 3.0, "80": 4.0}},
               "ldl": {"mae_hit_mm": 5.0, "mae_miss_mm": 6.0, "miss_hit_ratio": 1.2, "stripe_index": nan}}
    assert format_table(summary, title="t") == FRONT_ONLY_TABLE
    assert format_table({**summary, "per_camera": {"CAM_FRONT": summary}}, title="t") == FRONT_ONLY_TABLE


def test_surround_eval_on_the_real_slice(real_root, real_infos, tmp_path, monkeypatch):
    """eval.py with data.cameras=all data.radars=all over a checkpoint whose config says
    CAM_FRONT / RADAR_FRONT: the command line wins; the first 10 key frames x 6 cameras scored
    (the radar baseline stands in for the network, to keep it cheap)."""
    cfg = load_config(None, [f"data.root={real_root}"])
    assert cfg.data.cameras == ["CAM_FRONT"] and cfg.data.radars == ["RADAR_FRONT"]
    ckpt = save_checkpoint(tmp_path / "ours.ckpt", SpaDe(), config=config_to_dict(cfg))
    monkeypatch.setattr(eval_script, "model_predictor", lambda model, optimized: RadarColumnDepth(20.0))
    out = tmp_path / "results.json"
    summary = eval_script.main(["-m", str(ckpt), "--data-root", str(real_root), "--infos", str(real_infos),
                                "--out", str(out), "--batch-size", "4", "--max-samples", "60", "--quiet",
                                "data.num_workers=0", "data.cameras=all", "data.radars=all"])
    written = json.loads(out.read_text(), parse_constant=pytest.fail)
    assert written["config"]["data"]["cameras"] == list(NUSCENES_CAMERAS)
    assert written["config"]["data"]["radars"] == list(NUSCENES_RADARS)
    per_camera = written["per_camera"]
    assert list(per_camera) == list(NUSCENES_CAMERAS)
    assert summary["num_samples"] == written["num_samples"] == 60
    assert all(per_camera[c]["num_samples"] == 10 for c in NUSCENES_CAMERAS)
    for r in ("50", "70", "80"):
        assert sum(per_camera[c]["images"][r] + per_camera[c]["empty"][r] for c in NUSCENES_CAMERAS) == 60
        assert sum(per_camera[c]["images"][r] for c in NUSCENES_CAMERAS) == written["images"][r]
        weighted = sum(per_camera[c]["mae_mm"][r] * per_camera[c]["images"][r] for c in NUSCENES_CAMERAS)
        assert weighted / written["images"][r] == pytest.approx(written["mae_mm"][r], rel=1e-9)
    with open(out.with_suffix(".csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["camera"] for r in rows] == list(NUSCENES_CAMERAS) * 10          # record-major
    assert len({r["name"] for r in rows}) == 60
    assert all(r["name"].split("__")[1] == r["camera"] for r in rows)          # nuScenes basenames
    for camera in NUSCENES_CAMERAS:                    # each camera's mean from its own CSV rows
        own = [float(r["mae_80_mm"]) for r in rows if r["camera"] == camera and r["mae_80_mm"] != "nan"]
        assert per_camera[camera]["mae_mm"]["80"] == pytest.approx(np.mean(own), rel=1e-9)
