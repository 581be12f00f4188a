"""Runs that the demo, the ablations and the science suite share: the synthetic world on disk, and
a model trained per a config (trained unless its out_dir already holds the finished run).

    ensure_world(cfg)            # generate data.root and its info files unless present
    model = trained_model(cfg)   # eval mode, on the GPU when there is one
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

from datasets.infos import create_infos, infos_filename, save_infos, split_scenes
from models import SpaDe
from utils.checkpoint import load_network, read_checkpoint
from utils.config import Config, ConfigError, config_to_dict
from utils.engine.train import train, training_signature
from utils.schedule import total_steps

REPO = Path(__file__).resolve().parents[2]
WORLD_CONFIG = REPO / "configs" / "synthetic_world.yaml"
log = logging.getLogger(__name__)


def world_complete(root: Path) -> bool:
    """Tables, splits.json and one dense-truth file per key frame are on disk."""
    tables = root / "v1.0-trainval"
    if not ((root / "splits.json").is_file() and (tables / "sample.json").is_file()
            and (tables / "sample_data.json").is_file()):
        return False
    keyframes = len(json.loads((tables / "sample.json").read_text()))
    return keyframes > 0 and len(list((root / "depth_dense").glob("*.png"))) == keyframes


def ensure_world(cfg: Config) -> None:
    """Generate the synthetic default world into data.root and build its info files."""
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
        generate(load_synthetic_config(WORLD_CONFIG), root, overwrite=ours)
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
