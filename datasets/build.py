"""The one place that builds a dataset from the config: every engine and tool calls this.

    train_set = build_dataset(cfg, "train")          # data.train_infos, train mode (augmented)
    val_set = build_dataset(cfg, "val")              # data.val_infos, eval mode (the released protocol)
    other = build_dataset(cfg, "val", infos="x.pkl", data_root="/data/nuscenes", mode="eval")
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from datasets.nuscenes_dataset import RadarCameraDataset

SPLIT_MODES = {"train": "train", "val": "eval"}


def build_dataset(cfg, split: str, mode: Optional[str] = None, infos: Optional[str | Path] = None,
                  data_root: Optional[str | Path] = None) -> RadarCameraDataset:
    """The dataset of `split` ('train': data.train_infos, 'val': data.val_infos) in `mode`
    (default: train mode for 'train', eval mode for 'val'); `infos` / `data_root` replace the
    config's info file / data.root."""
    if split not in SPLIT_MODES:
        raise ValueError(f"split={split!r}; expected one of {tuple(SPLIT_MODES)}")
    path = infos if infos is not None else (cfg.data.train_infos if split == "train" else cfg.data.val_infos)
    return RadarCameraDataset(cfg, path, mode or SPLIT_MODES[split], data_root=data_root)
