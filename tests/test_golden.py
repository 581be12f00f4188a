"""The released network's own outputs (../shared/reference/golden) against ours: every stage in
eval mode, `predict` (reference and fused paths) at 256x448 and 900x1600, the ONNX export, and
the training loss term by term with every parameter's gradient norm. Tolerances are those of
golden/README.md: 1e-4 m for depth, 1e-5 for masks, 1e-5 relative for loss terms, gradient norms
within 1e-3 of |ref| + 1e-3 x median norm."""
import importlib
import sys

import pytest
import torch

from models import SpaDe, pad_to_network
from models.loss import spade_loss

torch.set_num_threads(2)
DEPTH_TOL_M, MASK_TOL = 1e-4, 1e-5
# golden's names of the released loss terms: stage i = 0, 1, 2 at scales 4, 2, 1
RELEASED_TERMS = {"depth_s4": "train_loss_0", "depth_s2": "train_loss_1", "depth_s1": "train_loss_2",
                  "mask_s4": "train_valid_loss_0", "mask_s2": "train_valid_loss_1",
                  "mask_s1": "train_valid_loss_2"}


@pytest.fixture(scope="module")
def golden(golden_dir):
    sys.path.insert(0, str(golden_dir))
    try:
        module = importlib.import_module("golden")
    finally:
        sys.path.remove(str(golden_dir))
    fixture = torch.load(golden_dir / "golden.pt")
    state = module.golden_state_dict(golden_dir.parent / "official_state_dict.tsv")
    return module, fixture, state


@pytest.fixture(scope="module")
def model(golden):
    net = SpaDe()
    net.load_state_dict(golden[2], strict=True)
    return net.eval()


@pytest.fixture(scope="module")
def small(golden):
    return golden[0].golden_inputs(256, 448, [23, 7], seed=1)


def _args(batch):
    return batch["img"], batch["radar_map"], batch["radar_pts"], batch["radar_count"]


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


def test_every_stage_output(golden, model, small):
    want = golden[1]["eval_256x448"]
    with torch.no_grad():
        out = model(pad_to_network(small["img"]), pad_to_network(small["radar_map"]),
                    small["radar_pts"], small["radar_count"])
    for s in (4, 2, 1):
        assert _max_diff(out[f"depth_s{s}"], want[f"depth_s{s}"]) < DEPTH_TOL_M, s
        assert _max_diff(out[f"mask_s{s}"], want[f"mask_s{s}"]) < MASK_TOL, s
    # the fixture is not degenerate: depths reach tens of metres, masks are not saturated
    assert want["depth_s1"].max() > 10 and 0.2 < want["mask_s1"].mean() < 0.8


@pytest.mark.parametrize("optimized", [False, True], ids=["reference", "fused"])
def test_predict_256x448(golden, model, small, optimized):
    with torch.no_grad():
        depth = model.predict(*_args(small), optimized=optimized)
    assert _max_diff(depth, golden[1]["eval_256x448"]["predict"]) < DEPTH_TOL_M


@pytest.mark.parametrize("optimized", [False, True], ids=["reference", "fused"])
def test_predict_900x1600(golden, model, optimized):
    frame = golden[0].golden_inputs(900, 1600, [41], seed=2)
    with torch.no_grad():
        depth = model.predict(*_args(frame), optimized=optimized)
    assert _max_diff(depth, golden[1]["eval_900x1600"]["predict"]) < DEPTH_TOL_M


def test_onnx_export_256x448(golden, model, small, tmp_path):
    for name in ("onnx", "onnxruntime", "onnxscript"):
        pytest.importorskip(name)
    from models.onnx_export import INPUT_NAMES, export_onnx, run_onnx
    path = export_onnx(model, tmp_path / "golden.onnx", 256, 448)
    inputs = {name: small[name] for name in INPUT_NAMES}
    depth = torch.from_numpy(run_onnx(path, inputs))
    assert _max_diff(depth, golden[1]["eval_256x448"]["predict"]) < DEPTH_TOL_M


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
def test_training_loss_and_gradients(golden, small, layout):
    """The released loss on the eval-mode network (frozen BN, as golden), then backward; also
    with channels-last weights and inputs (train.channels_last)."""
    net = SpaDe().to(memory_format=layout)
    net.load_state_dict(golden[2], strict=True)
    net.eval()
    want = golden[1]["loss_256x448"]
    out = net(pad_to_network(small["img"]).contiguous(memory_format=layout),
              pad_to_network(small["radar_map"]).contiguous(memory_format=layout),
              small["radar_pts"], small["radar_count"])
    terms = spade_loss(out, {"lidar_map": small["lidar_map"], "seg_target": small["seg_target"]})
    for ours, theirs in RELEASED_TERMS.items():
        assert terms[ours].item() == pytest.approx(float(want["terms"][theirs]), rel=1e-5), ours
    assert terms["total"].item() == pytest.approx(float(want["total"]), rel=1e-5)
    terms["total"].backward()
    params = dict(net.named_parameters())
    assert set(want["grad_norm"]) == set(params)
    median = torch.tensor([float(v) for v in want["grad_norm"].values()]).median().item()
    wrong = []
    for name, p in params.items():
        ref = float(want["grad_norm"][name])
        got = 0.0 if p.grad is None else p.grad.norm().item()
        if abs(got - ref) > 1e-3 * (abs(ref) + 1e-3 * median):
            wrong.append((name, got, ref))
    assert not wrong, f"{len(wrong)} gradient norms differ, e.g. {wrong[:3]}"
    for name, ref in want["grad"].items():
        scale = ref.abs().max().item()
        assert _max_diff(params[name].grad, ref) <= 1e-4 * scale + 1e-9, name
