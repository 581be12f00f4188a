"""Strict outputs: every JSON file or line we write parses with a strict parser (no bare NaN or
Infinity; a value that is not a finite number is null and its reason is recorded under `nulls`,
utils/jsonio.py), `nan` on the console comes with its reason, tools/export_onnx.py prints no
known-harmless framework noise, and the test run ends with the grouped list of its skips."""
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
NAN = float("nan")


def strict_loads(text: str):
    """json.loads that refuses NaN / Infinity / -Infinity."""
    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")
    return json.loads(text, parse_constant=refuse)


def ldl_summary(stripe=NAN):
    return {"num_samples": 2, "mae_mm": {"50": 1000.0, "80": NAN}, "rmse_mm": {"50": 1500.0, "80": NAN},
            "dense": {"mae_mm": {"50": 900.0, "80": 950.0}, "rmse_mm": {"50": 1.0, "80": 2.0}},
            "ldl": {"mae_hit_mm": 10.0, "mae_miss_mm": 20.0, "miss_hit_ratio": 2.0, "stripe_index": stripe},
            "seconds": 0.1}


# ---------------------------------------------------------------------------------- the helper

def test_helper_nulls_nonfinite_and_records_why():
    from utils import jsonio
    doc = {"a": {"b": [1.0, NAN, math.inf]}, "c": -math.inf, "d": "NaN", "e": 2}
    parsed = strict_loads(jsonio.dumps(doc, reasons={"/c": "undefined: tested"}))
    assert parsed["a"]["b"] == [1.0, None, None] and parsed["c"] is None and parsed["d"] == "NaN"
    assert parsed["nulls"]["/c"] == "undefined: tested"
    assert set(parsed["nulls"]) == {"/a/b/1", "/a/b/2", "/c"}
    assert "NaN" in parsed["nulls"]["/a/b/1"] and "Infinity" in parsed["nulls"]["/a/b/2"]
    back = jsonio.restore(parsed)                                       # read back: NaN again
    assert "nulls" not in back and math.isnan(back["a"]["b"][1]) and math.isnan(back["c"])
    rows = strict_loads(jsonio.dumps([{"x": NAN}, {"x": 1.0}]))      # an array: per element
    assert rows == [{"x": None, "nulls": {"/x": rows[0]["nulls"]["/x"]}}, {"x": 1.0}]
    assert strict_loads(jsonio.dumps({"x": 1.0})) == {"x": 1.0}         # no `nulls` when none
    with pytest.raises(ValueError, match="no enclosing object"):
        jsonio.dumps([NAN])
    with pytest.raises(ValueError, match="nulls"):
        jsonio.dumps({"nulls": 1, "x": NAN})


# ------------------------------------------------------------------------------------- writers

def test_write_results_is_strict_and_explains_the_null(tmp_path):
    from utils.engine.evaluate import write_results
    out = tmp_path / "results.json"
    write_results({"summary": ldl_summary(), "rows": [{"index": 0, "name": "a", "mae_80_mm": NAN}]}, out)
    parsed = strict_loads(out.read_text())
    assert parsed["ldl"]["stripe_index"] is None and parsed["mae_mm"]["80"] is None
    assert "horizontal gradient energy" in parsed["nulls"]["/ldl/stripe_index"]
    assert "no ground-truth pixel" in parsed["nulls"]["/mae_mm/80"]


def test_demo_metrics_writer_is_strict(tmp_path, monkeypatch, capsys):
    """run_demo with the world, training and evaluation replaced: only the writer runs."""
    from utils.engine import demo
    from utils.config import Config

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

    monkeypatch.setattr(demo, "ensure_world", lambda cfg: None)
    monkeypatch.setattr(demo, "trained_model", lambda cfg: Tiny())
    monkeypatch.setattr(demo, "build_dataset", lambda cfg, split, **kw: [None])
    monkeypatch.setattr(demo, "fit_row_median", lambda cfg: type("R", (), {"row_m": torch.ones(3)})())
    monkeypatch.setattr(demo, "model_predictor", lambda model, optimized: None)
    monkeypatch.setattr(demo, "evaluators_for", lambda root, ranges: [])
    monkeypatch.setattr(demo, "evaluate", lambda *a, **kw: {"summary": ldl_summary()})
    monkeypatch.setattr(demo, "demo_panel", lambda *a: torch.zeros(4, 4, 3, dtype=torch.uint8).numpy())
    metrics = demo.run_demo(Config(), tmp_path, {"note": "test"})
    parsed = strict_loads((tmp_path / "metrics.json").read_text())
    assert parsed["baseline_row_median"]["ldl"]["stripe_index"] is None
    assert "one depth per row" in parsed["nulls"]["/baseline_row_median/ldl/stripe_index"]
    assert math.isnan(metrics["baseline_row_median"]["ldl"]["stripe_index"])     # in memory: still NaN
    printed = capsys.readouterr().out
    assert "stripe index n/a (" in printed and "stripe index nan" not in printed.lower()
    assert "0-80 m" in printed and " nan" not in printed.lower().replace("n/a", "")


def test_label_quality_writer_is_strict(tmp_path, capsys):
    """Moving objects removed: no smear pixel to compare, so error_smear's MAE is undefined."""
    from datasets.label_builder import summarise
    counts = {"pixels": 100, "labelled": 10, "compared": 8, "abs_err_sum_m": 0.8, "far_off": 0}
    none = {"pixels": 100, "labelled": 0, "compared": 0, "abs_err_sum_m": 0.0, "far_off": 0}
    frames = [{"name": "f", "shortfall": "", "sweeps": 3, "moving_points_other": 0, "error": counts,
               "error_smear": none}]
    summarise(tmp_path, frames, "val")
    parsed = strict_loads((tmp_path / "quality_val.json").read_text())
    assert parsed["error_smear"]["mae_mm"] is None and parsed["error"]["mae_mm"] == pytest.approx(100.0)
    assert "moving object" in parsed["nulls"]["/error_smear/mae_mm"]
    frames[0]["error"] = none                  # nothing compared at all: the console says why
    summarise(tmp_path, frames, "val")
    printed = capsys.readouterr().out
    assert "MAE n/a (" in printed and "nan" not in printed.lower()


def test_train_jsonl_records_are_strict(tmp_path):
    """A skipped step's non-finite loss and a validation summary with NaN, as written by the
    training logger."""
    from utils.config import load_config
    from utils.distributed import DistInfo
    from utils.engine.train import _Logger
    cfg = load_config(None, [f"train.out_dir={tmp_path}"])
    logger = _Logger(cfg, DistInfo(0, 1, 0, torch.device("cpu")), 0, 2)
    try:
        logger.step(0, 0, 1e-3, {"total": NAN, "depth": math.inf}, 0.0, True, ["frame_a"])
        logger.validation(0, ldl_summary())
        logger.bad_samples(0, [{"index": 3, "reason": "unreadable", "value": NAN}], 1)
    finally:
        logger.close()
    step = strict_loads((tmp_path / "train_log.jsonl").read_text().splitlines()[0])
    assert step["loss"]["total"] is None and "skipped" in step["nulls"]["/loss/total"]
    val = strict_loads((tmp_path / "val_log.jsonl").read_text().splitlines()[0])
    assert val["ldl"]["stripe_index"] is None and val["step"] == 0
    strict_loads((tmp_path / "skips.jsonl").read_text().splitlines()[0])


def test_benchmark_output_line_is_strict(monkeypatch, capsys):
    from tools import benchmark
    monkeypatch.setattr(benchmark, "run_data", lambda args: {"samples_per_s": NAN, "n": 1})
    benchmark.main(["data", "--data-root", "R", "--infos", "P"])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert strict_loads(line)["samples_per_s"] is None


def test_other_writers_are_strict(tmp_path):
    """science's cache and table, the ablation table, run_info: through the strict writer."""
    from utils.engine import ablation, science
    for module in (ablation, science):
        source = Path(module.__file__).read_text()
        assert "json.dumps(" not in source, module.__name__
    rows = [{"name": "row_median", "changes": "-", "summary": ldl_summary()}]
    from utils.engine.tables import ablation_markdown, table_markdown
    text = ablation_markdown(rows)
    assert "nan" not in text.lower() and "n/a" in text
    from utils.jsonio import dumps
    run = strict_loads(dumps(ldl_summary()))            # as science reads its cache back: nulls
    text = table_markdown([{"name": "r", "title": "t", "runs": [run],
                            "label_quality": {"mae_mm": NAN, "far_off_pct": NAN, "coverage_pct": 1.0}}])
    assert "nan" not in text.lower()


# ------------------------------------------------------------------------------- quiet export

def test_quiet_export_filters_exactly_the_known_messages(caplog):
    """The filters match the exporter's messages and nothing else, and are gone afterwards."""
    import logging
    import warnings
    from models.onnx_export import EXPORT_NOISE_LOGS, quiet_export
    name = EXPORT_NOISE_LOGS[0][0]
    axis = "# The axis name: {} will not be used, since it shares the same shape constraints with another axis: {}."
    with warnings.catch_warnings(record=True) as seen, caplog.at_level(logging.WARNING, logger=name):
        warnings.simplefilter("always")
        with quiet_export():
            logging.getLogger(name).warning("torchvision is not installed. Skipping %s", "torchvision::nms")
            logging.getLogger(name).warning("another exporter message")
            warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning)
            warnings.warn(axis.format("batch", "batch"), UserWarning)
            warnings.warn(axis.format("batch", "height"), UserWarning)        # a real conflict: shown
            warnings.warn("anything else", UserWarning)
        logging.getLogger(name).warning("torchvision is not installed. Skipping %s", "torchvision::nms")
    assert [str(w.message) for w in seen] == [axis.format("batch", "height"), "anything else"]
    assert [r.getMessage() for r in caplog.records] == [
        "another exporter message", "torchvision is not installed. Skipping torchvision::nms"]


# ------------------------------------------------------------------------------- skip summary

def test_skip_summary_groups_reasons(tmp_path):
    (tmp_path / "test_skips.py").write_text(textwrap.dedent(f"""
        import pytest
        SHARED = {str(REPO.parent / 'shared')!r}

        @pytest.mark.parametrize("i", range(3))
        def test_real(i):
            pytest.skip(SHARED + "/nuscenes-real is absent")

        def test_golden():
            pytest.skip(SHARED + "/reference/golden is absent")

        @pytest.mark.parametrize("i", range(2))
        def test_other(i):
            pytest.skip("no CUDA device")

        def test_ok():
            pass
        """))
    # the suite's conftest as a plugin: its pytest_terminal_summary and its SHARED path
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "conftest",
                          str(tmp_path)], capture_output=True, text=True, cwd=tmp_path, timeout=120, env=env)
    out = run.stdout
    assert run.returncode == 0, out + run.stderr
    tail = out[out.index("what was skipped"):]
    assert "3 tests skipped because ../shared/nuscenes-real is absent" in tail
    assert "1 test skipped because ../shared/reference/golden is absent" in tail
    assert "2 tests skipped: no CUDA device" in tail
    assert "beside the repository" in tail
    assert len(tail.strip().splitlines()) <= 8
