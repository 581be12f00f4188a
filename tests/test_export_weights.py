"""tools/export_weights.py: a full checkpoint (with optimiser state) -> X.safetensors + X.json,
loaded back by load_model / load_network / eval.py with the same outputs."""
import json
import logging

import cv2
import numpy as np
import pytest
import torch

import eval as eval_script
from models import SpaDe
from tools import export_weights
from tools import predict as predict_tool
from utils.bench.model import realistic_inputs
from utils.checkpoint import CheckpointError, load_network, save_checkpoint
from utils.config import config_to_dict, load_config
from utils.checkpoint import load_model
from tiny_world import overrides, tiny_world

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return tiny_world(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def full(world, tmp_path_factory):
    """Our training format: seeded random weights, AdamW state as after a step (set directly: a
    real step takes about 25 s on 2 cores), step 17, epoch 2, the tiny world's config with radar
    injection off (not the default: the config must travel in the JSON)."""
    tmp = tmp_path_factory.mktemp("export")
    cfg = load_config(None, overrides(world, tmp / "run") + ["model.radar_injection=false"])
    torch.manual_seed(0)
    model = SpaDe(radar_injection=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for p in model.parameters():
        optimizer.state[p] = {"step": torch.tensor(1.0), "exp_avg": torch.randn_like(p),
                              "exp_avg_sq": torch.rand_like(p)}
    return save_checkpoint(tmp / "full.ckpt", model, config=config_to_dict(cfg),
                           optimizer=optimizer, epoch=2, step=17), cfg


@pytest.fixture(scope="module")
def exported(full):
    ckpt, _ = full
    out = ckpt.parent / "model.safetensors"
    meta = export_weights.main(["-m", str(ckpt), "--out", str(out)])
    return out, meta


def predict(model):
    with torch.inference_mode():
        return model.predict(*realistic_inputs(1, 100, 180))


def test_files_small_and_described(full, exported):
    (ckpt, cfg), (out, meta) = full, exported
    assert out.stat().st_size < 0.4 * ckpt.stat().st_size          # weights without AdamW's 2x
    assert json.loads(out.with_suffix(".json").read_text()) == meta
    assert meta["config"] == config_to_dict(cfg)
    prov = meta["provenance"]
    assert (prov["source"], prov["step"], prov["epoch"]) == (str(ckpt.resolve()), 17, 2)
    assert prov["torch"] == torch.__version__ and prov["date"].startswith("20")


def test_exported_loads_with_equal_outputs(full, exported):
    (ckpt, _), (out, _) = full, exported
    original, cfg = load_model(ckpt)
    again, cfg_again = load_model(out)
    assert cfg_again == cfg and not cfg_again.model.radar_injection
    assert torch.equal(predict(again), predict(original))
    net = SpaDe(radar_injection=False)
    load_network(net, out)                                      # the SpaDe-level loader
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(),
                                                  original.state_dict().values()))


def test_eval_on_exported_equals_eval_on_checkpoint(full, exported):
    (ckpt, _), (out, _) = full, exported
    runs = [eval_script.main(["-m", str(path), "--quiet"]) for path in (ckpt, out)]
    for run in runs:
        run.pop("seconds")
    assert runs[0]["num_samples"] == 4 and runs[1] == runs[0]


def test_predict_tool_on_exported_equals_checkpoint(full, exported, tmp_path):
    (ckpt, _), (out, _) = full, exported
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 256, (100, 180, 3), np.uint8))
    np.save(tmp_path / "pts.npy", np.array([[1.0, 0.5, 10.0], [-2.0, 1.0, 30.0]]))
    (tmp_path / "K.json").write_text(json.dumps({"camera_intrinsic": [[100, 0, 90], [0, 100, 50],
                                                                      [0, 0, 1]]}))
    for name, path in (("ckpt", ckpt), ("weights", out)):
        predict_tool.main(["-m", str(path), "--image", str(image), "--radar-points",
                           str(tmp_path / "pts.npy"), "--intrinsics", str(tmp_path / "K.json"),
                           "--out", str(tmp_path / name), "--device", "cpu"])
    np.testing.assert_array_equal(np.load(tmp_path / "weights" / "frame.npy"),
                                  np.load(tmp_path / "ckpt" / "frame.npy"))


def test_without_json_uses_defaults_and_says_so(exported, tmp_path, caplog):
    out, _ = exported
    alone = tmp_path / "alone.safetensors"
    alone.write_bytes(out.read_bytes())
    with caplog.at_level(logging.WARNING):
        model, cfg = load_model(alone, overrides=["model.radar_injection=false"])
    assert "has no alone.json beside it" in caplog.text
    assert cfg.data.height == load_config().data.height              # not the tiny world's
    with_json = load_model(out)[0].state_dict()
    assert all(torch.equal(v, with_json[k]) for k, v in model.state_dict().items())
    assert load_model(alone)[1].model.radar_injection                 # the default, not the JSON's


def test_released_format_and_bad_inputs(tmp_path):
    torch.manual_seed(1)
    torch.save({"network": SpaDe().state_dict()}, tmp_path / "released.pth")
    meta = export_weights.main(["-m", str(tmp_path / "released.pth"),
                                "--out", str(tmp_path / "r.safetensors")])
    assert "step" not in meta["provenance"] and meta["config"] == config_to_dict(load_config())
    (tmp_path / "junk.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(CheckpointError, match="cannot read weights file .*junk.safetensors"):
        load_model(tmp_path / "junk.safetensors")
    with pytest.raises(SystemExit):
        export_weights.main(["-m", str(tmp_path / "released.pth"), "--out", str(tmp_path / "x.pt")])


def test_help_has_an_example(capsys):
    with pytest.raises(SystemExit):
        export_weights.main(["--help"])
    assert "export_weights.py -m outputs/demo/run/checkpoints/latest.ckpt --out outputs/model.safetensors" \
        in capsys.readouterr().out
