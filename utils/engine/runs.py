"""Runs that the demo, the ablations and the science suite share: the synthetic world on disk, and
a model trained per a config (trained unless its out_dir already holds the finished run).

    ensure_world(cfg)            # generate data.root and its info files unless present
    ensure_world(cfg, SURROUND_WORLD_CONFIG)     # the six-camera, five-radar world
    model = trained_model(cfg)   # eval mode, on the GPU when there is one
    train_in_parallel(cfgs, 2)   # several runs at once, each in its own process
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import os
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Dict, Sequence

import torch
from tqdm import tqdm

from datasets.infos import create_infos, infos_filename, save_infos, split_scenes
from models import SpaDe
from utils.checkpoint import load_network, read_checkpoint
from utils.config import Config, ConfigError, config_to_dict
from utils.engine.train import train, training_signature
from utils.schedule import total_steps

REPO = Path(__file__).resolve().parents[2]
WORLD_CONFIG = REPO / "configs" / "synthetic_world.yaml"
SURROUND_WORLD_CONFIG = REPO / "configs" / "synthetic_world_surround.yaml"
log = logging.getLogger(__name__)


def world_complete(root: Path) -> bool:
    """Tables, splits.json and one dense-truth file per camera key image are on disk."""
    tables = root / "v1.0-trainval"
    if not ((root / "splits.json").is_file() and (tables / "sample.json").is_file()
            and (tables / "sample_data.json").is_file()):
        return False
    key_images = sum(sd["is_key_frame"] and sd["fileformat"] == "jpg"
                     for sd in json.loads((tables / "sample_data.json").read_text()))
    return key_images > 0 and len(list((root / "depth_dense").glob("*.png"))) == key_images


def ensure_world(cfg: Config, world_config: Path = WORLD_CONFIG) -> None:
    """Generate the synthetic world of `world_config` (default: the embedded default world) into
    data.root unless present, and build its info files."""
    root = Path(cfg.data.root)
    if world_complete(root):
        log.info("synthetic world present in %s", root)
    else:
        from datasets.synthetic import generate, load_synthetic_config
        ours = (root / "synthetic_config.yaml").is_file()
        if root.is_dir() and any(root.iterdir()) and not ours:
            raise ConfigError(f"data.root {root} holds files but no synthetic world (no "
                              "synthetic_config.yaml); nothing was changed. The synthetic world is "
                              "generated into a new or empty folder: set data.root to one")
        log.info("generating the synthetic world into %s (a few minutes on 2 cores)", root)
        generate(load_synthetic_config(world_config), root, overwrite=ours)
    if not (Path(cfg.data.train_infos).is_file() and Path(cfg.data.val_infos).is_file()):
        from nuscenes.nuscenes import NuScenes
        infos = create_infos(NuScenes("v1.0-trainval", str(root), verbose=False),
                             split_scenes("v1.0-trainval", root / "splits.json"), progress=False)
        for split, path in (("train", cfg.data.train_infos), ("val", cfg.data.val_infos)):
            save_infos(infos[split], path)
            log.info("%s: %d samples (%s)", path, len(infos[split]), infos_filename(split))


def prepare_run(cfg: Config) -> bool:
    """True when train.out_dir holds the finished run of this config's training settings. A
    partial run of the same settings is kept (train() resumes it); anything else in the folder is
    moved aside to <out_dir>.replaced-<time> (nothing is deleted)."""
    out_dir = Path(cfg.train.out_dir)
    latest = out_dir / "checkpoints" / "latest.ckpt"
    if latest.is_file():
        ckpt = read_checkpoint(latest)
        if training_signature(ckpt.get("config") or {}) == training_signature(config_to_dict(cfg)):
            steps_per_epoch = ckpt.get("extra", {}).get("steps_per_epoch", 0)
            return steps_per_epoch > 0 and ckpt["step"] == total_steps(
                cfg.train.epochs, steps_per_epoch, cfg.train.max_steps)
    if out_dir.is_dir() and any(out_dir.iterdir()):
        aside = out_dir.with_name(f"{out_dir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
        out_dir.rename(aside)
        log.warning("%s held a run of other training settings; moved it to %s (delete it when not needed)",
                    out_dir, aside)
    return False


def trained_model(cfg: Config) -> SpaDe:
    """SpaDe trained per `cfg` in train.out_dir (trained now unless that run is finished), in
    eval mode on the GPU when there is one."""
    if prepare_run(cfg):
        log.info("%s already holds the finished run of this config; evaluating it", cfg.train.out_dir)
    else:
        train(cfg)
    model = SpaDe(radar_injection=cfg.model.radar_injection)
    load_network(model, Path(cfg.train.out_dir) / "checkpoints" / "latest.ckpt")
    return model.to("cuda" if torch.cuda.is_available() else "cpu").eval()


def sample_depth_m(model: SpaDe, sample: Dict[str, Any]) -> torch.Tensor:
    """The eval-mode `model`'s depth (H x W, metres, on the model's device) of one dataset sample
    (its `img`, `radar_map`, `radar_pts`, `radar_count`, unbatched)."""
    device = next(model.parameters()).device
    x = [torch.as_tensor(sample[k])[None].to(device) for k in ("img", "radar_map", "radar_pts", "radar_count")]
    with torch.inference_mode():
        return model.predict(*x)[0, 0]


def _limit_threads(threads: int) -> None:
    """Initialiser of a train_in_parallel worker process."""
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")


def _train_logged(cfg: Config) -> None:
    """Train the run of `cfg` unless finished, this process's console (and the traceback of a
    failure) going to <out_dir>/console.log, appended: a resumed run keeps its earlier console."""
    out_dir = Path(cfg.train.out_dir)
    if prepare_run(cfg):
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    with open(out_dir / "console.log", "a") as console:
        os.dup2(console.fileno(), 1)
        os.dup2(console.fileno(), 2)
        try:
            train(cfg)
        except BaseException:
            traceback.print_exc()
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()


def train_in_parallel(cfgs: Sequence[Config], jobs: int) -> None:
    """Train the runs of `cfgs` (those not finished; partial ones resume), `jobs` at a time, each
    in its own process with cpu_count // jobs torch threads and its console in
    <out_dir>/console.log. On a 2-core CPU two 1-thread runs take the time of one 2-thread run
    (docs/science.md). A failure cancels the runs not yet started and is raised once those under
    way have ended."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    log.info("training %d runs, %d at a time (%d torch threads each; consoles in "
             "<run>/console.log)", len(cfgs), jobs, threads)
    context = multiprocessing.get_context("spawn")       # a fresh torch per worker
    waiting, running = list(cfgs), {}                    # submitted only when a worker is free:
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_limit_threads,
                             initargs=(threads,)) as pool, \
            tqdm(total=len(cfgs), desc="runs", unit="run", dynamic_ncols=True) as bar:
        while waiting or running:                        # a failure then cancels the rest
            while waiting and len(running) < jobs:
                cfg = waiting.pop(0)
                running[pool.submit(_train_logged, cfg)] = Path(cfg.train.out_dir)
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                out_dir = running.pop(future)
                if future.exception() is not None:
                    log.error("run %s failed (traceback in its console.log); %d runs not started",
                              out_dir, len(waiting))
                    wait(running)
                    raise future.exception()
                log.info("run %s finished", out_dir)
                bar.update()
