"""SpaDe network: released state_dict layout, checkpoint loading, shapes, radar injection, ops."""
import itertools

import pytest
import torch

from models import SpaDe, pad_to_network, padded_size, scatter_downscale

torch.set_num_threads(2)
N_PARAMS = 36_867_070


def _tsv(reference_dir):
    lines = (reference_dir / "official_state_dict.tsv").read_text().splitlines()[1:]
    return [line.split("\t") for line in lines]


def _shape_text(t: torch.Tensor) -> str:
    return "x".join(map(str, t.shape)) if t.dim() else "scalar"


def _inputs(b: int, h: int, w: int, k: int = 20, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(b, 3, h, w, generator=g) * 255
    radar = torch.zeros(b, 1, h, w)
    cols = torch.randint(0, w, (b, 6), generator=g)
    for i in range(b):  # radar disruption: depth down whole columns
        radar[i, 0, :, cols[i]] = torch.rand(6, generator=g) * 60 + 1
    pts = torch.randn(b, k, 3, generator=g) * 10
    count = torch.randint(1, k, (b,), generator=g)
    return img, radar, pts, count


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return SpaDe().eval()


def test_state_dict_matches_release(reference_dir, model):
    ref = _tsv(reference_dir)
    mine = [[k, _shape_text(v), str(v.dtype).removeprefix("torch.")]
            for k, v in model.state_dict().items()]
    assert len(ref) == 3258
    assert sorted(mine) == sorted(ref)
    assert sum(p.numel() for p in model.parameters()) == N_PARAMS


def test_released_checkpoint_loads_strict(reference_dir, tmp_path, model):
    g = torch.Generator().manual_seed(1)
    state = {}
    for name, shape, dtype in _tsv(reference_dir):
        size = [] if shape == "scalar" else [int(s) for s in shape.split("x")]
        if dtype == "int64":
            state[name] = torch.randint(0, 1000, size, generator=g)
        elif name.endswith("running_var"):
            state[name] = torch.rand(size, generator=g) + 0.5
        else:
            state[name] = torch.randn(size, generator=g) * 0.05
    path = tmp_path / "model.ckpt"
    torch.save({"network": state}, path)
    inputs = _inputs(1, 256, 256)

    outs = []
    for _ in range(2):
        net = SpaDe().eval()
        net.load_state_dict(torch.load(path, weights_only=True)["network"], strict=True)
        for name, value in net.state_dict().items():
            assert torch.equal(value, state[name]), name
        with torch.inference_mode():
            outs.append(net(*inputs))
    with torch.inference_mode():
        fresh = model(*inputs)
    for key in fresh:
        assert torch.isfinite(outs[0][key]).all(), key
        assert torch.equal(outs[0][key], outs[1][key]), key
    assert not torch.equal(outs[0]["depth_s1"], fresh["depth_s1"])


def test_forward_shapes_and_ranges(model):
    with torch.inference_mode():
        out = model(*_inputs(2, 256, 512))
    for s in (4, 2, 1):
        assert out[f"depth_s{s}"].shape == (2, 1, 256 // s, 512 // s)
        assert out[f"mask_s{s}"].shape == (2, 1, 256 // s, 512 // s)
        assert (out[f"depth_s{s}"] >= 0).all()
        mask = out[f"mask_s{s}"]
        assert ((mask >= 0) & (mask <= 1)).all()


def test_forward_rejects_unpadded(model):
    with pytest.raises(ValueError, match="multiples of 256"):
        model(*_inputs(1, 256, 300))


def test_padding_rule():
    assert padded_size(900, 1600) == (1024, 1792)
    assert padded_size(225, 400) == (256, 512)
    assert padded_size(256, 512) == (512, 768)  # released rule always adds a block
    x = torch.ones(1, 2, 3, 5)
    y = pad_to_network(x)
    assert y.shape == (1, 2, 256, 256)
    assert y[..., :3, :5].eq(1).all() and y.sum() == 30


@pytest.mark.parametrize("h,w", [(225, 400), (900, 1600)])
def test_predict_any_size(model, h, w):
    with torch.inference_mode():
        depth = model.predict(*_inputs(1, h, w))
    assert depth.shape == (1, 1, h, w)
    assert torch.isfinite(depth).all()


def test_zero_radar_points(model):
    img, radar, pts, _ = _inputs(1, 256, 256)
    zero = torch.zeros(1, dtype=torch.long)
    emb = model.radar_embedding(pts, zero)
    assert emb.shape == (1, 8, 1, 1) and torch.equal(emb, torch.zeros_like(emb))
    off = SpaDe(radar_injection=False).eval()
    off.load_state_dict(model.state_dict())
    with torch.inference_mode():
        out_zero = model(img, radar, pts, zero)
        out_off = off(img, radar, pts, torch.tensor([5]))
    for key in out_zero:
        assert torch.isfinite(out_zero[key]).all()
        assert torch.equal(out_zero[key], out_off[key]), key


def test_radar_embedding_is_masked_mean(model):
    pts = torch.randn(2, 7, 3)
    count = torch.tensor([3, 7])
    emb = model.radar_embedding(pts, count)[..., 0, 0]
    mlp = model.calibrated_params_encoder.mlp
    for i in range(2):
        expected = mlp(pts[i, : count[i]]).mean(0)
        torch.testing.assert_close(emb[i], expected)


def test_batch_equals_single_samples(model):
    img, radar, pts, _ = _inputs(2, 256, 256, k=12)
    count = torch.tensor([4, 11])
    pts[0, 4:] = 1e3  # rows past the count must be ignored
    with torch.inference_mode():
        both = model(img, radar, pts, count)
        for i in range(2):
            alone = model(img[i:i + 1], radar[i:i + 1], pts[i:i + 1, : count[i]], count[i:i + 1])
            for key in both:
                torch.testing.assert_close(both[key][i:i + 1], alone[key], rtol=1e-4, atol=1e-4)


def test_scatter_downscale_hand_example():
    x = torch.tensor([[0., 2., 0., 0., 5.],
                      [3., 0., 0., 7., 0.],
                      [0., 0., 0., 0., 0.],
                      [0., 0., 4., 0., 6.],
                      [1., 0., 0., 0., 0.]])
    # factor 2 -> 3x3: block (0,0) holds 2 then 3 (row-major) -> 3; block (0,1) holds only 7;
    # block (1,1) holds 4, the zero at (3,3) does not overwrite it; block (2,0) holds 1.
    expected = torch.tensor([[3., 7., 5.],
                             [0., 4., 6.],
                             [1., 0., 0.]])
    out = scatter_downscale(x[None, None].repeat(2, 3, 1, 1), 2)
    assert out.shape == (2, 3, 3, 3)
    assert torch.equal(out, expected.expand(2, 3, 3, 3))
    assert torch.equal(scatter_downscale(x[None, None], 1)[0, 0], x)


def _loop_scatter(x: torch.Tensor, f: int) -> torch.Tensor:
    b, c, h, w = x.shape
    out = torch.zeros(b, c, -(-h // f), -(-w // f))
    for i, j, y, xx in itertools.product(range(b), range(c), range(h), range(w)):
        if x[i, j, y, xx] != 0:
            out[i, j, y // f, xx // f] = x[i, j, y, xx]
    return out


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_scatter_downscale_matches_loop(factor):
    g = torch.Generator().manual_seed(factor)
    x = torch.rand(2, 2, 13, 17, generator=g) * 80
    x[torch.rand(x.shape, generator=g) > 0.3] = 0
    assert torch.equal(scatter_downscale(x, factor), _loop_scatter(x, factor))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_scatter_downscale_cuda_matches_cpu():
    x = torch.rand(2, 1, 64, 96) * 80
    x[torch.rand(x.shape) > 0.2] = 0
    runs = [scatter_downscale(x.cuda(), 4).cpu() for _ in range(3)]
    for run in runs:
        assert torch.equal(run, scatter_downscale(x, 4))
