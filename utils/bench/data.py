"""Timing of sample preparation (`tools/benchmark.py data`): ours, and optionally the released way.

    result = benchmark_data("data/nuscenes", "data/..._val.pkl", mode="train", samples=20, reference=True)
    print(format_data_table(result))
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import cv2
import numpy as np
import torch
from tqdm import tqdm

from datasets.infos import entry_path, released_pair
from datasets.io import read_image_bgr, resolve_data_path
from datasets.build import build_dataset
from datasets.nuscenes_dataset import RadarCameraDataset
from utils.config import Config, ConfigError
from utils.files import write_png


def time_per_sample(prepare: Callable[[int], Any], indices, repeats: int, desc: str) -> Dict[str, float]:
    """Wall-clock and process-CPU milliseconds per `prepare(i)`: each sample's fastest of `repeats`
    calls (after one warm-up call), averaged over `indices`; the minimum is the least disturbed by
    other processes on a shared machine."""
    prepare(indices[0])
    wall = np.full((repeats, len(indices)), np.inf)
    cpu = np.full((repeats, len(indices)), np.inf)
    for r in range(repeats):
        for j, i in enumerate(tqdm(indices, desc=f"{desc} pass {r + 1}/{repeats}", leave=False)):
            w0, c0 = time.perf_counter(), time.process_time()
            prepare(i)
            wall[r, j], cpu[r, j] = time.perf_counter() - w0, time.process_time() - c0
    return {"ms_per_sample": 1e3 * wall.min(axis=0).mean(), "cpu_ms_per_sample": 1e3 * cpu.min(axis=0).mean(),
            "ms_per_sample_mean": 1e3 * wall.mean()}


def write_stand_in_masks(dataset: RadarCameraDataset, indices, out_dir: Path) -> None:
    """Blocky 8-bit ADE20K-id masks (16 px cells from the image's grey level), PNG-encoded by
    tools/gen_seg_masks.py's writer, so that mask reading is timed on a root without
    seg_mask/; only for timing. `indices`: of the dataset's (key frame, camera) samples."""
    for i in indices:
        record, camera = dataset.pairs[i]
        path = resolve_data_path(dataset.root, entry_path(dataset.infos[record]["cam_infos"][camera]))
        grey = cv2.cvtColor(read_image_bgr(path), cv2.COLOR_BGR2GRAY)
        h, w = grey.shape
        cells = cv2.resize(grey, (w // 16, h // 16), interpolation=cv2.INTER_AREA) // 20
        write_png(out_dir / f"{path.stem}.png", cv2.resize(cells, (w, h), interpolation=cv2.INTER_NEAREST))


def benchmark_data(data_root: str, infos: str, mode: str, samples: int, reference: bool = False,
                   cfg: Optional[Config] = None, stand_in_masks: bool = False, repeats: int = 3) -> Dict[str, Any]:
    """Time `samples` samples (cycling through the info file) in one process, single-threaded
    OpenCV and torch (as in a loader worker), each sample's fastest of `repeats` calls. Returns {"mode", "samples", "repeats",
    "ours": {...}, and when asked "reference": {...}, "speedup", "cpu_speedup"}."""
    cfg = cfg or Config()
    if reference and not released_pair(cfg.data.cameras, cfg.data.radars):
        raise ConfigError("--reference times the released CAM_FRONT + RADAR_FRONT pipeline only; drop it "
                          "or the data.cameras / data.radars overrides")
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    dataset = build_dataset(cfg, "train" if mode == "train" else "val", infos=infos, data_root=data_root)
    indices = [i % len(dataset) for i in range(samples)]
    result: Dict[str, Any] = {"mode": mode, "samples": samples, "repeats": repeats}
    with tempfile.TemporaryDirectory() as masks:
        if stand_in_masks and mode == "train" and cfg.data.mask_supervision:
            write_stand_in_masks(dataset, sorted(set(indices)), Path(masks))
            dataset.seg_dir = Path(masks)
        result["ours"] = time_per_sample(dataset.__getitem__, indices, repeats, "ours")
        if reference:
            from utils.bench.data_reference import ReferencePipeline
            ref = ReferencePipeline(cfg, dataset.infos, dataset.root, mode, dataset.seg_dir)
            result["reference"] = time_per_sample(
                lambda i: ref.sample(i, np.random.default_rng([cfg.train.seed, 0, i])), indices, repeats, "reference")
            result["speedup"] = result["reference"]["ms_per_sample"] / result["ours"]["ms_per_sample"]
            result["cpu_speedup"] = result["reference"]["cpu_ms_per_sample"] / result["ours"]["cpu_ms_per_sample"]
    return result


def format_data_table(result: Dict[str, Any]) -> str:
    lines = [f"sample preparation, mode={result['mode']}, {result['samples']} samples, one thread; "
             f"per sample the fastest of {result['repeats']} calls (all calls: 'mean')",
             f"{'pipeline':<10} {'ms/sample':>10} {'CPU ms/sample':>14} {'samples/s':>10} {'mean ms':>8}"]
    for name in ("ours", "reference"):
        if name in result:
            r = result[name]
            lines.append(f"{name:<10} {r['ms_per_sample']:>10.1f} {r['cpu_ms_per_sample']:>14.1f} "
                         f"{1e3 / r['ms_per_sample']:>10.1f} {r['ms_per_sample_mean']:>8.1f}")
    if "speedup" in result:
        lines.append(f"ours is {result['speedup']:.1f}x faster per sample "
                     f"({result['cpu_speedup']:.1f}x in CPU time)")
    return "\n".join(lines)
