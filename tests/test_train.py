"""Training engine: schedule, sharding, exact resume, non-finite steps, and a 2-process gloo run
under torchrun --max-restarts whose killed worker comes back from latest.ckpt by itself."""
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch.utils.data import DistributedSampler

import utils.engine.train as train_loop
from utils.checkpoint import read_checkpoint
from utils.config import load_config
from datasets.samplers import ResumableDistributedSampler
from utils.schedule import lr_at, total_steps
from tiny_world import overrides, tiny_world

torch.set_num_threads(2)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return tiny_world(tmp_path_factory.getbasetemp())


def _cfg(world, out_dir, *extra):
    return load_config(None, overrides(world, out_dir) + list(extra))


def _log(out_dir, name="train_log.jsonl"):
    return [json.loads(line) for line in (Path(out_dir) / name).read_text().splitlines()]


def test_released_schedule():
    assert lr_at(0, 100, 1e-3, 3e-3) == pytest.approx(4e-3)
    assert lr_at(50, 100, 1e-3, 3e-3) == pytest.approx(2.5e-3)
    assert lr_at(100, 100, 1e-3, 3e-3) == pytest.approx(1e-3)
    assert lr_at(25, 100, 1e-3, 3e-3) == pytest.approx(3e-3 * 0.5 * (1 + math.sqrt(0.5)) + 1e-3)
    assert total_steps(30, 7) == 210 and total_steps(30, 7, max_steps=5) == 5
    with pytest.raises(ValueError, match="no steps"):
        total_steps(3, 0)


def test_sampler_shards_epochs_and_starts_mid_epoch():
    data = list(range(11))
    ranks = [ResumableDistributedSampler(data, 2, r, seed=3) for r in (0, 1)]
    for s in ranks:
        s.set_epoch(4)
    shards = [list(s) for s in ranks]
    reference = DistributedSampler(data, 2, 0, shuffle=True, seed=3)
    reference.set_epoch(4)
    assert [i for _, i in shards[0]] == list(reference)          # same order as torch's sampler
    assert all(e == 4 for shard in shards for e, _ in shard)      # the epoch travels with the index
    assert set(i for shard in shards for _, i in shard) == set(data)   # 11 samples, 6 per rank
    ranks[0].set_start(4)
    assert list(ranks[0]) == shards[0][4:] and len(ranks[0]) == 2
    ranks[0].set_epoch(5)
    ranks[0].set_start(0)
    assert [i for _, i in ranks[0]] != [i for _, i in shards[0]]


def test_resume_mid_epoch_reproduces_the_uninterrupted_run(world, tmp_path):
    """4 steps straight vs 3 steps, stop, resume (with loader workers) to 4: identical losses,
    learning rates, validation and weights. 4 training samples at batch 2: step 3 is mid-epoch.
    Validation every 2 steps runs in both and changes nothing."""
    val = ("train.val_every=2", "train.val_samples=2")
    straight = train_loop.train(_cfg(world, tmp_path / "a", "train.max_steps=4", *val))
    first = train_loop.train(_cfg(world, tmp_path / "b", "train.max_steps=4", *val), stop_after=3)
    assert first["step"] == 3 and read_checkpoint(tmp_path / "b/checkpoints/latest.ckpt")["step"] == 3
    resumed = train_loop.train(_cfg(world, tmp_path / "b", "train.max_steps=4", "data.num_workers=2",
                                    "train.keep_epoch_ckpts=1", *val))
    assert len(straight["history"]) == 4 and len(resumed["history"]) == 1
    assert first["history"] + resumed["history"] == straight["history"]
    assert [r["lr"] for r in _log(tmp_path / "a")] == [r["lr"] for r in _log(tmp_path / "b")]
    a = read_checkpoint(tmp_path / "a/checkpoints/latest.ckpt")
    b = read_checkpoint(tmp_path / "b/checkpoints/latest.ckpt")
    assert a["step"] == b["step"] == 4
    assert all(torch.equal(a["network"][k], b["network"][k]) for k in a["network"])
    assert sorted(p.name for p in (tmp_path / "a/checkpoints").glob("*.ckpt")) == [
        "epoch_001.ckpt", "epoch_002.ckpt", "latest.ckpt"]
    assert sorted(p.name for p in (tmp_path / "b/checkpoints").glob("*.ckpt")) == [
        "epoch_002.ckpt", "latest.ckpt"]                       # keep_epoch_ckpts=1 pruned epoch 1
    assert os.path.samefile(tmp_path / "b/checkpoints/latest.ckpt", tmp_path / "b/checkpoints/epoch_002.ckpt")
    assert (tmp_path / "a/tb").is_dir()
    validations = [[{k: v for k, v in r.items() if k != "seconds"} for r in _log(tmp_path / run, "val_log.jsonl")]
                   for run in ("a", "b")]
    assert [r["step"] for r in validations[0]] == [2, 4] and validations[0] == validations[1]
    assert validations[0][0]["num_samples"] == 2 and validations[0][1]["mae_mm"]["80"] > 0


def test_nonfinite_steps_are_skipped_then_stop_the_run(world, tmp_path, monkeypatch):
    real_loss, calls = train_loop.spade_loss, []

    def loss_nan_at(bad):
        def loss(*args, **kwargs):
            terms = real_loss(*args, **kwargs)
            calls.append(1)
            if len(calls) in bad:
                terms["total"] = terms["total"] * float("nan")
            return terms
        return loss

    # On the tiny world (a 1 x 1 deepest map, batch 2) train-mode batch norm can itself give an
    # infinite gradient at the first step: the natural pattern is the baseline.
    natural = train_loop.train(_cfg(world, tmp_path / "n", "train.max_steps=3"))
    natural_skips = [r["skipped"] for r in _log(tmp_path / "n")]
    monkeypatch.setattr(train_loop, "spade_loss", loss_nan_at({2}))
    result = train_loop.train(_cfg(world, tmp_path / "a", "train.max_steps=3"))
    assert not natural_skips[1]
    assert [r["skipped"] for r in _log(tmp_path / "a")] == [natural_skips[0], True, natural_skips[2]]
    assert result["step"] == 3 and result["nonfinite_steps"] == natural["nonfinite_steps"] + 1

    calls.clear()
    monkeypatch.setattr(train_loop, "spade_loss", loss_nan_at(set(range(1, 100))))
    with pytest.raises(train_loop.NonFiniteLossError, match="2 steps in a row"):
        train_loop.train(_cfg(world, tmp_path / "b", "train.max_steps=6", "train.max_nonfinite_in_row=2"))
    assert len(calls) == 2


def test_torchrun_max_restarts_resumes_a_killed_worker_from_latest(world, tmp_path):
    """`torchrun --max-restarts 1` with two gloo workers; in the first attempt rank 1 dies in
    step 2. torchrun restarts both, they find latest.ckpt in out_dir and finish the 4 steps."""
    script = tmp_path / "dying_train.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(REPO)!r})
        import utils.engine.train as tl
        real_loss, calls = tl.spade_loss, []
        def loss(*args, **kwargs):
            calls.append(1)
            first_attempt = os.environ["TORCHELASTIC_RESTART_COUNT"] == "0"
            if first_attempt and os.environ["RANK"] == "1" and len(calls) == 3:
                os._exit(17)
            return real_loss(*args, **kwargs)
        tl.spade_loss = loss
        import train_DDP
        train_DDP.main()
    """))
    out_dir = tmp_path / "run"
    job = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "--max-restarts", "1", str(script), *overrides(world, out_dir), "train.max_steps=4"],
        cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
        timeout=300)
    assert job.returncode == 0, job.stderr[-3000:]
    assert "failed (exitcode: 17) local_rank: 1" in job.stderr       # torchrun saw the death
    resumed = [line for line in job.stderr.splitlines() if "resuming from" in line]
    assert resumed and f"{out_dir / 'checkpoints/latest.ckpt'} at step " in resumed[0]
    saved = int(resumed[0].split("at step ")[1].split()[0])
    assert saved in (1, 2)       # 4 samples = 1 step per epoch at 2 x 2; step 2's save may race
    latest = read_checkpoint(out_dir / "checkpoints/latest.ckpt")
    assert latest["step"] == 4 and latest["extra"]["world_size"] == 2
    steps = [r["step"] for r in _log(out_dir)]
    assert steps == [0, 1, 2, 3]          # steps run again after the restart are logged once
    assert all(math.isfinite(r["loss"]["total"]) for r in _log(out_dir))


def test_resume_purges_the_step_log_from_the_resumed_step(tmp_path):
    log_path = tmp_path / "train_log.jsonl"
    log_path.write_text("".join(json.dumps({"step": s}) + "\n" for s in (0, 1, 2, 3)) + '{"step": 4, "lo')
    train_loop._purge_step_log(log_path, 2)          # a crash cut the last line; resuming at 2
    assert [json.loads(line)["step"] for line in log_path.read_text().splitlines()] == [0, 1]
