"""Dense labels accumulated from LiDAR sweeps (datasets/dense_labels.py, tools/make_dense_labels.py)
against the tiny world's exact truth, and training on label maps (data.label_kind / label_dir)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import yaml

from datasets.dense_labels import (SOURCE_MOVING_KEY, SOURCE_MOVING_OTHER, SOURCE_STATIC, build_label,
                                   fill_holes, load_recipe)
from datasets.infos import infos_filename, load_infos
from datasets.io import read_depth_png, read_lidar_points, resolve_data_path
from datasets.label_maps import MissingLabelError
from datasets.lidar_sweeps import MovingBoxes, sweep_plan
from datasets.nuscenes_dataset import RadarCameraDataset
from datasets import label_builder
from tools import make_dense_labels
from utils.config import load_config, normalized_config_dict
from tiny_world import overrides, tiny_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from nuscenes.nuscenes import NuScenes
    root = tiny_world(tmp_path_factory.getbasetemp())
    return root, NuScenes("v1.0-trainval", str(root), verbose=False), load_infos(root / infos_filename("train"))


def labels(world, preset, *recipe_overrides):
    """{frame name: (AccumulatedLabel, exact truth)} of the tiny world's train key frames."""
    root, nusc, records = world
    recipe = load_recipe(preset, list(recipe_overrides))
    moving = MovingBoxes(nusc, recipe.moving_speed_mps)
    out = {}
    for record in records:
        plan = sweep_plan(nusc, record, recipe.sweeps_before, recipe.sweeps_after)
        label = build_label(plan, lambda p: read_lidar_points(resolve_data_path(root, p)),
                            label_builder.camera_of(record, root), recipe,
                            {s.sample_data_token: moving(s.sample_data_token) for s in plan.sweeps})
        name = label_builder.frame_name(record)
        out[name] = label, read_depth_png(root / "depth_dense" / f"{name}.png")
    return out


def errors(built, select):
    """|label - truth| (m) over the labelled pixels with truth that `select(label)` picks, pooled."""
    errs = [np.abs(lab.depth_m - truth)[(lab.depth_m > 0) & (truth > 0) & select(lab)]
            for lab, truth in built.values()]
    return np.concatenate(errs)


@pytest.fixture(scope="module")
def static_world(world):
    return labels(world, "accum_static")


def test_static_surfaces_agree_moving_objects_smear(static_world):
    static = errors(static_world, lambda lab: lab.source == SOURCE_STATIC)
    smear = errors(static_world, lambda lab: lab.source == SOURCE_MOVING_OTHER)
    assert len(static) > 10000 and np.median(static) < 0.1          # measured 0.07 m
    assert len(smear) > 1000 and np.median(smear) > 1.0             # measured 2.5 m: moved objects


def test_moving_object_removal(world, static_world):
    removed = labels(world, "accum_boxes")
    assert not any((lab.source == SOURCE_MOVING_OTHER).any() for lab, _ in removed.values())
    on_objects = errors(removed, lambda lab: lab.source == SOURCE_MOVING_KEY)
    assert len(on_objects) > 500 and np.median(on_objects) < 0.2   # the key frame's own points
    kept_far = np.mean(errors(static_world, lambda lab: lab.source != SOURCE_STATIC) > 1.0)
    assert np.mean(on_objects > 1.0) < 0.5 * kept_far


def test_more_sweeps_more_labelled_pixels(world, static_world):
    counts = [sum(int((lab.depth_m > 0).sum()) for lab, _ in built.values())
              for built in (labels(world, "accum_static", "sweeps_before=0", "sweeps_after=0"),
                            labels(world, "accum_static", "sweeps_before=2", "sweeps_after=2"), static_world)]
    assert counts[0] < counts[1] < counts[2]


def test_fill_holes_bridges_gaps_up_to_the_limit():
    depth = np.zeros((8, 3), np.float32)
    depth[1, 0], depth[4, 0], depth[0, 2], depth[7, 2] = 10.0, 13.0, 2.0, 9.0
    filled = fill_holes(depth, 3)
    np.testing.assert_allclose(filled[1:5, 0], [10, 11, 12, 13])
    assert (filled[:, 2] == depth[:, 2]).all() and (filled[:, 1] == 0).all()   # gap 7 > 3: left
    np.testing.assert_allclose(fill_holes(depth, 7)[:, 2], np.arange(2, 10))


def run_tool(root, infos, label_dir, *extra):
    return make_dense_labels.main(["--data-root", str(root), "--infos", str(infos), "--preset", "accum_boxes",
                                   "--label-dir", str(label_dir), "--no-progress", *extra])


def test_tool_writes_resumes_and_refuses_another_recipe(world, tmp_path, capsys):
    root = world[0]
    folder = tmp_path / "labels"
    summary = run_tool(root, root / infos_filename("val"), folder, "sweeps_before=3", "sweeps_after=3")
    records = [json.loads(line) for line in (folder / "frames.jsonl").read_text().splitlines()]
    assert len(records) == summary["frames"] == 4 and len(list(folder.glob("*.png"))) == 4
    last = records[-1]        # no sweeps after a scene's last key frame in the synthetic world
    assert last["sweep_offsets"] == [-3, -2, -1, 0] and "the chain ends 0 sweep(s) after" in last["shortfall"]
    assert "chain ends 0 sweep(s) after" in capsys.readouterr().out
    assert summary["error"]["mae_mm"] < 1000 and summary["error_smear"]["coverage_pct"] == 0
    png = cv2.imread(str(folder / f"{last['name']}.png"), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint16 and png.shape == (100, 180)
    assert yaml.safe_load((folder / "recipe.yaml").read_text())["recipe"]["sweeps_before"] == 3
    (folder / f"{last['name']}.png").unlink()                    # resumed: only that frame again
    run_tool(root, root / infos_filename("val"), folder, "sweeps_before=3", "sweeps_after=3")
    assert len((folder / "frames.jsonl").read_text().splitlines()) == 5
    with pytest.raises(SystemExit, match="another recipe"):
        run_tool(root, root / infos_filename("val"), folder)


def test_tool_on_the_real_slice_uses_what_exists(real_root, real_records, tmp_path):
    from datasets.infos import save_infos
    infos = tmp_path / "infos.pkl"
    save_infos(real_records[:2], infos)
    summary = run_tool(real_root, infos, tmp_path / "labels")
    records = [json.loads(line) for line in (tmp_path / "labels" / "frames.jsonl").read_text().splitlines()]
    assert summary["frames_short_of_sweeps"] == 2 and "error" not in summary      # no exact truth
    assert all(r["sweep_offsets"] == [0] and "1 of 21 sweeps used" in r["shortfall"] for r in records)
    assert cv2.imread(str(tmp_path / "labels" / f"{records[0]['name']}.png"), -1).shape == (900, 1600)


def test_training_reads_label_maps(world, tmp_path):
    root = world[0]
    folder = tmp_path / "maps"
    folder.mkdir()
    name = label_builder.frame_name(world[2][0])
    label_mm = np.tile(np.linspace(1000, 90000, 180).astype(np.uint16), (100, 1))
    cv2.imwrite(str(folder / f"{name}.png"), label_mm)
    cfg = load_config(None, overrides(root, tmp_path / "run") + [
        "data.label_kind=depth_png", f"data.label_dir={folder}", "data.mask_supervision=false"])
    train = RadarCameraDataset(cfg, cfg.data.train_infos, "train")
    sample = train[0]
    label = sample["lidar_map"][0]
    assert "dense_depth" not in sample and label.max() < 80 and (label > 0).mean() > 0.7
    assert set(np.unique(label[label > 0])) <= set(np.unique(label_mm * np.float32(1e-3)))   # warped nearest
    with pytest.raises(MissingLabelError, match="make_dense_labels"):
        train[1]
    evaluated = RadarCameraDataset(cfg, cfg.data.val_infos, "eval")[0]       # never the label map
    assert evaluated["lidar_map"][0].max() > 0 and (evaluated["lidar_map"][0] > 0).mean() < 0.3


def test_label_config_checks_and_legacy_key(world, tmp_path):
    root = world[0]
    base, val = overrides(root, tmp_path / "run"), root / infos_filename("val")
    with pytest.raises(ValueError, match="data.label_kind=depth_png"):
        RadarCameraDataset(load_config(None, base + ["data.label_dir=depth_dense"]), val, "eval")
    with pytest.raises(ValueError, match="data.label_kind=depth_png needs"):
        RadarCameraDataset(load_config(None, base + ["data.label_kind=depth_png"]), val, "eval")
    legacy = load_config(None, base + ["data.dense_label=true"])         # configs of older checkpoints
    assert (legacy.data.label_kind, legacy.data.label_dir) == ("depth_png", "depth_dense")
    old = {"data": {"dense_label": False, "root": "x"}, "train": {"seed": 3}}
    assert normalized_config_dict(old)["data"]["label_kind"] == "lidar"
    assert normalized_config_dict(old)["train"]["seed"] == 3
