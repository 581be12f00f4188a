"""Untrusted files never run code or overwrite other files (issue 20): checkpoints load weights
only, info files go through a restricted unpickler, lock files never follow links; a checkpoint
without a config says what eval.py evaluates. The malicious files are built here: unpickling a
`Planted` creates the folder `marker` (what an attacker's file would run instead)."""
import io
import json
import logging
import os
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import eval as eval_script
import train_DDP
from datasets.infos import InfoFileError, load_infos, save_infos
from models import SpaDe
from tools import export_weights
from utils.checkpoint import CheckpointError, read_checkpoint
from utils.config import config_to_dict, load_config
from utils.run_lock import RunLock, RunLockedError
from utils.safe_pickle import RestrictedUnpickler
from tiny_world import overrides, tiny_world

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Planted:
    """Unpickled, it calls os.mkdir(marker)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return tiny_world(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def spade_state():
    """A random SpaDe state_dict (an OrderedDict of tensors, as the released checkpoint's)."""
    torch.manual_seed(0)
    return SpaDe().state_dict()


def one_line_exit(capsys, excinfo, *needles):
    """The SystemExit's message (or stderr) is one line holding every needle."""
    text = str(excinfo.value.code) if isinstance(excinfo.value.code, str) else capsys.readouterr().err
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    for needle in needles:
        assert str(needle) in lines[0]
    return lines[0]


def test_checkpoints_load_weights_only(spade_state, world, tmp_path, capsys):
    marker = tmp_path / "marker"
    planted = tmp_path / "planted.ckpt"
    torch.save({"network": {"w": torch.zeros(1)}, "args": Planted(marker)}, planted)
    fix = rf"export_weights.py -m {planted} --trust-pickle"
    with pytest.raises(CheckpointError, match=rf"{planted} holds Python objects .*posix.mkdir.*{fix}"):
        read_checkpoint(planted)
    with pytest.raises(SystemExit) as exc:                       # eval.py -m
        eval_script.main(["-m", str(planted), "--quiet"])
    one_line_exit(capsys, exc, planted, "--trust-pickle")
    with pytest.raises(SystemExit) as exc:                       # export_weights.py without the flag
        export_weights.main(["-m", str(planted), "--out", str(tmp_path / "x.safetensors")])
    one_line_exit(capsys, exc, planted)
    out_dir = tmp_path / "run"                                   # auto-resume from a planted latest.ckpt
    (out_dir / "checkpoints").mkdir(parents=True)
    (out_dir / "checkpoints" / "latest.ckpt").write_bytes(planted.read_bytes())
    with pytest.raises(SystemExit) as exc:
        train_DDP.main(overrides(world, out_dir) + ["train.max_steps=1"])
    assert exc.value.code == 2
    one_line_exit(capsys, exc, out_dir / "checkpoints" / "latest.ckpt", "--trust-pickle")
    assert not marker.exists()

    bad = tmp_path / "bad.ckpt"                                  # a non-tensor in `network`
    torch.save({"network": {"w": torch.zeros(1), "conv.weight": 3}}, bad)
    with pytest.raises(CheckpointError, match=rf"{bad}: network\['conv.weight'\] is of type int"):
        read_checkpoint(bad)

    released = tmp_path / "released.ckpt"      # the released structure (an OrderedDict state_dict)
    state = torch.nn.Conv2d(2, 3, 3).state_dict()
    torch.save({"network": state}, released)
    assert all(torch.equal(v, state[k]) for k, v in read_checkpoint(released)["network"].items())
    trusted = tmp_path / "trusted.ckpt"                          # only --trust-pickle unpickles fully
    torch.save({"network": spade_state, "args": Planted(marker)}, trusted)
    out = tmp_path / "trusted.safetensors"
    export_weights.main(["-m", str(trusted), "--trust-pickle", "--out", str(out)])
    assert marker.is_dir()
    converted = read_checkpoint(out)["network"]
    assert converted.keys() == spade_state.keys()
    assert all(torch.equal(converted[k], v) for k, v in spade_state.items())


def test_info_files_use_a_restricted_unpickler(spade_state, tmp_path, capsys):
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps([{"cam_infos": {}}, Planted(marker)]))
    with pytest.raises(InfoFileError, match=rf"{evil}.*posix.mkdir"):
        load_infos(evil)
    weights = tmp_path / "X.safetensors"                         # chained: X.json names the pickle
    save_file({k: v.contiguous() for k, v in spade_state.items()}, weights)
    config = config_to_dict(load_config(None, [f"data.root={tmp_path}", f"data.val_infos={evil}"]))
    weights.with_suffix(".json").write_text(json.dumps({"config": config}))
    with pytest.raises(SystemExit) as exc:
        eval_script.main(["-m", str(weights), "--quiet"])
    one_line_exit(capsys, exc, evil, "posix.mkdir")
    assert not marker.exists()

    records = [{"schema_version": 1, "k": np.arange(3.0), "s": np.float64(2.5), "i": np.int64(3),
                "o": np.array([{"a": 1}], dtype=object), "t": (1, "x", None, True, {1, 2}, b"b")}]
    plain = pickle.dumps(records, 2)                             # NumPy arrays and scalars, both eras
    for data in (pickle.dumps(records, 5), plain, plain.replace(b"numpy.core.", b"numpy._core.")):
        (tmp_path / "np.pkl").write_bytes(data)
        loaded = load_infos(tmp_path / "np.pkl")[0]
        assert np.array_equal(loaded["k"], records[0]["k"]) and loaded["s"] == 2.5
        assert loaded["o"][0] == {"a": 1} and loaded["t"] == records[0]["t"]
    unpickler = RestrictedUnpickler(io.BytesIO(b""), "f.pkl")
    assert unpickler.find_class("numpy._core.numeric", "_frombuffer") is not None
    with pytest.raises(pickle.UnpicklingError, match="f.pkl.*builtins.eval"):
        unpickler.find_class("builtins", "eval")
    save_infos(records, tmp_path / "ours.pkl")                   # ours: readable by plain pickle
    with open(tmp_path / "ours.pkl", "rb") as f:
        assert pickle.load(f)[0]["t"] == records[0]["t"]


def test_lock_files_never_follow_links_or_truncate_other_files(tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    for name in ("run.lock", "out.json.lock"):
        (tmp_path / name).symlink_to(victim)
    with pytest.raises(RunLockedError, match=rf"{tmp_path / 'run.lock'} is a symbolic link"):
        RunLock(tmp_path / "run.lock", "train.out_dir x", "fix").acquire()
    with pytest.raises(SystemExit) as exc:                       # eval.py --out X.json: X.json.lock
        eval_script.main(["-m", str(tmp_path / "none.ckpt"), "--out", str(tmp_path / "out.json")])
    one_line_exit(capsys, exc, tmp_path / "out.json.lock")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / ".lock").symlink_to(tmp_path / "absent")  # dangling: would create it
    with pytest.raises(RunLockedError, match="symbolic link"):
        RunLock(tmp_path / "dir" / ".lock", "--save-pred dir", "fix").acquire()
    assert not (tmp_path / "absent").exists()
    foreign = tmp_path / "foreign.lock"                          # a file that is no lock of ours
    foreign.write_text("not a lock\n")
    with pytest.raises(RunLockedError, match=rf"{foreign} is not a lock file"):
        RunLock(foreign, "x", "fix").acquire()
    (tmp_path / "hard.lock").hardlink_to(victim)
    with pytest.raises(RunLockedError, match="hard link"):
        RunLock(tmp_path / "hard.lock", "x", "fix").acquire()
    os.mkfifo(tmp_path / "fifo.lock")
    with pytest.raises(RunLockedError, match="not a regular file"):
        RunLock(tmp_path / "fifo.lock", "x", "fix").acquire()
    assert victim.read_text() == "precious\n" and foreign.read_text() == "not a lock\n"
    with RunLock(tmp_path / "fresh.lock", "x", "fix"):           # ours: created, then taken over
        assert json.loads((tmp_path / "fresh.lock").read_text())["pid"] == os.getpid()
    (tmp_path / "empty.lock").touch()
    with RunLock(tmp_path / "empty.lock", "x", "fix"):
        pass


def test_checkpoint_without_config_says_what_is_evaluated(spade_state, tmp_path, caplog):
    released = tmp_path / "model.ckpt"
    torch.save({"network": spade_state}, released)
    defaults = load_config()
    with caplog.at_level(logging.WARNING), pytest.raises(SystemExit):
        eval_script.main(["-m", str(released), "--quiet", "--infos", str(tmp_path / "none.pkl")])
    lines = [r.getMessage() for r in caplog.records if "no config in" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert lines[0].startswith(f"no config in {released}: using the built-in defaults")
    assert f"data.root={defaults.data.root}, data.val_infos={tmp_path / 'none.pkl'};" in lines[0]
    assert "--config configs/spade_nuscenes.yaml --data-root" in lines[0]
