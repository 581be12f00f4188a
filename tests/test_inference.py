"""Fused inference path (models/inference.py) against the reference `forward`: BN folding with
non-trivial statistics, the block scatter, the cache's invalidation; bf16 / compile paths."""
import json

import pytest
import torch
from torch import nn

from models import SpaDe, pad_to_network, scatter_downscale
from models.inference import (CACHE_ATTR, FusedSpaDe, InferenceOptions, ShuffleDeconv,
                              UpsampledStem, fold_bn, fold_module, fused_for,
                              scatter_downscale_blocks)
from models.layers import ConvBnAct
from utils.bench.model import benchmark_model, randomize_bn, realistic_inputs
from utils.bench.train import benchmark_train, summary as train_summary

TOL_M = 1e-4
HAS_CUDA = torch.cuda.is_available()
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return randomize_bn(SpaDe()).eval()


@pytest.fixture(scope="module")
def inputs():
    return realistic_inputs(1, 225, 400)


@pytest.fixture(scope="module")
def reference(model, inputs):
    with torch.inference_mode():
        return model.predict(*inputs, optimized=False)


def test_fold_bn_conv_and_transposed():
    torch.manual_seed(1)
    for conv in (nn.Conv2d(8, 12, 3, stride=2, padding=1, groups=4), nn.Conv2d(8, 12, (1, 3)),
                 nn.ConvTranspose2d(8, 12, 2, stride=2)):
        bn = randomize_bn(nn.Sequential(nn.BatchNorm2d(12)), seed=2)[0].eval()
        x = torch.randn(2, 8, 10, 14)
        with torch.no_grad():
            torch.testing.assert_close(fold_bn(conv, bn)(x), bn(conv(x)), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="running statistics"):
        fold_bn(nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2, track_running_stats=False))


def test_shuffle_deconv_equals_transposed_conv():
    deconv = nn.ConvTranspose2d(8, 5, 2, stride=2)
    x = torch.randn(2, 8, 6, 7)
    with torch.no_grad():
        torch.testing.assert_close(ShuffleDeconv(deconv)(x), deconv(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n,m", [(5, 7), (1, 2)])
def test_upsampled_stem_equals_conv_on_concatenation(n, m):
    torch.manual_seed(n)
    stem = ConvBnAct(12, 16, 3, stride=2)
    stem.bn = randomize_bn(nn.Sequential(stem.bn), seed=n)[0].eval()
    folded = fold_module(stem)
    base, f = torch.randn(2, 4, 4 * n, 4 * m) * 50, torch.randn(2, 8, n, m)
    up = nn.functional.interpolate(f, scale_factor=4, mode="bilinear", align_corners=False)
    with torch.no_grad():
        expected = stem(torch.cat([base, up], 1))
        torch.testing.assert_close(UpsampledStem(folded, 4)((base, f)), expected,
                                   rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("factor", [2, 4])
def test_block_scatter_equals_reference(factor):
    g = torch.Generator().manual_seed(factor)
    x = torch.randn(2, 2, 32, 48, generator=g) * 40          # negative values are "nonzero" too
    x[torch.rand(x.shape, generator=g) > 0.3] = 0
    x[0, 0, :, 5] = 7.0                                       # a radar column
    assert torch.equal(scatter_downscale_blocks(x, factor), scatter_downscale(x, factor))
    with pytest.raises(ValueError, match="multiple"):
        scatter_downscale_blocks(x[..., :30], 4)


@pytest.mark.parametrize("options", [InferenceOptions(),
                                     InferenceOptions(channels_last=False, deconv_as_shuffle=True,
                                                      fold_upsample=False)])
def test_fused_equals_reference(model, inputs, reference, options):
    assert (reference > 0).float().mean() > 0.2 and reference.max() > 20  # non-trivial depths
    fused = FusedSpaDe(model, options)
    with torch.inference_mode():
        depth = fused(*inputs)
        other = realistic_inputs(1, 224, 390, seed=1)                  # same padded size, new
        again, fresh = fused(*other), model.predict(*other, optimized=False)   # buffer: no stale rows
    assert depth.shape == reference.shape == (1, 1, 225, 400)
    assert (depth - reference).abs().max() < TOL_M
    assert again.shape == (1, 1, 224, 390) and (again - fresh).abs().max() < TOL_M


def test_uint8_image_gives_the_float_result(model, inputs, reference):
    """The dataset's uint8 image and the same values as float32 give the same depth on both paths."""
    img8 = inputs[0].to(torch.uint8)
    assert torch.equal(img8.float(), inputs[0]) and inputs[0].max() > 250
    with torch.inference_mode():
        reference8 = model.predict(img8, *inputs[1:], optimized=False)
        fused8, fused = model.predict(img8, *inputs[1:]), model.predict(*inputs)
    assert torch.equal(reference8, reference) and torch.equal(fused8, fused)


def test_predict_uses_cache_and_follows_weight_changes():
    torch.manual_seed(3)
    net = randomize_bn(SpaDe(), seed=3).eval()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    small = realistic_inputs(2, 100, 150, seed=3)    # batch 2: train-mode BN at 1 x 1
    with torch.inference_mode():
        first = net.predict(*small)
    fused = net.__dict__[CACHE_ATTR][2]
    assert fused_for(net) is fused                                   # unchanged weights: reused
    assert list(net.state_dict()) == list(state)                     # no cache entry in the state
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())  # untouched

    net.train()
    with torch.no_grad():              # train mode: the reference path; BN running stats move
        train_mode = net.predict(*small)
        padded = [pad_to_network(t) for t in small[:2]]
        assert torch.equal(train_mode, net(*padded, *small[2:])["depth_s1"][..., :100, :150])
    net.eval()
    after_stats = fused_for(net)
    assert after_stats is not fused
    g = torch.Generator().manual_seed(5)
    for p in net.parameters():                                       # an optimizer's in-place step
        p.grad = torch.randn(p.shape, generator=g) * 1e-3
    torch.optim.SGD(net.parameters(), lr=1.0).step()
    with torch.inference_mode():
        stepped, ref_stepped = net.predict(*small), net.predict(*small, optimized=False)
    assert fused_for(net) is not after_stats
    assert (stepped - ref_stepped).abs().max() < TOL_M and (stepped - first).abs().max() > 1e-3

    net.load_state_dict(state)                                       # back to the first weights
    with torch.inference_mode():
        assert (net.predict(*small) - first).abs().max() < TOL_M


def test_bf16_and_compile_paths_run_on_cpu(model, inputs, reference):
    """The CUDA flags' code paths, exercised on CPU: bf16 autocast (CPU bf16 is emulated, so only
    closeness is checked) and torch.compile, CUDA-graph mode, with the tracing-only 'eager'
    backend (graph capture by dynamo, the replay bookkeeping and the copy of the output)."""
    small = [t[..., :100, :200] if t.dim() == 4 else t for t in inputs]
    with torch.inference_mode():
        exact = FusedSpaDe(model)(*small)
        bf16 = FusedSpaDe(model, InferenceOptions(bf16=True))(*small)
        traced = FusedSpaDe(model, InferenceOptions(compile_mode="reduce-overhead",
                                                    compile_backend="eager"))(*small)
    assert bf16.dtype == torch.float32 and (bf16 - exact).abs().mean() < 0.25
    assert torch.equal(traced, exact)


# ---- CUDA (skipped without a GPU) ----------------------------------------------------------------
@pytest.fixture(scope="module")
def real_batch(real_root, tmp_path_factory):
    """Two eval-mode samples of the real slice, collated."""
    nuscenes = pytest.importorskip("nuscenes.nuscenes")
    from torch.utils.data import default_collate
    from datasets.infos import create_infos, save_infos, split_scenes
    from datasets.nuscenes_dataset import RadarCameraDataset
    from utils.config import Config
    records = create_infos(nuscenes.NuScenes("v1.0-trainval", str(real_root), verbose=False),
                           split_scenes("v1.0-trainval"), progress=False)["val"]
    path = tmp_path_factory.mktemp("infos") / "val.pkl"
    save_infos(records[:2], path)
    ds = RadarCameraDataset(Config(), path, "eval", data_root=real_root)
    batch = default_collate([ds[0], ds[1]])
    return [batch[k] for k in ("img", "radar_map", "radar_pts", "radar_count")]


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
def test_cuda_fused_equals_reference_and_bf16_close(model, real_batch):
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # exact fp32
    net = model.cuda()
    args = [t.cuda() for t in real_batch]
    try:
        with torch.inference_mode():
            ref = net.predict(*args, optimized=False)
            fp32 = net.predict(*args)
            bf16 = FusedSpaDe(net, InferenceOptions(bf16=True))(*args)
            compiled = FusedSpaDe(net, InferenceOptions(bf16=True, compile_mode="default"))(*args)
    finally:
        model.cpu()
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    assert (fp32 - ref).abs().max() < TOL_M
    assert (bf16 - fp32).abs().mean() < 0.05
    assert (compiled - fp32).abs().mean() < 0.05


# ---- benchmark tools -----------------------------------------------------------------------------
def test_benchmark_model_and_train(capsys):
    from tools.benchmark import main
    main(["model", "--height", "64", "--width", "96", "--iters", "2", "--warmup", "0",
          "--threads", "1"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["max_abs_diff_m"] < TOL_M and summary["speedup"] > 0
    assert summary["fused_fps"] == pytest.approx(1 / summary["fused_s"], rel=0.01)

    result = benchmark_model("cpu", 64, 96, iters=1, warmup=0)
    assert 0.6 < result["gflop"]["fused"] / result["gflop"]["reference"] < 0.8  # masks dropped

    result = benchmark_train("cpu", 64, 64, batch=2, iters=2, warmup=0)
    assert len(result["step_s"]) == len(result["data_s"]) == 2
    assert all(0 <= d < s for d, s in zip(result["data_s"], result["step_s"]))
    assert train_summary(result)["samples_per_s"] > 0
