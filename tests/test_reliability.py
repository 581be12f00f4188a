"""Faults in training (docs/reliability.md): bad samples recorded and counted, non-finite inputs
named, one run per out_dir, resume of other settings refused unless named, a full disk, and user
errors that are one line and stop torchrun at once. The tiny synthetic world, corrupt copies of
single files in the test's own folder."""
import errno
import json
import logging
import os
import re
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import yaml

import datasets.nuscenes_dataset as nuscenes_dataset
import train_DDP
import utils.run_lock as run_lock
import utils.engine.train as train_loop
from datasets.infos import entry_path, load_infos, save_infos
from utils.checkpoint import read_checkpoint
from utils.config import config_to_dict, load_config
from utils.run_lock import RunLock, RunLockedError
from conftest import REPO
from tiny_world import linked_world, overrides, replace_file, tiny_world

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return tiny_world(tmp_path_factory.getbasetemp())


def _cfg(world, out_dir, *extra):
    return load_config(None, overrides(world, out_dir) + list(extra))


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def dead_pid() -> int:
    """The pid of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


@pytest.fixture(scope="module")
def faulty_run(world, tmp_path_factory):
    """Two steps (one epoch) on a linked copy of the tiny world whose train sample 0 has a
    truncated image and whose sample 2 gets a NaN in its radar inputs; the out_dir holds an
    orphaned checkpoint temp file and the run.lock of a process that died."""
    base = tmp_path_factory.mktemp("faulty")
    root = linked_world(world, base / "root")
    records = load_infos(world / "nuscenes_radar_5sweeps_infos_train.pkl")
    image = root / entry_path(records[0]["cam_infos"]["CAM_FRONT"])
    replace_file(image, image.read_bytes()[:2000])
    nan_name = entry_path(records[2]["cam_infos"]["CAM_FRONT"]).split("/")[-1][:-4]
    out = base / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / ".latest.ckpt.999-0badf00d.tmp").write_bytes(b"\0" * 1000)
    (out / "run.lock").write_text(json.dumps({"pid": dead_pid(), "host": socket.gethostname()}))
    real_train_sample = nuscenes_dataset.RadarCameraDataset._train_sample

    def nan_radar(self, frame, rng):
        sample = real_train_sample(self, frame, rng)
        if frame.name == nan_name:
            sample["radar_pts"][0] = sample["radar_map"][0, 0, 0] = np.nan
        return sample
    messages = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger("utils.engine.train")
    args = overrides(world, out) + [f"data.root={root}", "train.max_steps=2", "train.image_every=0"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nuscenes_dataset.RadarCameraDataset, "_train_sample", nan_radar)
        patch.setattr(logger, "level", logging.INFO)
        logger.addHandler(handler)
        try:
            result = train_loop.train(load_config(None, args))
        finally:
            logger.removeHandler(handler)
    return {"args": args, "out": out, "image": image, "nan_name": nan_name, "result": result,
            "log": "\n".join(messages)}


def test_bad_samples_are_recorded_counted_and_summarised(faulty_run):
    out, result = faulty_run["out"], faulty_run["result"]
    (skip,) = _lines(out / "skips.jsonl")
    assert skip["index"] == 0 and skip["file"] == str(faulty_run["image"]) and skip["step"] in (0, 1)
    assert "no JPEG end marker" in skip["reason"]
    assert result["skipped_samples"] == 1
    assert read_checkpoint(out / "checkpoints" / "latest.ckpt")["extra"]["skipped_samples"] == 1
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(out / "tb")).Reload()
    assert [e.value for e in events.Scalars("data/skipped_samples")] == [1.0]
    assert f"1 bad samples replaced: see {out / 'skips.jsonl'}" in faulty_run["log"]


def test_nonfinite_step_names_its_input(faulty_run):
    steps = _lines(faulty_run["out"] / "train_log.jsonl")
    named = [s for s in steps if s["skipped"] and s["nonfinite_inputs"]]
    assert len(named) == 1 and named[0]["nonfinite_inputs"] == [f"sample 2 ({faulty_run['nan_name']})"]


def test_run_folder_start_up_and_provenance(faulty_run):
    """Start-up summary; config.yaml, run_info.json and the checkpoint carry the config, the
    git commit and the library versions; the dead run's lock and the orphaned temp file are gone."""
    out, cfg = faulty_run["out"], load_config(None, faulty_run["args"])
    assert yaml.safe_load((out / "config.yaml").read_text()) == config_to_dict(cfg)
    info = json.loads((out / "run_info.json").read_text())
    ckpt = read_checkpoint(out / "checkpoints" / "latest.ckpt")
    assert info["provenance"] == ckpt["extra"]["provenance"]
    assert info["provenance"]["torch"] == torch.__version__ and "numpy" in info["provenance"]
    assert info["provenance"]["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}(\+dirty)?",
                                                                    info["provenance"]["git_commit"])
    text = faulty_run["log"]
    assert "world size 1" in text and "4 training samples" in text and "steps: 2, 2 per epoch" in text
    assert "train.max_steps=2" in text and f"train.out_dir={out}" in text and "git " in text
    assert "removed 1 temporary files" in text
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch_001.ckpt", "latest.ckpt"]
    assert not (out / "run.lock").exists()


def test_resume_of_other_settings_refused_unless_named(faulty_run, tmp_path, caplog):
    changed = faulty_run["args"] + ["train.lr_base=2e-3", "train.max_steps=3"]
    with pytest.raises(train_loop.ResumeMismatchError,
                       match=r"train.lr_base: 0.001 \(this run: 0.002\); train.max_steps: 2 \(this run: 3\)"
                             r"\. To continue it with this run's settings pass --resume"):
        train_loop.train(load_config(None, changed))
    latest = faulty_run["out"] / "checkpoints" / "latest.ckpt"
    with caplog.at_level(logging.WARNING, logger="utils.engine.train"):
        result = train_loop.train(load_config(None, changed + [f"train.out_dir={tmp_path}",
                                                               f"train.resume={latest}"]))
    assert result["step"] == 3 and len(result["history"]) == 1
    assert result["skipped_samples"] == 1 + len(_lines(tmp_path / "skips.jsonl"))   # counted on
    assert "trained with other settings; continuing with this run's: train.lr_base" in caplog.text


def test_second_run_on_an_out_dir_is_refused(world, tmp_path, capsys):
    with RunLock(tmp_path / "run.lock", "x", "y"):
        with pytest.raises(RunLockedError, match=rf"train.out_dir {tmp_path} is in use by another run "
                                                 rf"\(pid {os.getpid()} on {re.escape(socket.gethostname())}"):
            train_loop.train(_cfg(world, tmp_path))
        with pytest.raises(SystemExit) as exc:
            train_DDP.main(overrides(world, tmp_path))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: train.out_dir {tmp_path} is in use")
    assert not (tmp_path / "tb").exists()             # refused before writing anything


def test_lock_without_flock_decides_by_the_holder(tmp_path, monkeypatch):
    """File systems without flock: a live holder refuses (with how to clear a stale lock), a
    dead one on this host is taken over, one on another host refuses."""
    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")
    monkeypatch.setattr(run_lock.fcntl, "flock", no_flock)
    path = tmp_path / "run.lock"
    for holder, refused in (({"pid": os.getpid(), "host": socket.gethostname()}, True),
                            ({"pid": 1, "host": "elsewhere"}, True),
                            ({"pid": dead_pid(), "host": socket.gethostname()}, False)):
        path.write_text(json.dumps(holder))
        if refused:
            with pytest.raises(RunLockedError, match=f"pid {holder['pid']} on {holder['host']}.*delete {path}"):
                RunLock(path, "out", "fix").acquire()
        else:
            lock = RunLock(path, "out", "fix").acquire()
            assert json.loads(path.read_text())["pid"] == os.getpid()
            lock.release()
            assert not path.exists()


def test_full_disk_at_a_training_checkpoint(world, tmp_path, monkeypatch, capsys):
    """The checkpoint of step 2 meets a full disk: one line naming the space and the file, the
    step-1 latest.ckpt intact, no temporary file left."""
    real_save, calls = torch.save, []

    def save(obj, f):
        calls.append(1)
        if len(calls) == 2:
            with open("/dev/full", "wb") as full:
                real_save(obj, full)
        real_save(obj, f)
    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(SystemExit) as exc:
        train_DDP.main(overrides(world, tmp_path) + ["train.max_steps=2", "train.ckpt_every=1"])
    monkeypatch.undo()
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"error: no space left on device writing {tmp_path / 'checkpoints/epoch_001.ckpt'}; "
                       "epoch_001.ckpt was not written and the partial temporary file was removed: "
                       f"free space in {tmp_path / 'checkpoints'} and run again")
    assert read_checkpoint(tmp_path / "checkpoints/latest.ckpt")["step"] == 1
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["latest.ckpt"]


def test_missing_tensorboard_and_mixed_argument_order(world, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(SystemExit) as exc:
        train_DDP.main(overrides(world, tmp_path) + ["train.max_steps=1"])
    assert exc.value.code == 2
    assert "torch.utils.tensorboard is needed here but cannot be imported" in capsys.readouterr().err
    seen = []
    monkeypatch.setattr(train_DDP, "train", seen.append)
    train_DDP.main(["train.seed=3", "--resume", "x.ckpt", "train.batch_size=2"])   # overrides on both sides
    assert (seen[0].train.seed, seen[0].train.resume, seen[0].train.batch_size) == (3, "x.ckpt", 2)


def test_user_error_stops_torchrun_without_restarts(world, tmp_path):
    """An empty train split under `torchrun --max-restarts 3`: one attempt, one line per worker
    naming the file and the fix, no traceback of ours, exit code not 0."""
    empty = tmp_path / "empty.pkl"
    save_infos([], empty)
    attempts = tmp_path / "attempts.txt"
    script = tmp_path / "train_counting.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(REPO)!r})
        with open({str(attempts)!r}, "a") as f:
            f.write(os.environ["TORCHELASTIC_RESTART_COUNT"] + "\\n")
        import train_DDP
        train_DDP.main()
    """))
    job = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "--max-restarts", "3", str(script), *overrides(world, tmp_path / "run"),
         f"data.train_infos={empty}"],
        cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert job.returncode != 0
    assert attempts.read_text().split() == ["0", "0"]             # both workers, first attempt only
    errors = [line for line in job.stderr.splitlines() if line.startswith("error:")]
    assert errors and all(line == f"error: info file {empty} holds no records (create_infos found no "
                          "sample of its split); point data.train_infos / data.val_infos (--infos) at "
                          "a split with samples" for line in errors)
    assert "InfoFileError" not in job.stderr and "train_DDP.py" not in job.stderr


def test_demo_tools_never_delete_data_they_did_not_write(tmp_path):
    """The demo/ablation/science world and run folders: a data.root that holds another data set
    (here a nuScenes-like root without splits.json) is refused untouched, also by the generator's
    --overwrite; a run folder of other settings is moved aside, not deleted."""
    from datasets.synthetic import generate, load_synthetic_config
    from utils.config import Config, ConfigError
    from utils.engine.runs import ensure_world, prepare_run

    root = tmp_path / "nuscenes"
    (root / "v1.0-trainval").mkdir(parents=True)
    (root / "v1.0-trainval" / "sample.json").write_text("[]")
    (root / "samples").mkdir()
    (root / "samples" / "frame.jpg").write_bytes(b"jpeg")
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    cfg = Config()
    cfg.data.root = str(root)
    with pytest.raises(ConfigError, match="no synthetic_config.yaml"):
        ensure_world(cfg)
    with pytest.raises(FileExistsError, match="did not write"):
        generate(load_synthetic_config(None, ["scenes=1"]), root, overwrite=True, progress=False)
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before

    out_dir = tmp_path / "runs" / "run"
    out_dir.mkdir(parents=True)
    (out_dir / "notes.txt").write_text("mine")
    cfg.train.out_dir = str(out_dir)
    assert prepare_run(cfg) is False and not out_dir.exists()
    [aside] = (tmp_path / "runs").glob("run.replaced-*")
    assert (aside / "notes.txt").read_text() == "mine"
