"""Training engine behind train_DDP.py (docs/spade.md section 4), for torchrun or one plain process.

    result = train(cfg)          # -> {"step", "checkpoint", "nonfinite_steps", "history"}

One optimiser step per batch of `train.batch_size` samples per rank; the released AdamW and
cosine learning rate (utils/schedule.py) over `train.max_steps` or epochs x steps per epoch.
Checkpoints (out_dir/checkpoints): `epoch_NNN.ckpt` after every epoch (the newest
`train.keep_epoch_ckpts` kept, 0 = all) and `latest.ckpt` after
every epoch, every `train.ckpt_every` steps and at the end. They hold the global step; as the
sample order and every sample's augmentation depend only on (seed, epoch, index), a run resumed
from one continues exactly. A run whose out_dir already has `latest.ckpt` resumes from it by
itself (that is how torchrun --max-restarts recovers a killed worker).
Logs: TensorBoard under out_dir/tb, one JSON line per step in out_dir/train_log.jsonl (rank 0),
one per skipped bad sample in out_dir/skips.jsonl (strict JSON: a non-finite loss is null, its
reason under `nulls`, utils/jsonio.py). Rank 0 holds out_dir/run.lock for the whole
run (a second run on the same out_dir is refused) and writes config.yaml and run_info.json
(git commit, library versions) there; a checkpoint in out_dir written with other training
settings is resumed only when named by train.resume (--resume).
Validation (`train.val_every` > 0): rank 0 evaluates the released metrics on `train.val_samples`
fixed val frames every that many steps and at the end, to TensorBoard (`val/...`) and
out_dir/val_log.jsonl; it reads no training randomness, so it never changes the trained weights.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional

import numpy as np
import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from datasets.build import build_dataset
from datasets.samplers import EpochIndexed, ResumableDistributedSampler
from datasets.workers import shutdown_workers, worker_options
from models import SpaDe, pad_to_network
from models.loss import spade_loss
from utils.checkpoint import (CheckpointError, link_latest, load_network_state, prune_epoch_checkpoints,
                              read_checkpoint, restore_rng_state, save_checkpoint)
from utils.config import Config, ConfigError, changed_keys, check_config, config_to_dict, normalized_config_dict
from utils.deps import require
from utils.distributed import DistInfo, all_gather_objects, all_reduce, barrier, init_distributed
from utils.engine.evaluate import NULL_REASONS, evaluate, model_predictor
from utils.jsonio import dumps
from utils.engine.evaluators import evaluators_for
from utils.files import atomic_write, remove_orphaned_temp_files
from utils.provenance import provenance
from utils.run_lock import RunLock
from utils.schedule import lr_at, set_lr, total_steps
from utils.visualize import sample_panel, to_rgb_chw

log = logging.getLogger(__name__)
# What a training step reads on the device: the network's inputs and the loss's targets.
STEP_KEYS = ("img", "radar_map", "radar_pts", "radar_count", "lidar_map", "seg_target")
FLOAT_INPUTS = ("radar_map", "radar_pts", "lidar_map")      # checked when a step is not finite
# Settings that cannot change the trained weights: paths, logging, checkpoint cadence, workers
# (a sample depends only on seed, epoch and index) and the whole eval section.
RUN_ONLY_KEYS = {"train": ("out_dir", "resume", "log_every", "image_every", "ckpt_every",
                           "keep_epoch_ckpts", "val_every", "val_samples"), "data": ("num_workers",)}


class NonFiniteLossError(RuntimeError):
    """Too many optimiser steps in a row had a non-finite loss or gradient."""


class ResumeMismatchError(RuntimeError):
    """out_dir holds a checkpoint of other training settings and no --resume asked for it."""


def build_loader(cfg: Config, dist_info: DistInfo) -> tuple[DataLoader, ResumableDistributedSampler]:
    dataset = build_dataset(cfg, "train")
    sampler = ResumableDistributedSampler(dataset, dist_info.world_size, dist_info.rank,
                                          seed=cfg.train.seed)
    loader = DataLoader(EpochIndexed(dataset), batch_size=cfg.train.batch_size, sampler=sampler,
                        pin_memory=dist_info.device.type == "cuda", drop_last=True,
                        **worker_options(cfg.data.num_workers, persistent=True))
    return loader, sampler


def build_val_subset(cfg: Config) -> Optional[Subset]:
    """`train.val_samples` eval-mode frames of data.val_infos, evenly spaced (None when
    validation is off)."""
    if cfg.train.val_every <= 0:
        return None
    dataset = build_dataset(cfg, "val")
    count = min(max(cfg.train.val_samples, 1), len(dataset))
    return Subset(dataset, sorted(set(np.linspace(0, len(dataset) - 1, count).round().astype(int).tolist())))


def training_signature(config: Dict[str, Any]) -> Dict[str, Any]:
    """A config dict (`config_to_dict`) without RUN_ONLY_KEYS and the eval section: runs with
    equal signatures train the same weights. Older checkpoints' configs are read in today's keys
    (`normalized_config_dict`), so adding a key at its default does not change a signature."""
    config = normalized_config_dict(config)
    return {section: {k: v for k, v in values.items() if k not in RUN_ONLY_KEYS.get(section, ())}
            for section, values in config.items() if section != "eval"}


def signature_differences(saved: Dict[str, Any], current: Dict[str, Any]) -> List[str]:
    """'key: saved value (this run: value)' for every training setting in which two config
    dicts differ."""
    return [f"{key}: {old!r} (this run: {new!r})" for key, (old, new)
            in changed_keys(training_signature(current), training_signature(saved)).items()]


def find_resume(cfg: Config) -> Optional[Path]:
    """`train.resume` if set, else out_dir/checkpoints/latest.ckpt when it exists."""
    if cfg.train.resume:
        return Path(cfg.train.resume)
    latest = Path(cfg.train.out_dir) / "checkpoints" / "latest.ckpt"
    return latest if latest.is_file() else None


def _purge_step_log(path: Path, step: int) -> None:
    """Drop the records of steps >= `step` (to be run again after a resume) and a line cut off
    by a crash, as TensorBoard's purge_step does for its events."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = []
    for line in lines:
        try:
            if line.endswith("\n") and json.loads(line)["step"] < step:
                kept.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            pass
    if len(kept) != len(lines):
        path.write_text("".join(kept))


# why a step record's value can be null (the JSON lines are strict: utils/jsonio.py)
STEP_NULL_REASONS = {"/loss/*": "undefined: the loss was not finite at this step, which was skipped "
                                "without an optimiser update (nonfinite_inputs names the samples whose "
                                "inputs were not finite)"}


class _Logger:
    """Rank 0's TensorBoard writer, JSON-lines step log and progress bar (no-ops elsewhere)."""

    def __init__(self, cfg: Config, dist_info: DistInfo, step: int, total: int):
        self.cfg, self.main = cfg, dist_info.is_main
        self.world = dist_info.world_size
        self.window: Dict[str, float] = {}
        self.window_steps, self.data_s, self.start = 0, 0.0, time.perf_counter()
        if not self.main:
            return
        tensorboard = require("torch.utils.tensorboard", 'pip install -e . (or pip install tensorboard)')
        out = Path(cfg.train.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.writer = tensorboard.SummaryWriter(str(out / "tb"), purge_step=step)
        _purge_step_log(out / "train_log.jsonl", step)
        _purge_step_log(out / "val_log.jsonl", step + 1)      # validation at `step` is kept
        _purge_step_log(out / "skips.jsonl", step)
        self.jsonl = open(out / "train_log.jsonl", "a")
        self.val_jsonl = open(out / "val_log.jsonl", "a")
        self.skips_jsonl = open(out / "skips.jsonl", "a")
        self.bar = tqdm(total=total, initial=step, desc="train", unit="step", dynamic_ncols=True)

    def step(self, step: int, epoch: int, lr: float, terms: Dict[str, float], data_s: float,
             skipped: bool, nonfinite_inputs: Optional[List[str]] = None) -> None:
        """One step's record; a skipped (non-finite) step also lists the samples whose inputs
        were not finite."""
        self.window_steps += 1
        self.data_s += data_s
        for k, v in terms.items():
            self.window[k] = self.window.get(k, 0.0) + v
        if self.main:
            record = {"step": step, "epoch": epoch, "lr": lr, "skipped": skipped, "loss": terms}
            if skipped:
                record["nonfinite_inputs"] = nonfinite_inputs or []
            self.jsonl.write(dumps(record, reasons=STEP_NULL_REASONS) + "\n")
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{terms['total']:.4g}", lr=f"{lr:.2e}", refresh=False)
        if (step + 1) % self.cfg.train.log_every == 0:
            self.flush_scalars(step, lr)

    def flush_scalars(self, step: int, lr: float) -> None:
        """Window means of every loss term over all ranks, lr, samples/s, data-time fraction."""
        names = sorted(self.window)
        means = torch.tensor([self.window[k] / self.window_steps for k in names], dtype=torch.float64)
        all_reduce(means, "mean")
        elapsed = time.perf_counter() - self.start
        if self.main:
            for k, v in zip(names, means.tolist()):
                self.writer.add_scalar(f"loss/{k}", v, step)
            self.writer.add_scalar("train/lr", lr, step)
            self.writer.add_scalar("perf/samples_per_s", self.window_steps * self.world
                                   * self.cfg.train.batch_size / elapsed, step)
            self.writer.add_scalar("perf/data_time_fraction", self.data_s / elapsed, step)
            self.jsonl.flush()
        self.window, self.window_steps, self.data_s = {}, 0, 0.0
        self.start = time.perf_counter()

    def images(self, step: int, batch: Dict[str, torch.Tensor], preds: Dict[str, torch.Tensor]) -> None:
        if not self.main:
            return
        h, w = batch["img"].shape[-2:]
        picture = sample_panel(batch["img"][0], batch["radar_map"][0],
                               preds["depth_s1"][0, 0, :h, :w], batch["lidar_map"][0],
                               mask=preds["mask_s1"][0, 0, :h, :w],
                               target_mask=batch["seg_target"][0] if "seg_target" in batch else None,
                               columns=3)
        self.writer.add_image("train/panel", to_rgb_chw(picture), step)

    def validation(self, step: int, summary: Dict[str, Any]) -> None:
        """Released metrics (mm) of the validation frames after `step` steps."""
        if not self.main:
            return
        scalars = {f"val/{kind}_{r}m": v for kind in ("mae_mm", "rmse_mm") for r, v in summary[kind].items()}
        if "dense" in summary:
            scalars.update({f"val/dense_{kind}_{r}m": v for kind in ("mae_mm", "rmse_mm")
                            for r, v in summary["dense"][kind].items()})
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, step)
        self.val_jsonl.write(dumps({"step": step, **summary}, reasons=NULL_REASONS) + "\n")
        self.val_jsonl.flush()
        far = max(summary["mae_mm"], key=int)
        self.message(f"step {step}: val MAE 0-{far} m {summary['mae_mm'][far]:.0f} mm, "
                     f"RMSE {summary['rmse_mm'][far]:.0f} mm ({summary['num_samples']} frames)")

    def bad_samples(self, step: int, records: List[Dict[str, Any]], total: int) -> None:
        """Samples replaced by the next one at `step` (every rank's): a line each in skips.jsonl
        and on the console, and the running count in TensorBoard (`data/skipped_samples`)."""
        if not self.main:
            return
        for record in records:
            self.skips_jsonl.write(dumps({"step": step, **record}) + "\n")
            self.message(f"step {step}: bad sample {record['index']} skipped ({record['reason']})")
        self.skips_jsonl.flush()
        self.writer.add_scalar("data/skipped_samples", total, step)

    def message(self, text: str) -> None:
        if self.main:
            self.bar.write(text) if hasattr(self, "bar") else log.info(text)

    def close(self) -> None:
        if self.main:
            self.bar.close()
            self.writer.close()
            self.jsonl.close()
            self.val_jsonl.close()
            self.skips_jsonl.close()


def _backward_and_step(terms: Dict[str, torch.Tensor], model: torch.nn.Module,
                       optimizer: torch.optim.Optimizer, grad_clip: float,
                       bad_samples: int) -> tuple[Dict[str, float], bool, int]:
    """Backward of terms["total"] and one optimiser step, taken only when the loss and the
    gradient norm are finite on every rank (all ranks then agree); `grad_clip` > 0 clips the
    global norm. `bad_samples`: this rank's samples skipped in this batch. Returns the loss
    terms as floats, whether the step was taken and the skipped samples of all ranks. One
    all-reduce and one device-to-host copy per step: one GPU sync."""
    optimizer.zero_grad(set_to_none=True)
    loss = terms["total"]
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(),
                                               grad_clip if grad_clip > 0 else float("inf"))
    nonfinite = (~(torch.isfinite(loss.detach()) & torch.isfinite(grad_norm))).to(torch.float32).reshape(1)
    counts = all_reduce(torch.cat([nonfinite, torch.full_like(nonfinite, bad_samples)]), "sum")
    host = torch.cat([torch.stack([v.detach().float() for v in terms.values()]), counts]).tolist()
    ok = host[-2] == 0
    if ok:
        optimizer.step()
    return dict(zip(terms, host[:-2])), ok, int(host[-1])


class StepResult(NamedTuple):
    preds: Dict[str, torch.Tensor]   # the network's outputs (depth_s*, mask_s*)
    terms: Dict[str, float]          # loss terms as floats
    ok: bool                         # the optimiser step was taken (all finite on every rank)
    skipped_samples: int             # bad samples replaced in this batch, all ranks


def train_step(net: torch.nn.Module, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               batch: Dict[str, torch.Tensor], cfg: Config, bad_samples: int = 0) -> StepResult:
    """One training step on a device batch (STEP_KEYS): forward on the padded inputs (layout of
    train.channels_last; bf16 autocast on CUDA with train.bf16), the released loss in float32,
    backward and the optimiser step (skipped on every rank when anything is not finite). `net`
    is `model` or its DDP wrapper. The training loop and tools/benchmark.py train run this."""
    layout = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    bf16 = cfg.train.bf16 and batch["img"].is_cuda
    with torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else nullcontext():
        preds = net(pad_to_network(batch["img"]).contiguous(memory_format=layout),
                    pad_to_network(batch["radar_map"]).contiguous(memory_format=layout),
                    batch["radar_pts"], batch["radar_count"])
    terms = spade_loss(preds, batch, cfg.loss)
    values, ok, skipped_now = _backward_and_step(terms, model, optimizer, cfg.train.grad_clip, bad_samples)
    return StepResult(preds, values, ok, skipped_now)


def nonfinite_inputs(batch: Dict[str, torch.Tensor], names: List[str], indices: List[int]) -> List[str]:
    """'sample I (name)' for each sample of the batch with a NaN or inf in FLOAT_INPUTS."""
    finite = torch.stack([torch.isfinite(batch[k]).flatten(1).all(1) for k in FLOAT_INPUTS if k in batch])
    return [f"sample {indices[i]} ({names[i]})" for i in (~finite.all(0)).nonzero().flatten().tolist()]


def batch_skips(batch: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The skipped-sample records ({index, file, reason}) that the dataset put in a batch."""
    return [record for text in batch.get("skipped", ()) if text for record in json.loads(text)]


def hold_run_lock(cfg: Config) -> RunLock:
    """out_dir/run.lock, held by rank 0 for the run; raises RunLockedError when another run
    holds it and ConfigError when out_dir cannot be written."""
    out = Path(cfg.train.out_dir)
    try:
        return RunLock(out / "run.lock", f"train.out_dir {out}",
                       "choose another train.out_dir").acquire()
    except (PermissionError, FileExistsError, NotADirectoryError, IsADirectoryError) as err:
        raise ConfigError(f"train.out_dir {out}: cannot write there ({err.strerror}: {err.filename}); "
                          "choose a writable folder") from None


def restore_run(resume: Path, explicit: bool, cfg: Config, model: torch.nn.Module,
                optimizer: torch.optim.Optimizer, steps_per_epoch: int,
                device: torch.device) -> Dict[str, int]:
    """Load checkpoint `resume` into model, optimizer and the RNGs; returns its step and
    counters. A checkpoint of other training settings is refused unless `explicit` (named by
    train.resume), which resumes it with a warning listing the differences."""
    ckpt = read_checkpoint(resume, map_location=device)
    if ckpt.get("optimizer") is None:
        raise CheckpointError(f"{resume} holds network weights only (released format?); it cannot "
                              "resume a run. Start a new run with another train.out_dir")
    differences = signature_differences(ckpt.get("config") or {}, config_to_dict(cfg))
    if differences and not explicit:
        raise ResumeMismatchError(
            f"{resume} (found in train.out_dir) was trained with other settings: "
            f"{'; '.join(differences)}. To continue it with this run's settings pass --resume {resume} "
            f"(train.resume); to start afresh choose another train.out_dir or delete {cfg.train.out_dir}")
    if differences:
        log.warning("%s was trained with other settings; continuing with this run's: %s", resume,
                    "; ".join(differences))
    load_network_state(model, ckpt["network"], source=str(resume))
    optimizer.load_state_dict(ckpt["optimizer"])
    restore_rng_state(ckpt["rng"])
    extra = ckpt.get("extra", {})
    if extra.get("steps_per_epoch", steps_per_epoch) != steps_per_epoch:
        log.warning("%s was written with %s steps per epoch, this run has %d (other world size "
                    "or batch size): the sample order differs from the interrupted run",
                    resume, extra["steps_per_epoch"], steps_per_epoch)
    return {"step": int(ckpt["step"]), "nonfinite_steps": int(extra.get("nonfinite_steps", 0)),
            "nonfinite_in_row": int(extra.get("nonfinite_in_row", 0)),
            "skipped_samples": int(extra.get("skipped_samples", 0))}


def prepare_out_dir(cfg: Config, run_info: Dict[str, Any]) -> None:
    """Rank 0, holding the run lock: delete the temporary files an interrupted run left in
    checkpoints/ and write config.yaml and run_info.json."""
    out = Path(cfg.train.out_dir)
    count, size = remove_orphaned_temp_files(out / "checkpoints")
    if count:
        log.info("removed %d temporary files (%.1f MB) that an interrupted run left in %s", count,
                 size / 1e6, out / "checkpoints")
    atomic_write(out / "config.yaml", lambda f: f.write(yaml.safe_dump(config_to_dict(cfg)).encode()))
    atomic_write(out / "run_info.json", lambda f: f.write(dumps(run_info, indent=2).encode() + b"\n"))


def log_startup(cfg: Config, dist_info: DistInfo, run_info: Dict[str, Any], train_samples: int,
                val_frames: int, steps_per_epoch: int, total: int) -> None:
    """Rank 0's summary of the run before its first step."""
    device = dist_info.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    diff = changed_keys(config_to_dict(cfg), config_to_dict(Config()))
    prov = run_info["provenance"]
    start = (f"resuming {run_info['resumed_from']} at step {run_info['start_step']}"
             if run_info["resumed_from"] else "new run")
    lines = [f"output: {cfg.train.out_dir} ({start})",
             f"device: {device} ({name}), world size {dist_info.world_size}",
             f"data: {train_samples} training samples ({cfg.data.train_infos}); validation: "
             + (f"{val_frames} frames every {cfg.train.val_every} steps" if val_frames else "off"),
             f"steps: {total}, {steps_per_epoch} per epoch at batch {cfg.train.batch_size} per rank",
             "config (differs from the defaults): "
             + (", ".join(f"{k}={new}" for k, (_, new) in diff.items()) or "defaults"),
             f"code: git {prov['git_commit']}, torch {prov['torch']}, python {prov['python']}"]
    log.info("training run\n  %s", "\n  ".join(lines))


def check_training_config(cfg: Config) -> None:
    """ConfigError for settings that pass the config's own checks but cannot train: one sample
    per rank (BatchNorm in train mode needs two), keys that do not fit together."""
    check_config(cfg)
    if cfg.train.batch_size < 2:
        raise ConfigError(f"config key 'train.batch_size': {cfg.train.batch_size} sample per rank cannot "
                          "train: the network's BatchNorm layers need at least 2 samples per rank in "
                          "training; set train.batch_size=2 or more")


def check_resume_step(step: int, total: int, resume: Path) -> None:
    """ConfigError when checkpoint `resume`'s step lies beyond this run's `total` steps: the
    loop would end at once and write nothing."""
    if not 0 <= step <= total:
        raise ConfigError(f"{resume} is at step {step}, beyond this run's {total} steps "
                          "(train.max_steps, else train.epochs x steps per epoch); raise "
                          "train.max_steps or train.epochs to continue it, or choose another "
                          "train.out_dir (or train.resume) to start afresh")


def train(cfg: Config, stop_after: int = 0) -> Dict[str, Any]:
    """Train per `cfg`; `stop_after` > 0 stops (after saving latest.ckpt) once the global step
    reaches it without changing the schedule, which is how tests interrupt a run. Rank 0 holds
    out_dir/run.lock meanwhile."""
    check_training_config(cfg)
    dist_info = init_distributed()
    lock = hold_run_lock(cfg) if dist_info.is_main else None
    try:
        return _train(cfg, dist_info, stop_after)
    finally:
        if lock is not None:
            lock.release()


def _train(cfg: Config, dist_info: DistInfo, stop_after: int) -> Dict[str, Any]:
    device = dist_info.device
    torch.manual_seed(cfg.train.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    loader, sampler = build_loader(cfg, dist_info)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise ConfigError(f"{cfg.data.train_infos}: {len(sampler.dataset)} samples cannot fill one "
                          f"batch of {cfg.train.batch_size} on each of {dist_info.world_size} ranks; "
                          "lower train.batch_size")
    total = total_steps(cfg.train.epochs, steps_per_epoch, cfg.train.max_steps)
    layout = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    model = SpaDe(radar_injection=cfg.model.radar_injection).to(device, memory_format=layout)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr_at(0, total, cfg.train.lr_base,
                                  cfg.train.lr_cosine), weight_decay=cfg.train.weight_decay)
    resume = find_resume(cfg)
    state = {"step": 0, "nonfinite_steps": 0, "nonfinite_in_row": 0, "skipped_samples": 0}
    if resume is not None:
        state = restore_run(resume, bool(cfg.train.resume), cfg, model, optimizer, steps_per_epoch, device)
        check_resume_step(state["step"], total, resume)
        if dist_info.is_main:
            log.info("resuming from %s at step %d of %d%s", resume, state["step"], total,
                     ": the run is complete, nothing to train" if state["step"] == total else "")
    step, nonfinite_total = state["step"], state["nonfinite_steps"]
    nonfinite_in_row, skipped_total = state["nonfinite_in_row"], state["skipped_samples"]
    run_info = {"provenance": provenance(), "command": sys.argv, "world_size": dist_info.world_size,
                "resumed_from": str(resume) if resume else None, "start_step": step}
    unused = cfg.loss.mask_weight == 0 or not cfg.model.radar_injection
    net = (DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=unused)
           if dist_info.distributed else model)
    ckpt_dir = Path(cfg.train.out_dir) / "checkpoints"
    val_set = build_val_subset(cfg) if dist_info.is_main else None
    if dist_info.is_main:
        prepare_out_dir(cfg, run_info)
        log_startup(cfg, dist_info, run_info, len(sampler.dataset), len(val_set or ()), steps_per_epoch, total)
    logger = _Logger(cfg, dist_info, step, total)
    history: List[Dict[str, float]] = []

    saved_step = step

    def validate() -> None:
        """Rank 0 evaluates `val_set` (the other ranks wait), then training resumes in train mode."""
        if val_set is not None:
            summary = evaluate(model_predictor(model, cfg.eval.optimized), val_set,
                               evaluators_for(cfg.data.root, cfg.eval.ranges_m),
                               batch_size=cfg.eval.batch_size, device=device, progress=False)["summary"]
            logger.validation(step, summary)
            net.train()
        barrier()

    def checkpoint(name: str, epoch: int) -> Optional[Path]:
        nonlocal saved_step
        saved_step = step
        if not dist_info.is_main:
            return None
        return save_checkpoint(ckpt_dir / name, model, config=config_to_dict(cfg), optimizer=optimizer,
                               epoch=epoch, step=step, extra={
                                   "nonfinite_steps": nonfinite_total, "nonfinite_in_row": nonfinite_in_row,
                                   "skipped_samples": skipped_total, "steps_per_epoch": steps_per_epoch,
                                   "world_size": dist_info.world_size, "provenance": run_info["provenance"]})

    end = min(total, stop_after) if stop_after > 0 else total
    net.train()
    try:
        while step < end:
            epoch, within = divmod(step, steps_per_epoch)
            sampler.set_epoch(epoch)
            sampler.set_start(within * cfg.train.batch_size)
            fetched = time.perf_counter()
            for batch in loader:
                data_s = time.perf_counter() - fetched
                lr = lr_at(step, total, cfg.train.lr_base, cfg.train.lr_cosine)
                set_lr(optimizer, lr)
                skips, names, indices = batch_skips(batch), batch["name"], batch["index"].tolist()
                batch = {k: batch[k].to(device, non_blocking=True) for k in STEP_KEYS if k in batch}
                preds, values, ok, skipped_now = train_step(net, model, optimizer, batch, cfg, len(skips))
                suspects: List[str] = []
                if skipped_now or not ok:          # rare: every rank's details to rank 0
                    reports = all_gather_objects((skips, [] if ok else nonfinite_inputs(batch, names, indices)))
                    suspects = [s for _, rank_suspects in reports for s in rank_suspects]
                    if skipped_now:
                        skipped_total += skipped_now
                        logger.bad_samples(step, [r for rank_skips, _ in reports for r in rank_skips],
                                           skipped_total)
                if ok:
                    nonfinite_in_row = 0
                else:
                    nonfinite_total += 1
                    nonfinite_in_row += 1
                    logger.message(f"step {step}: non-finite loss or gradient, step skipped "
                                   f"({nonfinite_in_row} in a row, {nonfinite_total} in all); "
                                   + (f"non-finite input values in {', '.join(suspects)}" if suspects
                                      else "the inputs are finite"))
                history.append(values)
                logger.step(step, epoch, lr, values, data_s, skipped=not ok, nonfinite_inputs=suspects)
                if cfg.train.image_every and (step + 1) % cfg.train.image_every == 0:
                    logger.images(step, batch, preds)
                step += 1
                if cfg.train.val_every > 0 and (step % cfg.train.val_every == 0 or step == total):
                    validate()
                if nonfinite_in_row >= cfg.train.max_nonfinite_in_row:
                    raise NonFiniteLossError(
                        f"{nonfinite_in_row} steps in a row had a non-finite loss or gradient (last "
                        f"at step {step - 1}); the run is stopped. Lower the learning rate "
                        "(train.lr_base / train.lr_cosine), set train.grad_clip, or check the data; "
                        f"the last good weights are in {ckpt_dir / 'latest.ckpt'}")
                if step % steps_per_epoch == 0:
                    link_latest(checkpoint(f"epoch_{step // steps_per_epoch:03d}.ckpt",
                                           step // steps_per_epoch))
                    if dist_info.is_main:
                        prune_epoch_checkpoints(ckpt_dir, cfg.train.keep_epoch_ckpts)
                elif cfg.train.ckpt_every and step % cfg.train.ckpt_every == 0:
                    checkpoint("latest.ckpt", epoch)
                if step >= end:
                    break
                fetched = time.perf_counter()
        if step != saved_step:              # ended between checkpoints
            checkpoint("latest.ckpt", step // steps_per_epoch)
    finally:
        shutdown_workers(loader)        # on an error too: no worker killed at exit with a traceback
        logger.close()
    barrier()
    if dist_info.is_main:
        log.info("finished at step %d of %d (%d non-finite steps skipped, %d bad samples replaced%s)",
                 step, total, nonfinite_total, skipped_total,
                 f": see {Path(cfg.train.out_dir) / 'skips.jsonl'}" if skipped_total else "")
    return {"step": step, "total": total, "checkpoint": ckpt_dir / "latest.ckpt",
            "nonfinite_steps": nonfinite_total, "skipped_samples": skipped_total, "history": history}
