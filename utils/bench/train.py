"""Training-step throughput (`tools/benchmark.py train`): samples/s and the share spent waiting
for data.

    result = benchmark_train("cpu", 256, 448, batch=2, iters=5)                      # tensors
    result = benchmark_train("cpu", 256, 448, batch=2, iters=5, infos="val.pkl", data_root=root)
    print(format_train_table(result))

One step is the training loop's own `utils.engine.train.train_step` (pad, forward, the released
loss, backward with the finite check, AdamW; docs/spade.md section 4). Without an info file the batches are random tensors made
once (data time ~ 0); with one, a real DataLoader over `RadarCameraDataset` in train mode at
height x width feeds the steps, and the time spent in `next(loader)` is the data time.
"""
from __future__ import annotations

import itertools
import statistics
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, Optional

import torch
from torch.utils.data import DataLoader

from datasets.build import build_dataset
from models import SpaDe
from utils.bench.model import cpu_name, sync, realistic_inputs
from utils.config import Config
from utils.engine.train import STEP_KEYS, train_step


def synthetic_batches(batch: int, height: int, width: int) -> Iterator[Dict[str, torch.Tensor]]:
    """The same random batch forever: inputs as `realistic_inputs` (the image as uint8, like the
    dataset's), LiDAR labels on 5% of the pixels, a 0/1 semantic target."""
    img, radar, pts, count = realistic_inputs(batch, height, width)
    g = torch.Generator().manual_seed(1)
    lidar = torch.rand(batch, 1, height, width, generator=g) * 78 + 1
    lidar[torch.rand(lidar.shape, generator=g) > 0.05] = 0
    seg = (torch.rand(batch, 1, height, width, generator=g) > 0.5).float()
    return itertools.repeat({"img": img.to(torch.uint8), "radar_map": radar, "radar_pts": pts,
                             "radar_count": count, "lidar_map": lidar, "seg_target": seg})


def loader_batches(cfg: Config, infos: str, data_root: str, batch: int, workers: int,
                   pin: bool) -> Iterator[Dict[str, torch.Tensor]]:
    """Endless batches of a train-mode RadarCameraDataset (shuffled, new epoch when exhausted)."""
    from datasets.workers import worker_options
    dataset = build_dataset(cfg, "train", infos=infos, data_root=data_root)
    if len(dataset) < batch:
        raise ValueError(f"{infos} has {len(dataset)} samples, fewer than one batch of {batch}")
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True, pin_memory=pin,
                        **worker_options(workers, persistent=True))
    for epoch in itertools.count():
        dataset.set_epoch(epoch)
        yield from loader


def benchmark_train(device: str, height: int, width: int, batch: int = 2, iters: int = 5,
                    warmup: int = 1, cfg: Optional[Config] = None, infos: Optional[str] = None,
                    data_root: Optional[str] = None, workers: int = 2, bf16: bool = False,
                    channels_last: bool = False, stand_in_masks: bool = False) -> Dict:
    """Time `iters` training steps after `warmup` ones (bf16 and channels_last set the config's
    train.bf16 / train.channels_last for them).
    Returns {"device", "settings", "step_s": [...], "data_s": [...]}."""
    cfg = cfg or Config()
    cfg.data.height, cfg.data.width = height, width
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(cfg.train.seed)
    cfg.train.bf16, cfg.train.channels_last = bf16, channels_last
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = SpaDe(cfg.model.radar_injection).to(dev, memory_format=fmt).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr_base + cfg.train.lr_cosine,
                                  weight_decay=cfg.train.weight_decay)
    with tempfile.TemporaryDirectory() as masks:
        if infos is None:
            batches = synthetic_batches(batch, height, width)
        else:
            if stand_in_masks and cfg.data.mask_supervision:
                _write_stand_in_masks(cfg, infos, data_root, Path(masks))
            batches = loader_batches(cfg, infos, data_root, batch, workers, dev.type == "cuda")
        step_s, data_s = [], []
        try:
            for i in range(warmup + iters):
                start = time.perf_counter()
                sample = next(batches)
                got = time.perf_counter()
                x = {k: torch.as_tensor(sample[k]).to(dev, non_blocking=True) for k in STEP_KEYS if k in sample}
                train_step(model, model, optimizer, x, cfg)
                sync(dev)
                if i >= warmup:
                    step_s.append(time.perf_counter() - start)
                    data_s.append(got - start)
        finally:
            if hasattr(batches, "close"):
                batches.close()              # stops the loader's workers before masks go away
    return {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_name(),
            "settings": {"height": height, "width": width, "batch": batch, "iters": iters,
                         "warmup": warmup, "threads": torch.get_num_threads(), "bf16": bf16,
                         "channels_last": channels_last,
                         "data": f"RadarCameraDataset({infos}), {workers} workers" if infos
                         else "random tensors"},
            "step_s": step_s, "data_s": data_s}


def _write_stand_in_masks(cfg: Config, infos: str, data_root: str, out_dir: Path) -> None:
    from utils.bench.data import write_stand_in_masks
    dataset = build_dataset(cfg, "train", infos=infos, data_root=data_root)
    write_stand_in_masks(dataset, range(len(dataset)), out_dir)
    cfg.data.seg_mask_dir = str(out_dir)


def summary(result: Dict) -> Dict:
    s = result["settings"]
    median = statistics.median(result["step_s"])
    return {"device": result["device"], **{k: s[k] for k in ("height", "width", "batch")},
            "step_s": round(median, 4), "samples_per_s": round(s["batch"] / median, 3),
            "data_fraction": round(sum(result["data_s"]) / sum(result["step_s"]), 3)}


def format_train_table(result: Dict) -> str:
    s, out = result["settings"], summary(result)
    return "\n".join([
        f"device: {result['device']}   batch {s['batch']} x {s['height']} x {s['width']}   "
        f"threads {s['threads']}   bf16 {s['bf16']}   channels-last {s['channels_last']}",
        f"data: {s['data']}   {s['iters']} steps after {s['warmup']} warm-up",
        f"{'median step s':>14} {'min step s':>11} {'samples/s':>10} {'data time':>10}",
        f"{out['step_s']:>14.3f} {min(result['step_s']):>11.3f} {out['samples_per_s']:>10.3f} "
        f"{100 * out['data_fraction']:>9.1f}%"])
