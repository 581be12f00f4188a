"""Training engine behind train_DDP.py (SPADE.md section 4), for torchrun or one plain process.

    result = train(cfg)          # -> {"step", "checkpoint", "nonfinite_steps", "history"}

One optimiser step per batch of `train.batch_size` samples per rank; the released AdamW and
cosine learning rate (utils/schedule.py) over `train.max_steps` or epochs x steps per epoch.
Checkpoints (out_dir/checkpoints): `epoch_NNN.ckpt` after every epoch (the newest
`train.keep_epoch_ckpts` kept, 0 = all) and `latest.ckpt` after
every epoch, every `train.ckpt_every` steps and at the end. They hold the global step; as the
sample order and every sample's augmentation depend only on (seed, epoch, index), a run resumed
from one continues exactly. A run whose out_dir already has `latest.ckpt` resumes from it by
itself (that is how torchrun --max-restarts recovers a killed worker).
Logs: TensorBoard under out_dir/tb, one JSON line per step in out_dir/train_log.jsonl (rank 0).
Validation (`train.val_every` > 0): rank 0 evaluates the released metrics on `train.val_samples`
fixed val frames every that many steps and at the end, to TensorBoard (`val/...`) and
out_dir/val_log.jsonl; it reads no training randomness, so it never changes the trained weights.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from datasets.nuscenes_dataset import RadarCameraDataset
from datasets.workers import worker_options
from models import SpaDe, pad_to_network
from models.loss import spade_loss
from utils.checkpoint import fsync_dir, load_network, restore_rng_state, save_checkpoint
from utils.config import Config, config_to_dict
from utils.distributed import (DistInfo, EpochIndexed, ResumableDistributedSampler, all_reduce,
                               barrier, init_distributed)
from utils.evaluate import evaluate, model_predictor
from utils.schedule import lr_at, set_lr, total_steps
from utils.visualize import sample_panel, to_rgb_chw

log = logging.getLogger(__name__)
# What a training step reads on the device: the network's inputs and the loss's targets.
STEP_KEYS = ("img", "radar_map", "radar_pts", "radar_count", "lidar_map", "seg_target")
# Settings that cannot change the trained weights: paths, logging, checkpoint cadence, workers
# (a sample depends only on seed, epoch and index) and the whole eval section.
RUN_ONLY_KEYS = {"train": ("out_dir", "resume", "log_every", "image_every", "ckpt_every",
                           "keep_epoch_ckpts", "val_every", "val_samples"), "data": ("num_workers",)}


class NonFiniteLossError(RuntimeError):
    """Too many optimiser steps in a row had a non-finite loss or gradient."""


def build_loader(cfg: Config, dist_info: DistInfo) -> tuple[DataLoader, ResumableDistributedSampler]:
    dataset = RadarCameraDataset(cfg, cfg.data.train_infos, mode="train")
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
    dataset = RadarCameraDataset(cfg, cfg.data.val_infos, mode="eval")
    count = min(max(cfg.train.val_samples, 1), len(dataset))
    return Subset(dataset, sorted(set(np.linspace(0, len(dataset) - 1, count).round().astype(int).tolist())))


def training_signature(config: Dict[str, Any]) -> Dict[str, Any]:
    """A config dict (`config_to_dict`) without RUN_ONLY_KEYS and the eval section: runs with
    equal signatures train the same weights."""
    return {section: {k: v for k, v in values.items() if k not in RUN_ONLY_KEYS.get(section, ())}
            for section, values in config.items() if section != "eval"}


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


class _Logger:
    """Rank 0's TensorBoard writer, JSON-lines step log and progress bar (no-ops elsewhere)."""

    def __init__(self, cfg: Config, dist_info: DistInfo, step: int, total: int):
        self.cfg, self.main = cfg, dist_info.is_main
        self.world = dist_info.world_size
        self.window: Dict[str, float] = {}
        self.window_steps, self.data_s, self.start = 0, 0.0, time.perf_counter()
        if not self.main:
            return
        from torch.utils.tensorboard import SummaryWriter   # only rank 0 pays the import
        out = Path(cfg.train.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(str(out / "tb"), purge_step=step)
        _purge_step_log(out / "train_log.jsonl", step)
        _purge_step_log(out / "val_log.jsonl", step + 1)      # validation at `step` is kept
        self.jsonl = open(out / "train_log.jsonl", "a")
        self.val_jsonl = open(out / "val_log.jsonl", "a")
        self.bar = tqdm(total=total, initial=step, desc="train", unit="step", dynamic_ncols=True)

    def step(self, step: int, epoch: int, lr: float, terms: Dict[str, float], data_s: float,
             skipped: bool) -> None:
        self.window_steps += 1
        self.data_s += data_s
        for k, v in terms.items():
            self.window[k] = self.window.get(k, 0.0) + v
        if self.main:
            self.jsonl.write(json.dumps({"step": step, "epoch": epoch, "lr": lr, "skipped": skipped,
                                         "loss": terms}) + "\n")
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
                               mask=preds["mask_s1"][0, 0, :h, :w], columns=3)
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
        self.val_jsonl.write(json.dumps({"step": step, **summary}) + "\n")
        self.val_jsonl.flush()
        far = max(summary["mae_mm"], key=int)
        self.message(f"step {step}: val MAE 0-{far} m {summary['mae_mm'][far]:.0f} mm, "
                     f"RMSE {summary['rmse_mm'][far]:.0f} mm ({summary['num_samples']} frames)")

    def message(self, text: str) -> None:
        if self.main:
            self.bar.write(text) if hasattr(self, "bar") else log.info(text)

    def close(self) -> None:
        if self.main:
            self.bar.close()
            self.writer.close()
            self.jsonl.close()
            self.val_jsonl.close()


def link_latest(path: Optional[Path]) -> None:
    """Make checkpoints/latest.ckpt the same file as `path` (hard link, else a copy), atomically."""
    if path is None:
        return
    tmp = path.with_name(".latest.ckpt.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(path, tmp)
    except OSError:                     # file system without hard links
        shutil.copyfile(path, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
    os.replace(tmp, path.with_name("latest.ckpt"))
    fsync_dir(path.parent)


def prune_epoch_checkpoints(ckpt_dir: Path, keep: int) -> None:
    """Delete all but the newest `keep` epoch_NNN.ckpt files (keep <= 0: delete none)."""
    if keep > 0:
        for old in sorted(ckpt_dir.glob("epoch_*.ckpt"))[:-keep]:
            old.unlink(missing_ok=True)


def _backward_and_step(terms: Dict[str, torch.Tensor], model: torch.nn.Module,
                       optimizer: torch.optim.Optimizer, grad_clip: float) -> tuple[Dict[str, float], bool]:
    """Backward of terms["total"] and one optimiser step, taken only when the loss and the
    gradient norm are finite on every rank (all ranks then agree); `grad_clip` > 0 clips the
    global norm. Returns the loss terms as floats and whether the step was taken. One
    device-to-host copy (the terms and the finite flag together): one GPU sync per step."""
    optimizer.zero_grad(set_to_none=True)
    loss = terms["total"]
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(),
                                               grad_clip if grad_clip > 0 else float("inf"))
    finite = (torch.isfinite(loss.detach()) & torch.isfinite(grad_norm)).to(torch.float32).reshape(1)
    host = torch.cat([torch.stack([v.detach().float() for v in terms.values()]),
                      all_reduce(finite, "min")]).tolist()
    ok = host[-1] > 0
    if ok:
        optimizer.step()
    return dict(zip(terms, host[:-1])), ok


def train(cfg: Config, stop_after: int = 0) -> Dict[str, Any]:
    """Train per `cfg`; `stop_after` > 0 stops (after saving latest.ckpt) once the global step
    reaches it without changing the schedule, which is how tests interrupt a run."""
    dist_info = init_distributed()
    device = dist_info.device
    torch.manual_seed(cfg.train.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    loader, sampler = build_loader(cfg, dist_info)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise ValueError(f"{cfg.data.train_infos}: {len(sampler.dataset)} samples cannot fill one "
                         f"batch of {cfg.train.batch_size} on each of {dist_info.world_size} ranks; "
                         "lower train.batch_size")
    total = total_steps(cfg.train.epochs, steps_per_epoch, cfg.train.max_steps)
    model = SpaDe(radar_injection=cfg.model.radar_injection).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr_at(0, total, cfg.train.lr_base,
                                  cfg.train.lr_cosine), weight_decay=cfg.train.weight_decay)
    step, nonfinite_total, nonfinite_in_row = 0, 0, 0
    resume = find_resume(cfg)
    if resume is not None:
        ckpt = load_network(model, resume, map_location=device)
        if ckpt.get("optimizer") is None:
            raise ValueError(f"{resume} holds network weights only (released format?); it cannot "
                             "resume a run. Start a new run with another train.out_dir")
        optimizer.load_state_dict(ckpt["optimizer"])
        step = int(ckpt["step"])
        restore_rng_state(ckpt["rng"])
        extra = ckpt.get("extra", {})
        nonfinite_total = int(extra.get("nonfinite_steps", 0))
        nonfinite_in_row = int(extra.get("nonfinite_in_row", 0))
        if training_signature(ckpt.get("config") or {}) != training_signature(config_to_dict(cfg)):
            log.warning("%s was written with other training settings than this run's; "
                        "continuing with this run's", resume)
        if extra.get("steps_per_epoch", steps_per_epoch) != steps_per_epoch:
            log.warning("%s was written with %s steps per epoch, this run has %d (other world size "
                        "or batch size): the sample order differs from the interrupted run",
                        resume, extra["steps_per_epoch"], steps_per_epoch)
        if dist_info.is_main:
            log.info("resuming from %s at step %d of %d", resume, step, total)
    unused = cfg.loss.mask_weight == 0 or not cfg.model.radar_injection
    net = (DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=unused)
           if dist_info.distributed else model)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16)
                if cfg.train.bf16 and device.type == "cuda" else nullcontext())
    ckpt_dir = Path(cfg.train.out_dir) / "checkpoints"
    val_set = build_val_subset(cfg) if dist_info.is_main else None
    logger = _Logger(cfg, dist_info, step, total)
    history: List[Dict[str, float]] = []

    saved_step = step

    def validate() -> None:
        """Rank 0 evaluates `val_set` (the other ranks wait), then training resumes in train mode."""
        if val_set is not None:
            summary = evaluate(model_predictor(model, cfg.eval.optimized), val_set,
                               batch_size=cfg.eval.batch_size, ranges_m=cfg.eval.ranges_m,
                               device=device, progress=False)["summary"]
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
                                   "steps_per_epoch": steps_per_epoch, "world_size": dist_info.world_size})

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
                batch = {k: batch[k].to(device, non_blocking=True) for k in STEP_KEYS if k in batch}
                with autocast:
                    preds = net(pad_to_network(batch["img"]), pad_to_network(batch["radar_map"]),
                                batch["radar_pts"], batch["radar_count"])
                terms = spade_loss(preds, batch, cfg.loss.stage_scales, cfg.loss.smooth_l1_beta_m,
                                   cfg.loss.mask_weight)
                values, ok = _backward_and_step(terms, model, optimizer, cfg.train.grad_clip)
                if ok:
                    nonfinite_in_row = 0
                else:
                    nonfinite_total += 1
                    nonfinite_in_row += 1
                    logger.message(f"step {step}: non-finite loss or gradient, step skipped "
                                   f"({nonfinite_in_row} in a row, {nonfinite_total} in all)")
                history.append(values)
                logger.step(step, epoch, lr, values, data_s, skipped=not ok)
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
        logger.close()
    barrier()
    if dist_info.is_main:
        log.info("finished at step %d of %d (%d non-finite steps skipped)", step, total, nonfinite_total)
    return {"step": step, "total": total, "checkpoint": ckpt_dir / "latest.ckpt",
            "nonfinite_steps": nonfinite_total, "history": history}
