"""eval.py and its engine: released-format checkpoint on the real slice, our format on the tiny
synthetic world (config from the checkpoint, --save-pred round trip, metrics recomputed
independently from the written files), baselines and leakage measures checked by hand."""
import csv
import json
import math
import os
import re

import cv2
import numpy as np
import pytest
import torch

import eval as eval_script
from datasets.infos import save_infos
from datasets.nuscenes_dataset import RadarCameraDataset
from models import SpaDe
from models.baselines import RadarColumnDepth, RowMedianDepth, radar_column_depth
from utils.checkpoint import save_checkpoint
from utils.config import config_to_dict, load_config
from datasets.io import read_depth_png
from utils.engine.evaluate import EvaluationError, collate_same_size, evaluate
from utils.engine.evaluators import evaluators_for
from utils.run_lock import RunLock
from utils.ldl import LeakageMetrics, hit_miss_mae, stripe_terms
from tiny_world import overrides, tiny_world

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return tiny_world(tmp_path_factory.getbasetemp())


def _mae_by_numpy(pred_m, gt_m, max_m):
    valid = (gt_m > 0) & (gt_m <= max_m)
    return float(np.abs(pred_m[valid].astype(np.float64) - gt_m[valid]).mean())


def test_released_checkpoint_on_the_real_slice(real_root, real_infos, tmp_path):
    torch.manual_seed(0)
    ckpt = tmp_path / "released.pth"
    torch.save({"network": SpaDe().state_dict()}, ckpt)       # the released format
    out = tmp_path / "results.json"
    summary = eval_script.main(["-m", str(ckpt), "--data-root", str(real_root), "--infos",
                                str(real_infos), "--out", str(out), "--batch-size", "4",
                                "--quiet", "data.num_workers=0"])
    written = json.loads(out.read_text())
    assert written["num_samples"] == summary["num_samples"] == 40
    for key in ("mae_mm", "rmse_mm"):
        assert set(written[key]) == {"50", "70", "80"}
        assert all(math.isfinite(v) and v > 0 for v in written[key].values())
    assert written["mae_mm"]["50"] <= written["rmse_mm"]["50"]
    rows = list(csv.DictReader(open(out.with_suffix(".csv"))))
    assert len(rows) == 40 and all(math.isfinite(float(r["mae_80_mm"])) for r in rows)
    assert all(written["empty"][r] == 0 for r in ("50", "70", "80"))
    assert "dense" not in written                        # no dense truth on real data


def test_radar_baseline_covers_all_40_real_samples(real_root, real_infos):
    cfg = load_config(None, [f"data.root={real_root}"])
    dataset = RadarCameraDataset(cfg, real_infos, mode="eval")
    result = evaluate(RadarColumnDepth(fallback_m=20.0), dataset, evaluators_for(real_root, (50, 70, 80)),
                      batch_size=4, progress=False)
    summary = result["summary"]
    assert summary["num_samples"] == len(dataset) == 40
    assert all(math.isfinite(summary[k][r]) for k in ("mae_mm", "rmse_mm") for r in ("50", "70", "80"))
    sample = dataset[7]
    pred = radar_column_depth(torch.from_numpy(sample["radar_map"])[None], 20.0)[0, 0].numpy()
    row = next(r for r in result["rows"] if r["name"] == sample["name"])
    assert row["mae_80_mm"] == pytest.approx(1000 * _mae_by_numpy(pred, sample["lidar_map"][0], 80), rel=1e-9)


def test_our_checkpoint_save_pred_round_trip_and_metrics(world, tmp_path):
    """Config from the checkpoint; PNGs equal the reference forward within 1 mm; the JSON's
    metrics recomputed from the PNGs and the LiDAR maps; dense and leakage measures present."""
    cfg = load_config(None, overrides(world, tmp_path / "run"))
    torch.manual_seed(1)
    model = SpaDe().eval()
    ckpt = save_checkpoint(tmp_path / "ours.ckpt", model, config=config_to_dict(cfg))
    out, pred_dir, vis_dir = tmp_path / "res.json", tmp_path / "pred", tmp_path / "vis"
    eval_script.main(["-m", str(ckpt), "--out", str(out), "--save-pred", str(pred_dir),
                      "--save-vis", str(vis_dir), "--vis-every", "2", "--vis-scale", "0.5",
                      "--batch-size", "3", "--quiet"])
    dataset = RadarCameraDataset(cfg, cfg.data.val_infos, mode="eval")
    maes = []
    for i in range(len(dataset)):
        s = dataset[i]
        b = {k: torch.as_tensor(v)[None] for k, v in s.items() if k not in ("name", "camera")}
        with torch.inference_mode():
            ref = model.predict(b["img"], b["radar_map"], b["radar_pts"], b["radar_count"],
                                optimized=False)[0, 0].numpy()
        saved = read_depth_png(pred_dir / f"{s['name']}.png")
        assert saved.shape == ref.shape and ref.max() > 1.0
        assert np.abs(saved - np.minimum(ref, 65.535)).max() <= 1e-3
        maes.append(_mae_by_numpy(saved, s["lidar_map"][0], 80))
        vis = cv2.imread(str(vis_dir / f"{s['name']}.png"))
        if i % 2:                       # --vis-every 2: panels of samples 0 and 2 only
            assert vis is None
        else:                           # two tiles per row, at --vis-scale 0.5
            assert vis is not None and vis.shape[1] == ref.shape[1]
    written = json.loads(out.read_text())
    assert written["num_samples"] == len(dataset) == 4
    assert written["config"]["data"] == config_to_dict(cfg)["data"] and written["config"]["eval"]["batch_size"] == 3
    assert written["provenance"]["torch"] == torch.__version__
    assert "git_commit" in written["provenance"] and not list(pred_dir.glob(".*"))   # no temp, no lock
    assert written["mae_mm"]["80"] == pytest.approx(1000 * np.mean(maes), abs=1.0)
    assert list(written["per_camera"]) == ["CAM_FRONT"]
    assert written["per_camera"]["CAM_FRONT"]["mae_mm"] == written["mae_mm"]
    assert [r["camera"] for r in csv.DictReader(open(out.with_suffix(".csv")))] == ["CAM_FRONT"] * 4
    assert set(written["dense"]["mae_mm"]) == {"50", "70", "80"}
    assert set(written["ldl"]) == {"mae_hit_mm", "mae_miss_mm", "miss_hit_ratio", "stripe_index"}


def test_leakage_measures_by_hand():
    dense = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [0.0, 8.0, 90.0]])[None, None]
    lidar = torch.zeros_like(dense)
    lidar[0, 0, 0, :] = dense[0, 0, 0, :]                    # the top row is "hit"
    pred = dense + torch.tensor([[0.5, -0.5, 0.5], [2.0, -1.0, 1.0], [7.0, 3.0, 9.0]])[None, None]
    out = hit_miss_mae(pred, dense, lidar, max_depth_m=80.0)
    assert out["mae_hit_m"].item() == pytest.approx(0.5)
    assert out["mae_miss_m"].item() == pytest.approx((2 + 1 + 1 + 3) / 4)   # 0 and 90 m left out

    ramp = torch.arange(20.0)[None, :] + 2 * torch.arange(10.0)[:, None] + 1   # 10 x 20
    truth = ramp[None, None]
    assert stripe_terms(truth.clone(), truth, 80.0)["stripe_index"].item() == pytest.approx(1.0)
    striped = truth + 3.0 * (torch.arange(10.0) % 2)[None, None, :, None]       # rows alternate
    terms = stripe_terms(striped, truth, 80.0)
    # truth: E_v = 9*20*2^2, E_h = 10*19*1; striped rows: vertical steps 2 +- 3 -> 5 or -1
    e_v = 20 * (5 * 25 + 4 * 1)
    expected = (e_v / 190.0) / (720.0 / 190.0)
    assert terms["stripe_index"].item() == pytest.approx(expected)
    metrics = LeakageMetrics(80.0)
    metrics.update(striped, truth, torch.zeros_like(truth))
    assert metrics.summary()["stripe_index"] == pytest.approx(expected)


def test_baselines_by_hand():
    radar = torch.zeros(2, 1, 3, 7)
    radar[0, 0, :, 1], radar[0, 0, :, 5] = 10.0, 30.0
    depth = radar_column_depth(radar, fallback_m=4.0)
    assert depth[0, 0, 2].tolist() == [10, 10, 10, 10, 30, 30, 30]    # ties go left (column 3)
    assert depth[1].eq(4.0).all() and depth.shape == radar.shape

    maps = np.zeros((3, 4, 6), np.float32)
    maps[0, 1, :3] = [10.025, 20.025, 30.025]
    maps[1, 1, 0], maps[2, 1, 5] = 40.025, 50.025          # row 1: 5 values, median 30.025
    maps[0, 3, 2] = 7.025                                 # row 3: one value
    rows = RowMedianDepth(4).fit(maps).row_m
    assert rows.tolist() == pytest.approx([30.025, 30.025, 30.025, 7.025])   # empty rows: nearest
    assert RowMedianDepth(4).fit(maps)({"img": torch.zeros(2, 3, 4, 6)}).shape == (2, 1, 4, 6)


# ---- faults: each one line (SystemExit naming the file or flag), checked before the model runs ----
@pytest.fixture(scope="module")
def ours(world, tmp_path_factory):
    """A checkpoint of ours (random weights, the tiny world's config)."""
    path = tmp_path_factory.mktemp("ours") / "ours.ckpt"
    torch.manual_seed(1)
    save_checkpoint(path, SpaDe(), config=config_to_dict(load_config(None, overrides(world, path.parent))))
    return path


def test_output_faults_fail_before_the_evaluation(ours, tmp_path, monkeypatch, capsys):
    """--out X.csv (the CSV would overwrite the JSON), an --out that cannot be written, an
    output another eval.py holds: one line each, before any sample is evaluated."""
    def no_evaluation(*args, **kwargs):
        raise AssertionError("evaluation started")
    monkeypatch.setattr(eval_script, "evaluate", no_evaluation)
    with pytest.raises(SystemExit):
        eval_script.main(["-m", str(ours), "--out", str(tmp_path / "r.csv")])
    assert "--out: summary path" in capsys.readouterr().err and "r.json" not in str(list(tmp_path.iterdir()))
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit, match=f"error: cannot write --out {tmp_path / 'file/r.json'}"):
        eval_script.main(["-m", str(ours), "--out", str(tmp_path / "file" / "r.json")])
    with RunLock(tmp_path / "pred" / ".lock", "x", "y"):
        with pytest.raises(SystemExit, match=f"error: --save-pred {tmp_path / 'pred'} is in use by another "
                                             f"run \\(pid {os.getpid()}"):
            eval_script.main(["-m", str(ours), "--out", str(tmp_path / "r.json"), "--save-pred",
                              str(tmp_path / "pred")])
    assert not (tmp_path / "r.json.lock").exists()       # the locks taken so far are released


def test_empty_info_file_and_bad_radar_are_one_line(ours, real_root, real_records, tmp_path):
    save_infos([], tmp_path / "empty.pkl")
    with pytest.raises(SystemExit, match=f"error: info file {tmp_path / 'empty.pkl'} holds no records"):
        eval_script.main(["-m", str(ours), "--infos", str(tmp_path / "empty.pkl"), "--quiet"])
    from test_dataset import corrupt, small_root
    infos = small_root(tmp_path / "root", real_root, real_records, n=1)
    radar = real_records[0]["radar_infos"]["RADAR_FRONT"][0]["data_path"]
    corrupt(tmp_path / "root" / radar, "radar_nan")
    with pytest.raises(SystemExit) as exc:               # raised in a loader worker: still one line
        eval_script.main(["-m", str(ours), "--infos", str(infos), "--data-root", str(tmp_path / "root"),
                          "--quiet", "data.num_workers=1"])
    assert re.fullmatch(rf"error: radar point cloud \S+{re.escape(radar)} is corrupt: 5 of \d+ points have "
                        "non-finite coordinates; re-download it", exc.value.code), exc.value.code


def test_nonfinite_prediction_and_mixed_sizes_name_the_image(world):
    cfg = load_config(None, overrides(world, "unused"))
    dataset = RadarCameraDataset(cfg, cfg.data.val_infos, mode="eval")

    def nan_at_third(batch):
        depth = batch["radar_map"].clone()
        depth[batch["index"] == 2] = float("nan")
        return depth
    with pytest.raises(EvaluationError, match=f"the prediction for {dataset[2]['name']} \\(sample 2\\) has "
                                              f"{100 * 180} non-finite pixels"):
        evaluate(nan_at_third, dataset, evaluators_for(cfg.data.root, (80,)), batch_size=2, progress=False)
    small = {**dataset[1], "img": dataset[1]["img"][:, :50]}
    with pytest.raises(EvaluationError, match=f"{dataset[0]['name']} 100x180, {small['name']} 50x180\\); "
                                              "evaluate with --batch-size 1"):
        collate_same_size([dataset[0], small])
