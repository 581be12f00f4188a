"""Checkpoint formats, strict-load errors, atomic writes (permissions, full disk, orphans), and
the typed config."""
import os
import random

import numpy as np
import pytest
import torch

from utils.checkpoint import (CheckpointError, capture_rng_state, load_network, prune_epoch_checkpoints,
                              read_checkpoint, restore_rng_state, save_checkpoint)
from utils.files import OutputWriteError, remove_orphaned_temp_files
from conftest import REPO
from utils.config import ConfigError, config_from_dict, config_to_dict, load_config


class Tiny(torch.nn.Module):
    def __init__(self, width=3):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, width, 3)
        self.bn = torch.nn.BatchNorm2d(width)


def test_released_format_round_trip(tmp_path):
    src = Tiny()
    torch.nn.init.normal_(src.conv.weight)
    torch.save({"network": src.state_dict()}, tmp_path / "model.ckpt")
    dst = Tiny()
    ckpt = load_network(dst, tmp_path / "model.ckpt")
    assert "format_version" not in ckpt
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v)


def test_ddp_prefix_is_stripped(tmp_path):
    src = Tiny()
    torch.save({"network": {f"module.{k}": v for k, v in src.state_dict().items()}},
               tmp_path / "ddp.ckpt")
    load_network(Tiny(), tmp_path / "ddp.ckpt")


def test_mismatch_lists_missing_unexpected_and_shapes(tmp_path):
    state = Tiny(width=4).state_dict()
    state.pop("bn.running_var")
    state["extra.weight"] = torch.zeros(1)
    torch.save({"network": state}, tmp_path / "bad.ckpt")
    model = Tiny(width=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        load_network(model, tmp_path / "bad.ckpt")
    msg = str(err.value)
    assert "bad.ckpt" in msg
    assert "missing: bn.running_var" in msg
    assert "unexpected: extra.weight" in msg
    assert "shape mismatch: conv.weight: checkpoint (4, 2, 3, 3) vs model (3, 2, 3, 3)" in msg
    # never a silent partial load
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_not_a_checkpoint_and_missing_file(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.ckpt")
    with pytest.raises(CheckpointError, match="expected a dict with key 'network'"):
        read_checkpoint(tmp_path / "list.ckpt")
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "nope.ckpt")
    (tmp_path / "trunc.ckpt").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(CheckpointError, match="cannot read"):
        read_checkpoint(tmp_path / "trunc.ckpt")


def test_own_format_holds_everything_and_loads_weights_only(tmp_path):
    model = Tiny()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    cfg = config_to_dict(load_config(None, ["train.epochs=3"]))
    path = save_checkpoint(tmp_path / "ck" / "latest.ckpt", model, config=cfg, optimizer=opt,
                           scheduler=sched, epoch=2, step=17, extra={"note": "x"})
    assert [p.name for p in path.parent.iterdir()] == ["latest.ckpt"]  # no temp file left
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["format_version"] == 1 and ckpt["epoch"] == 2 and ckpt["step"] == 17
    assert config_from_dict(ckpt["config"]).train.epochs == 3
    assert set(ckpt) >= {"network", "optimizer", "scheduler", "scaler", "rng", "extra"}


def test_rng_state_round_trip():
    state = capture_rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def test_config_overrides_types_and_unknown_keys(tmp_path):
    cfg = load_config(REPO / "configs/spade_nuscenes.yaml", ["train.batch_size=2", "loss.mask_weight=0",
                                                      "data.root=/x", "loss.stage_scales=[4,2]"])
    assert cfg.train.batch_size == 2 and cfg.loss.mask_weight == 0.0
    assert isinstance(cfg.loss.mask_weight, float) and cfg.data.root == "/x"
    assert cfg.train.lr_cosine == pytest.approx(3e-3) and cfg.train.weight_decay == 4e-8
    with pytest.raises(ConfigError, match="unknown config key 'train.bogus'"):
        load_config(None, ["train.bogus=1"])
    with pytest.raises(ConfigError, match="'train.epochs': expected int"):
        load_config(None, ["train.epochs=many"])
    with pytest.raises(ConfigError, match="'data.radar_columns': expected bool"):
        load_config(None, ["data.radar_columns=3"])
    child = tmp_path / "child.yaml"
    (tmp_path / "base.yaml").write_text("train:\n  epochs: 7\n  seed: 3\n")
    child.write_text("base: base.yaml\ntrain:\n  seed: 5\n")
    cfg = load_config(child)
    assert (cfg.train.epochs, cfg.train.seed) == (7, 5)
    (tmp_path / "bad.yaml").write_text("trian:\n  epochs: 1\n")
    with pytest.raises(ConfigError, match="unknown config key 'trian'"):
        load_config(tmp_path / "bad.yaml")


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_checkpoint_permissions_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = save_checkpoint(tmp_path / "latest.ckpt", Tiny())
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask          # 0644 / 0664, not 0600


def test_full_disk_keeps_the_previous_checkpoint_and_says_so(tmp_path, monkeypatch):
    """torch's zip writer turns ENOSPC into "RuntimeError: [enforce fail at inline_container.cc]";
    the error names the space and the path, the old file survives, no temporary file stays."""
    first = save_checkpoint(tmp_path / "latest.ckpt", Tiny(), step=1)
    real_save = torch.save

    def full_disk(obj, f):
        f.write(b"partial")
        with open("/dev/full", "wb") as full:
            real_save(obj, full)
    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OutputWriteError, match=f"no space left on device writing {first}; the previous "
                                               "latest.ckpt is unchanged"):
        save_checkpoint(first, Tiny(), step=2)
    monkeypatch.undo()
    assert read_checkpoint(first)["step"] == 1 and sorted(os.listdir(tmp_path)) == ["latest.ckpt"]


def test_orphaned_temporary_files_and_epoch_pruning_past_999(tmp_path):
    for name in (".latest.ckpt.123-ab12cd34.tmp", ".epoch_002.ckpt.9-0f0f0f0f.tmp", "epoch_998.ckpt", "epoch_999.ckpt",
                 "epoch_1000.ckpt", "epoch_1001.ckpt", "notes.txt"):
        (tmp_path / name).write_bytes(b"x" * 10)
    assert remove_orphaned_temp_files(tmp_path) == (2, 20)
    prune_epoch_checkpoints(tmp_path, keep=2)          # as text, epoch_999 sorts after epoch_1001
    assert sorted(os.listdir(tmp_path)) == ["epoch_1000.ckpt", "epoch_1001.ckpt", "notes.txt"]


def test_config_numbers_as_yaml_1_1_strings_and_lower_bounds():
    """`1e-3` is a string to YAML 1.1 (no dot): still a float key's value. Sizes and counts
    below their minimum name the key."""
    cfg = load_config(None, ["train.lr_base=1e-3", "train.lr_cosine=5E-3", "data.root=1e-3"])
    assert (cfg.train.lr_base, cfg.train.lr_cosine, cfg.data.root) == (1e-3, 5e-3, "1e-3")
    for bad, says in (("train.batch_size=0", "at least 1, got 0"), ("eval.batch_size=-2", "at least 1, got -2"),
                      ("train.lr_base=-1e-3", "at least 0, got -0.001"), ("data.num_workers=-1", "at least 0, got -1")):
        with pytest.raises(ConfigError, match=f"config key '{bad.split('=')[0]}': must be {says}"):
            load_config(None, [bad])
