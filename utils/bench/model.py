"""Timing of `SpaDe.predict` (`tools/benchmark.py model`): the reference path against the fused one;
and one image against a surround key frame's batch (`tools/benchmark.py surround`).

    result = benchmark_model("cpu", 900, 1600, batch=1, iters=5, options=InferenceOptions())
    print(format_model_table(result))
    result = benchmark_surround("cpu", 900, 1600, cameras=6, iters=3)
    print(format_surround_table(result))

Both paths run in one process, interleaved (ref, fused, ref, fused, ...) so that load from other
processes affects both alike; each variant is warmed up first (compilation, CUDA graph capture,
oneDNN primitive caches). Reported: median and minimum seconds per call, the median of the
per-round ratios, frames per second, the compute rate, and the largest difference between the
two outputs (m).
"""
from __future__ import annotations

import copy
import dataclasses
import statistics
import time
from typing import Callable, Dict, List, Optional

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from models import SpaDe
from models.inference import InferenceOptions, fused_for
from utils.bench.figures import cpu_facts


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Running statistics and affine parameters far from the identity (random-weight networks
    then exercise BN folding and give depths of tens of metres)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in model.modules():
            if isinstance(bn, nn.BatchNorm2d):
                n = bn.num_features
                bn.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
                bn.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                bn.weight.copy_(torch.rand(n, generator=g) + 0.5)
                bn.bias.copy_(torch.randn(n, generator=g) * 0.2)
    return model


def realistic_inputs(b: int, h: int, w: int, seed: int = 0, points: int = 200):
    """(img B x 3 x H x W BGR 0..255 integers, radar_map B x 1 x H x W with depth (m) down whole
    columns, radar_pts B x points x 3 camera-frame xyz (m), radar_count B int64)."""
    g = torch.Generator().manual_seed(seed)
    img = (torch.rand(b, 3, h, w, generator=g) * 255).round()
    radar = torch.zeros(b, 1, h, w)
    for i in range(b):
        cols = torch.randint(0, w, (max(w // 20, 1),), generator=g)
        radar[i, 0, :, cols] = torch.rand(len(cols), generator=g) * 70 + 2
    pts = (torch.randn(b, points, 3, generator=g) * torch.tensor([10.0, 1.0, 20.0])
           + torch.tensor([0.0, 0.0, 25.0]))
    count = torch.randint(1, points, (b,), generator=g)
    return img, radar, pts, count


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(fns: Dict[str, Callable[[], object]], iters: int, warmup: int,
                     device: torch.device) -> Dict[str, List[float]]:
    """Seconds per call of each function, called in turn `iters` times after `warmup` rounds."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    sync(device)
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def count_gflop(fn: Callable[[], object]) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops() / 1e9


def benchmark_model(device: str, height: int, width: int, batch: int = 1, iters: int = 5,
                    warmup: int = 1, options: InferenceOptions = InferenceOptions(),
                    reference: bool = True, checkpoint: Optional[str] = None,
                    tf32: bool = False) -> Dict:
    """Time `predict(optimized=False)` ("reference") and `predict` with `options` ("fused") on
    random weights with randomised BN (or `checkpoint`), realistic random inputs.

    Returns {"device", "settings", "gflop": {...}, "times_s": {variant: [...]}, "max_abs_diff_m",
    "mean_abs_diff_m", "speedup"} (the last three only with `reference`).
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.manual_seed(0)
    model = randomize_bn(SpaDe())
    if checkpoint:
        from utils.checkpoint import load_network
        load_network(model, checkpoint)
    model = model.to(dev).eval()
    model.inference_options = options
    args = [t.to(dev) for t in realistic_inputs(batch, height, width)]
    fns = {"fused": lambda: model.predict(*args)}
    if reference:
        fns = {"reference": lambda: model.predict(*args, optimized=False), **fns}
    with torch.inference_mode():
        outputs = {name: fn() for name, fn in fns.items()}   # builds the fused copy, first compile
        fused = fused_for(model)
        gflop = {"fused": count_gflop(lambda: fused.padded_forward(
            fused.padded_input(*args[:2]), torch.zeros(batch, 8, 1, 1, device=dev)))}
        if reference:
            gflop["reference"] = count_gflop(fns["reference"])
        times = time_interleaved(fns, iters, warmup, dev)
    result = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_name(),
              "settings": {"height": height, "width": width, "batch": batch, "iters": iters,
                           "warmup": warmup, "threads": torch.get_num_threads(), "tf32": tf32,
                           "options": dataclasses.asdict(options), "checkpoint": checkpoint or "random"},
              "gflop": gflop, "times_s": times}
    if reference:
        diff = (outputs["fused"] - outputs["reference"]).abs()
        result["max_abs_diff_m"] = diff.max().item()
        result["mean_abs_diff_m"] = diff.mean().item()
        result["speedup"] = statistics.median(r / f for r, f in zip(times["reference"], times["fused"]))
    return result


def benchmark_surround(device: str, height: int, width: int, cameras: int = 6, iters: int = 3,
                       warmup: int = 1, options: InferenceOptions = InferenceOptions()) -> Dict:
    """Time `predict` (its default fused path with `options`, as tools/predict.py runs it) on one
    image and on a batch of `cameras` images (a surround key frame), interleaved, each on its own
    copy of one random-weight network with randomised BN (each keeps its padded-input buffer),
    realistic random inputs.

    Returns {"device", "settings", "times_s": {"1 image": [...], "<cameras> images": [...]},
    "ratio"} with ratio the median of the per-round ratios batch / single.
    """
    dev = torch.device(device)
    torch.manual_seed(0)
    model = randomize_bn(SpaDe()).to(dev).eval()
    model.inference_options = options
    surround = [t.to(dev) for t in realistic_inputs(cameras, height, width)]
    single, surround_model = [t[:1] for t in surround], copy.deepcopy(model)
    names = ("1 image", f"{cameras} images")
    fns = {names[0]: lambda: model.predict(*single), names[1]: lambda: surround_model.predict(*surround)}
    with torch.inference_mode():
        times = time_interleaved(fns, iters, warmup, dev)
    return {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_name(),
            "settings": {"height": height, "width": width, "cameras": cameras, "iters": iters,
                         "warmup": warmup, "threads": torch.get_num_threads(),
                         "options": dataclasses.asdict(options)},
            "times_s": times,
            "ratio": statistics.median(b / s for s, b in zip(*times.values()))}


def surround_summary(result: Dict) -> Dict:
    """The final JSON line of `benchmark_surround`."""
    s = result["settings"]
    (single, batch), cameras = result["times_s"].values(), s["cameras"]
    return {"device": result["device"], "height": s["height"], "width": s["width"], "cameras": cameras,
            "single_s": round(statistics.median(single), 4), "surround_s": round(statistics.median(batch), 4),
            "ratio": round(result["ratio"], 3), "within_target": result["ratio"] < cameras}


def format_surround_table(result: Dict) -> str:
    s = result["settings"]
    lines = [f"device: {result['device']}   image {s['height']} x {s['width']}   threads {s['threads']}   "
             f"weights: random   fused options: {s['options']}",
             f"{'input':<10} {'median s':>9} {'min s':>8} {'s per image':>12}"]
    for (name, times), images in zip(result["times_s"].items(), (1, s["cameras"])):
        median = statistics.median(times)
        lines.append(f"{name:<10} {median:>9.4f} {min(times):>8.4f} {median / images:>12.4f}")
    lines.append(f"surround / single (median of per-round ratios): {result['ratio']:.2f}x "
                 f"(target: under {s['cameras']}x)")
    return "\n".join(lines)


def cpu_name() -> str:
    return cpu_facts()["cpu"]


def summary(result: Dict) -> Dict:
    """The final JSON line: medians, FPS, speed-up, output difference."""
    batch = result["settings"]["batch"]
    out = {"device": result["device"], **{k: result["settings"][k] for k in ("height", "width", "batch")}}
    for name, times in result["times_s"].items():
        median = statistics.median(times)
        out[f"{name}_s"] = round(median, 4)
        out[f"{name}_fps"] = round(batch / median, 2)
    for key in ("speedup", "max_abs_diff_m", "mean_abs_diff_m"):
        if key in result:
            out[key] = round(result[key], 3) if key == "speedup" else float(f"{result[key]:.3g}")
    return out


def format_model_table(result: Dict) -> str:
    s = result["settings"]
    lines = [f"device: {result['device']}   input {s['batch']} x {s['height']} x {s['width']}   "
             f"threads {s['threads']}   weights: {s['checkpoint']}",
             f"fused options: {s['options']}",
             f"{'variant':<10} {'median s':>9} {'min s':>8} {'FPS':>7} {'GFLOP':>7} {'TFLOP/s':>8}"]
    for name, times in result["times_s"].items():
        median = statistics.median(times)
        gflop = result["gflop"][name]
        lines.append(f"{name:<10} {median:>9.4f} {min(times):>8.4f} {s['batch'] / median:>7.2f} "
                     f"{gflop:>7.1f} {gflop / median / 1e3:>8.3f}")
    if "speedup" in result:
        lines.append(f"speed-up (median of per-round ratios): {result['speedup']:.2f}x   "
                     f"|fused - reference|: max {result['max_abs_diff_m']:.2e} m, "
                     f"mean {result['mean_abs_diff_m']:.2e} m")
    return "\n".join(lines)
