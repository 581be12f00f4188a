"""The "does sparse beat dense?" suite (tools/science.py, utils/engine/tables.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from utils.engine.tables import cell, noise_markdown, table_markdown, welch
from tiny_world import overrides, tiny_world

REPO = Path(__file__).resolve().parents[1]


def run(mae80, dense80=None):
    summary = {"mae_mm": {"50": mae80 - 500, "70": mae80 - 200, "80": mae80},
               "rmse_mm": {"50": 2 * mae80, "70": 2 * mae80, "80": 2 * mae80}}
    if dense80 is not None:
        summary["dense"] = {"mae_mm": {"80": dense80}}
        summary["ldl"] = {"mae_hit_mm": 1.0, "mae_miss_mm": 2.0, "miss_hit_ratio": 2.0, "stripe_index": 1.5}
    return summary


def test_cells_and_noise_verdicts():
    assert cell([1000.0, 1100.0, 1200.0]) == "1100 ± 100" and cell([5.0]) == "5" and cell([]) == "n/a"
    gap, half = welch([10.0, 11.0, 12.0], [0.0, 1.0, 2.0])
    assert gap == 10.0 and 2.0 < half < 3.0                   # t(0.975, 4) x sqrt(2/3)
    rows = [{"name": "sparse_released", "title": "sparse",
             "runs": [run(4000, 6000), run(4100, 6100), run(4200, 6200)],
             "label_quality": {"mae_mm": 120.0, "far_off_pct": 1.5, "coverage_pct": 4.0}},
            {"name": "far", "title": "far apart", "runs": [run(9000, 6000), run(9100, 6150), run(9200, 6050)],
             "label_quality": None},
            {"name": "single", "title": "one seed", "runs": [run(4000)], "label_quality": None}]
    table = table_markdown(rows)
    assert "| sparse_released | sparse | 3 | 3600 ± 100 | 3900 ± 100 | 4100 ± 100 |" in table
    assert "| 120 | 1.5 % | 4.0 % |" in table and table.count("n/a") >= 3
    noise = noise_markdown(rows, "sparse_released")
    assert "`far`: LiDAR MAE 0-80 m +5000 ± " in noise
    assert "(beyond noise); exact-truth MAE 0-80 m -33 ± " in noise
    assert "(within noise)" in noise and "(one seed: noise unknown)" in noise
    paper = {"mae_mm": {"70": 1822.9, "80": 1927.0}, "rmse_mm": {"70": 4303.6, "80": 4609.6}}
    assert "0-70 m: 1822.9 / 4303.6, 0-80 m: 1927.0 / 4609.6" in table_markdown([{**rows[0], "paper": paper}],
                                                                                with_paper=True)


def test_suite_end_to_end_on_the_tiny_world(tmp_path_factory, tmp_path):
    """`tools/science.py` as a command (its own process: OMP_WAIT_POLICY=PASSIVE takes effect, as
    in `make science`), two rows, one seed, one step each, trained two at a time (--jobs 2)."""
    root = tiny_world(tmp_path_factory.getbasetemp())
    out = tmp_path / "science"
    args = ["--rows", "sparse_released", "dense_accum_static", "--seeds", "1", "--jobs", "2", "--out", str(out),
            *overrides(root, tmp_path / "unused"), "train.max_steps=1", "train.val_every=0",
            "data.mask_supervision=false", "loss.mask_weight=0", "train.image_every=0"]
    done = subprocess.run([sys.executable, str(REPO / "tools" / "science.py"), *args], capture_output=True,
                          text=True, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "table.json").read_text())
    assert [r["name"] for r in results] == ["sparse_released", "dense_accum_static"]
    assert all(len(r["runs"]) == 1 and "dense" in r["runs"][0] for r in results)
    assert (root / "dense_labels" / "accum_static" / "recipe.yaml").is_file()
    quality = {r["name"]: r["label_quality"] for r in results}
    assert quality["dense_accum_static"]["coverage_pct"] > 2 * quality["sparse_released"]["coverage_pct"]
    table = (out / "table.md").read_text()
    assert "| dense_accum_static | dense: accumulated +-10 sweeps, static world | 1 |" in table
    assert "(one seed: noise unknown)" in table and (out / "labels_and_predictions.png").is_file()
    cached = json.loads((out / "runs" / "sparse_released" / "seed0" / "eval.json").read_text())
    assert cached["summary"] == results[0]["runs"][0]        # reused while the checkpoint is unchanged
    for row in ("sparse_released", "dense_accum_static"):    # each worker's console in its run
        assert "steps: 1, " in (out / "runs" / row / "seed0" / "console.log").read_text()


def test_parallel_training_reports_a_failed_run_and_cancels_the_rest(tmp_path_factory, tmp_path):
    """train_in_parallel (`--jobs`): a run that fails has its traceback in its console.log, the
    error reaches the caller, and runs not yet started are not started."""
    import pytest
    from utils.config import apply_mapping, load_config, parse_overrides
    from utils.engine.runs import train_in_parallel

    root = tiny_world(tmp_path_factory.getbasetemp())
    cfgs = []
    for name, infos in (("broken", tmp_path / "no_such_infos.pkl"), ("never", root / "unused")):
        cfg = load_config(REPO / "configs" / "synthetic_demo.yaml")
        apply_mapping(cfg, parse_overrides([*overrides(root, tmp_path / name), "train.max_steps=1",
                                            f"data.train_infos={infos}"]))
        cfgs.append(cfg)
    with pytest.raises(Exception, match="no_such_infos"):
        train_in_parallel(cfgs, jobs=1)
    assert "Traceback" in (tmp_path / "broken" / "console.log").read_text()
    assert not (tmp_path / "never").exists()


def test_labels_and_frames_follow_the_configured_cameras(real_root, real_infos, tmp_path, monkeypatch):
    """data.cameras=[CAM_BACK, CAM_FRONT]: labels built for both cameras, one single-sweep label
    per (key frame, camera) sample named by its image, the smear frame found among them."""
    from utils.config import load_config
    from utils.engine import science
    cfg = load_config(None, [f"data.root={real_root}", f"data.train_infos={real_infos}",
                             f"data.val_infos={real_infos}", "data.cameras=[CAM_BACK, CAM_FRONT]",
                             "data.num_workers=0", f"train.out_dir={tmp_path / 'run'}"])
    built = []
    monkeypatch.setattr(science, "build_labels", lambda *args, **kwargs: built.append(kwargs["cameras"]))
    science.labels_for(cfg, "accum_boxes", "v1.0-trainval", 1)
    assert built == [["CAM_BACK", "CAM_FRONT"]] * 2
    samples = science.native_lidar_labels(cfg, real_infos)
    names = science.sample_names(samples)
    cams = samples.infos[1]["cam_infos"]
    assert len(names) == 80 and names[2:4] == [Path(cams[c]["filename"]).stem for c in ("CAM_BACK", "CAM_FRONT")]
    back = samples[2]
    assert back["name"] == names[2] and back["camera"] == "CAM_BACK" and back["lidar_map"].shape == (1, 900, 1600)
    folder = tmp_path / "labels"
    folder.mkdir()
    (folder / "frames.jsonl").write_text("".join(json.dumps({"name": n, "error_smear": {"far_off": far}}) + "\n"
                                                 for n, far in ((names[0], 5), (names[3], 9), (names[4], 1))))
    assert science.smear_frame(names, str(real_root), str(folder)) == 3
