"""Loss and metrics against small hand-computed cases."""
import math

import pytest
import torch

from models.loss import depth_term, mask_term, spade_loss
from utils.config import LossConfig
from utils.metrics import DepthMetrics, per_image_errors


def _maps(values, shape=(1, 1, 2, 2)):
    return torch.tensor(values, dtype=torch.float32).reshape(shape)


def test_depth_term_keeps_released_batch_normalisation():
    # sample 0: errors 0.5 m and 2.0 m on two labelled pixels -> smooth-L1 0.125 + 1.5
    # sample 1: error 3.0 m on one labelled pixel -> 2.5
    label = _maps([[10, 20, 0, 0], [0, 0, 30, 0]], (2, 1, 2, 2))
    pred = _maps([[10.5, 22, 7, 9], [1, 1, 33, 1]], (2, 1, 2, 2))
    loss = depth_term(pred, label, beta_m=1.0)
    # per-sample sums [1.625, 2.5], mean over the batch 2.0625, / 3 labelled pixels
    assert loss.item() == pytest.approx(2.0625 / 3)
    # ... which is the per-pixel mean divided by the batch size (the quirk)
    assert loss.item() == pytest.approx((1.625 + 2.5) / 3 / 2)


def test_depth_term_without_labels_is_zero_and_differentiable():
    pred = torch.ones(1, 1, 2, 2, requires_grad=True)
    loss = depth_term(pred, torch.zeros(1, 1, 2, 2))
    loss.backward()
    assert loss.item() == 0.0 and pred.grad is not None


def test_mask_term_is_mean_absolute_error():
    assert mask_term(_maps([0.2, 0.9, 0.5, 0.0]), _maps([0, 1, 1, 0])).item() == \
        pytest.approx((0.2 + 0.1 + 0.5 + 0.0) / 4)


def test_spade_loss_stage_weighting_and_padded_mask_term():
    # 8 x 8 label with one LiDAR pixel at (5, 6): it lands on (1, 1) at 1/4 and (2, 3) at 1/2.
    label = torch.zeros(1, 1, 8, 8)
    label[0, 0, 5, 6] = 10.0
    seg = torch.ones(1, 1, 8, 8)
    # predictions come from a padded 16 x 16 input; the depth term sees the labels only, the mask
    # term the whole padded canvas with the target zero-padded (released)
    preds = {f"depth_s{s}": torch.full((1, 1, 16 // s, 16 // s), 12.0) for s in (4, 2, 1)}
    preds.update({f"mask_s{s}": torch.full((1, 1, 16 // s, 16 // s), 0.25) for s in (4, 2, 1)})
    preds["mask_s1"][0, 0, 8:, :] = 1.0
    terms = spade_loss(preds, {"lidar_map": label, "seg_target": seg}, LossConfig(mask_weight=2.0))
    depth = 1.5  # smooth-L1 of a 2 m error, one pixel, batch of one
    # s = 1: 64 px |0.25 - 1| + 64 px |0.25 - 0| (padding right) + 128 px |1 - 0| (padding below)
    # s = 2, 4: a quarter of the canvas has target 1 (|0.25 - 1|), the rest 0 (|0.25 - 0|)
    mask = {1: (64 * 0.75 + 64 * 0.25 + 128 * 1.0) / 256, 2: 0.375, 4: 0.375}
    for s in (4, 2, 1):
        assert terms[f"depth_s{s}"].item() == pytest.approx(depth)
        assert terms[f"mask_s{s}"].item() == pytest.approx(mask[s])
    expected = sum((depth + 2.0 * mask[s]) / s for s in (4, 2, 1))
    assert terms["total"].item() == pytest.approx(expected)


def test_spade_loss_mask_off_needs_no_target():
    label = torch.zeros(1, 1, 4, 4)
    label[0, 0, 0, 0] = 5.0
    preds = {f"depth_s{s}": torch.full((1, 1, 4 // s, 4 // s), 5.0) for s in (4, 2, 1)}
    terms = spade_loss(preds, {"lidar_map": label}, LossConfig(mask_weight=0.0))
    assert "mask_s1" not in terms and terms["total"].item() == 0.0
    with pytest.raises(KeyError, match="seg_target"):
        spade_loss(preds, {"lidar_map": label}, LossConfig(mask_weight=1.0))


def test_per_image_errors_by_range():
    gt = _maps([0, 10, 60, 90])
    pred = _maps([5, 11, 57, 100])
    e50 = per_image_errors(pred, gt, 50)
    assert e50["mae_m"].item() == pytest.approx(1.0) and e50["count"].item() == 1
    e70 = per_image_errors(pred, gt, 70)
    assert e70["mae_m"].item() == pytest.approx(2.0)
    assert e70["rmse_m"].item() == pytest.approx(math.sqrt(5.0))
    e80 = per_image_errors(pred, gt, 80)
    assert e80["rmse_m"].item() == pytest.approx(math.sqrt(5.0))


def test_aggregate_skips_and_counts_images_without_ground_truth_in_range():
    metrics = DepthMetrics(ranges_m=(50, 70, 80))
    gt = _maps([[0, 10, 60, 90], [0, 0, 0, 90]], (2, 1, 2, 2))
    pred = _maps([[5, 11, 57, 100], [1, 1, 1, 1]], (2, 1, 2, 2))
    metrics.update(pred, gt)
    metrics.update(_maps([20, 0, 0, 0]), _maps([22, 0, 0, 0]))  # a third image: error 2 m
    out = metrics.summary()
    assert metrics.num_images == 3
    assert out["images"] == {"50": 2, "70": 2, "80": 2}
    assert out["empty"] == {"50": 1, "70": 1, "80": 1}
    assert out["mae_mm"]["50"] == pytest.approx((1.0 + 2.0) / 2 * 1000)
    assert out["mae_mm"]["70"] == pytest.approx((2.0 + 2.0) / 2 * 1000)
    assert out["rmse_mm"]["80"] == pytest.approx((math.sqrt(5.0) + 2.0) / 2 * 1000)
    assert all(not math.isnan(v) for v in out["mae_mm"].values())
