"""Pictures that read on their own (utils/visualize.py, the science suite's picture): a clipped
colour scale says so, tick labels and captions stay apart and inside their tiles, a heading names
the model's budget from its config."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from utils.config import load_config
from utils.visualize import (ERROR_CMAP, FONT, colour_bar, error_tile, model_line, panel, text_scale, text_strip,
                             tick_labels, tick_layout, wrapped)
from tiny_world import overrides, tiny_world

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "configs" / "synthetic_demo.yaml"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_clipped_scale_says_so_in_its_last_tick():
    assert tick_labels(10.0) == ["0", "2.5", "5", "7.5", "10 m"]
    assert tick_labels(10.0, clipped=True) == ["0", "2.5", "5", "7.5", "10+ m"]
    assert tick_labels(1.0, unit="", clipped=True, ticks=3) == ["0", "0.5", "1+"]
    plain, clipped = (colour_bar(400, 10.0, cmap=ERROR_CMAP, clipped=c) for c in (False, True))
    rows, cols = np.nonzero(np.any(plain != clipped, axis=2))
    ramp_rows = np.nonzero(plain[:, 150].any(axis=1))[0]          # the colours, between two ticks
    assert len(rows) and cols.min() > 300 and rows.min() > ramp_rows.max()   # the last label only
    gt = np.full((30, 400), 20.0)
    assert np.array_equal(error_tile(np.zeros((30, 400)), gt)[-len(clipped):], clipped)


@pytest.mark.parametrize("width_px", [180, 256, 400, 1600])
def test_tick_labels_never_touch(width_px):
    scale = 0.8 * text_scale(width_px)
    placed = tick_layout(30, width_px, 80.0, "m", True, scale)
    assert placed[-1][2] == "80+ m" and len(placed) == (5 if width_px >= 256 else 3)
    spans = [(x, x + cv2.getTextSize(label, FONT, scale, 1)[0][0]) for _, x, label in placed]
    assert all(a[1] < b[0] for a, b in zip(spans, spans[1:])) and spans[-1][1] < width_px


def test_captions_wrap_inside_their_tile_and_rows_stay_aligned():
    scale = text_scale(180)
    lines = wrapped("prediction (m), trained on\ndense: accumulated +-10 sweeps, static world", 170, scale)
    assert lines[0] == "prediction (m), trained on" and len(lines) >= 3
    assert all(cv2.getTextSize(line, FONT, scale, 1)[0][0] <= 170 for line in lines)
    assert " ".join(lines[1:]) == "dense: accumulated +-10 sweeps, static world"
    red, blue = (np.zeros((50, 180, 3), np.uint8) + np.uint8(c) for c in ((0, 0, 255), (255, 0, 0)))
    picture = panel([("one line", red), ("two\nlines", blue)], columns=2)
    first_row = lambda bgr, x: np.nonzero((picture[:, x] == bgr).all(axis=1))[0][0]   # noqa: E731
    assert first_row((0, 0, 255), 10) == first_row((255, 0, 0), 190) == 2 * text_strip("x", 180).shape[0]


def test_the_heading_names_the_budget_of_the_config():
    cfg = load_config(DEMO, ["train.max_steps=7", "train.seed=3", "train.batch_size=2"])
    line = model_line(cfg, torch.device("cpu"))
    assert line == "SpaDe, seed 3, 7 training steps (batch 2, 225x400, CPU)"
    assert "30 training epochs" in model_line(load_config(DEMO, ["train.max_steps=0"]), torch.device("cpu"))
    tiles = [("image", np.zeros((40, 400, 3), np.uint8))] * 2
    headed = panel(tiles, heading=line)
    strip = text_strip(line, 800)
    assert headed.shape[0] == panel(tiles).shape[0] + strip.shape[0]
    assert np.array_equal(headed[:len(strip)], strip) and strip.any()


def test_prediction_captions_of_every_row_fit_a_400_px_tile():
    """The science picture's tiles at the demo size: each caption line inside the tile's margins."""
    from utils.engine.science import prediction_caption
    scale = text_scale(400)
    for row in yaml.safe_load((REPO / "configs" / "science" / "rows.yaml").read_text()).values():
        for line in prediction_caption(row["title"]).split("\n"):
            assert cv2.getTextSize(line, FONT, scale, 1)[0][0] <= 400 - 2 * int(6 * scale), line


def test_science_picture_names_rows_by_title_and_marks_no_value(tmp_path_factory, tmp_path):
    """picture_tiles on the tiny world (one random-weight model for both rows): captions are words
    (no label folder, no row name), every prediction tile has the "none" swatch and the clipped
    scale, and the heading names the budget of the rows' config and the frame."""
    from models import SpaDe
    from utils.engine import science
    root = tiny_world(tmp_path_factory.getbasetemp())
    rows = science.science_rows(["sparse_released", "dense_accum_static"])
    cfgs = {name: science.row_config(DEMO, {**row, "name": name}, [*overrides(root, tmp_path / "unused"),
                                                                    "train.max_steps=7"], 0, tmp_path)
            for name, row in rows.items()}
    science.labels_for(cfgs["dense_accum_static"], "accum_static", "v1.0-trainval", 1)
    torch.manual_seed(0)
    model = SpaDe().eval()
    tiles, heading = science.picture_tiles(cfgs, dict.fromkeys(cfgs, model))
    captions = [caption for caption, _ in tiles]
    assert not any("/" in c or "dense_accum" in c or "sparse_released" in c for c in captions)
    predictions = [t for c, t in tiles if c.startswith("prediction")]
    assert [c.split("\n")[1] for c in captions if c.startswith("prediction")] == [r["title"] for r in rows.values()]
    bar = colour_bar(predictions[0].shape[1], 80.0, clipped=True)
    assert len(predictions) == 2 and all(np.array_equal(t[-len(bar):], bar) for t in predictions)
    first, second = heading.split("\n")
    assert first == "Models: SpaDe, seed 0, 7 training steps (batch 2, 100x180, CPU), one per training label"
    assert second.startswith("val frame synth-")


def test_ablation_picture_marks_clipping_and_names_the_budget(tmp_path_factory, tmp_path):
    """stripes_tiles on the tiny world (random-weight models for both configs): the two
    predictions say which config made them, every depth tile has the "none" swatch and the
    clipped scale, and the heading names the configs' budget and the frame."""
    from models import SpaDe
    from utils.engine.ablation import ABLATIONS, stripes_tiles
    root = tiny_world(tmp_path_factory.getbasetemp())
    cfgs = {name: load_config(ABLATIONS / f"{name}.yaml", [*overrides(root, tmp_path), "train.max_steps=7"])
            for name in ("full", "no_disruption")}
    torch.manual_seed(0)
    models = {"full": SpaDe().eval(), "no_disruption": SpaDe().eval()}
    tiles, heading = stripes_tiles(cfgs, models)
    assert [c for c, _ in tiles] == ["image", "dense truth (m)", "prediction (m), no disruption",
                                     "prediction (m), SpaDe as released"]
    bar = colour_bar(tiles[1][1].shape[1], 80.0, clipped=True)
    assert all(np.array_equal(t[-len(bar):], bar) for _, t in tiles[1:])
    assert not np.array_equal(tiles[2][1], tiles[3][1])          # each config's own model
    first, second = heading.split("\n")
    assert first == "Models: SpaDe, seed 0, 7 training steps (batch 2, 100x180, CPU), one per config"
    assert second.startswith("val frame synth-")
