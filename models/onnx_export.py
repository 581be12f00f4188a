"""ONNX export of `SpaDe.predict` at a fixed image size, and its check against PyTorch.

    export_onnx(model, "spade.onnx", height=900, width=1600)      # padding + crop in the graph
    diff_m = onnx_max_diff_m("spade.onnx", model, datasets.frames.check_inputs(900, 1600))

The graph takes the raw H x W inputs of `predict` (docs/architecture.md), batch size free:
    img          B x 3 x H x W float32, BGR 0..255
    radar_map    B x 1 x H x W float32, radar depth (m), in columns like the dataset's
    radar_pts    B x P x 3 float32, camera-frame xyz (m), zero padded (P = data.max_radar_points)
    radar_count  B int64, valid rows of radar_pts
and returns `depth` B x 1 x H x W float32 (m). It is exported from the reference network
(`forward` on the padded input, then the crop) with every BN folded into its conv first
(`models.inference.fold_module`): 948 tensors instead of 3258, which halves the export time;
the mask decoders feed no output and the exporter drops them from the graph.

Messages filtered, only around the export call (`quiet_export`) and matched by their text, so
that the tool prints only what concerns the user's export (any other warning still shows):
- torch's ONNX exporter logs "torchvision is not installed. Skipping torchvision::<op>" four
  times (nms, roi_align, roi_pool, deform_conv2d; logger
  torch.onnx._internal.exporter._registration) while it builds its table of op translations;
  SpaDe uses no torchvision op, so nothing of the graph is skipped.
- FutureWarning "`isinstance(treespec, LeafSpec)` is deprecated": torch.export constructs the
  deprecated pytree LeafSpec class inside torch itself (torch.utils._pytree); nothing here or in
  the caller's code can change it.
- UserWarning "# The axis name: batch will not be used, since it shares the same shape
  constraints with another axis: batch.": the four inputs share one dynamic batch dimension,
  named "batch" for each, and the exporter warns that the second name is dropped although it is
  the same name; the graph's batch axis is called "batch" (tested). Filtered only when both names
  are equal: a real conflict of two different names still shows.
"""
from __future__ import annotations

import importlib.util
import logging
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List

import numpy as np
import torch
from torch import nn

from models.inference import fold_module

INPUT_NAMES = ("img", "radar_map", "radar_pts", "radar_count")
OUTPUT_NAME = "depth"
# ScatterElements with reduction="max" (the radar map's scatter downscale) needs opset 18.
OPSET = 18
# What quiet_export filters (see the module docstring): (logger, message start) and
# (category, message regex as warnings.filterwarnings matches it)
EXPORT_NOISE_LOGS = (("torch.onnx._internal.exporter._registration",
                      "torchvision is not installed. Skipping torchvision::"),)
EXPORT_NOISE_WARNINGS = (
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
    (UserWarning, r"# The axis name: (\S+) will not be used, since it shares the same shape constraints "
                  r"with another axis: \1\.$"),
)


@contextmanager
def quiet_export() -> Iterator[None]:
    """Inside: the exporter's known-harmless messages (EXPORT_NOISE_LOGS, EXPORT_NOISE_WARNINGS)
    are dropped; every other log record and warning passes. The filters are removed on exit."""
    filters = []
    for name, start in EXPORT_NOISE_LOGS:
        def keep(record: logging.LogRecord, start: str = start) -> bool:
            return not record.getMessage().startswith(start)
        logging.getLogger(name).addFilter(keep)
        filters.append((logging.getLogger(name), keep))
    try:
        with warnings.catch_warnings():
            for category, pattern in EXPORT_NOISE_WARNINGS:
                warnings.filterwarnings("ignore", message=pattern, category=category)
            yield
    finally:
        for logger, keep in filters:
            logger.removeFilter(keep)


def example_inputs(height: int, width: int, max_points: int = 200, batch: int = 2) -> Dict[str, torch.Tensor]:
    """Inputs of the graph's shapes and dtypes (their values only trace the graph)."""
    return {"img": torch.zeros(batch, 3, height, width), "radar_map": torch.zeros(batch, 1, height, width),
            "radar_pts": torch.zeros(batch, max_points, 3), "radar_count": torch.arange(batch, dtype=torch.int64)}


def missing_packages(export: bool = True, check: bool = True) -> List[str]:
    """Names of the packages an export (onnx, onnxscript) or a check (onnxruntime) needs that
    cannot be imported."""
    wanted = (["onnx", "onnxscript"] if export else []) + (["onnxruntime"] if check else [])
    return [name for name in wanted if importlib.util.find_spec(name) is None]


class PredictGraph(nn.Module):
    """`model.predict` through the reference `forward` (pad, run, crop) of a BN-folded copy of
    the eval-mode `model`: what gets exported."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = fold_module(model.eval()).eval()

    def forward(self, img: torch.Tensor, radar_map: torch.Tensor, radar_pts: torch.Tensor,
                radar_count: torch.Tensor) -> torch.Tensor:
        return self.model.predict(img, radar_map, radar_pts, radar_count, optimized=False)


def export_onnx(model: nn.Module, path: str | Path, height: int, width: int,
                max_points: int = 200, opset: int = OPSET) -> Path:
    """Write `model.predict` at height x width as one self-contained ONNX file (batch free).

    Uses torch's default exporter in torch >= 2.9 (`dynamo=True`: torch.export, then ONNX
    translation and graph optimisation); weights are stored inside the file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = PredictGraph(model).eval()
    example = example_inputs(height, width, max_points)   # batch 2: torch.export keeps B symbolic
    batch = torch.export.Dim("batch")
    with torch.no_grad(), quiet_export():
        torch.onnx.export(graph, tuple(example[name] for name in INPUT_NAMES), str(path),
                          dynamo=True, opset_version=opset, external_data=False,
                          input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
                          dynamic_shapes={name: {0: batch} for name in INPUT_NAMES})
    return path


def run_onnx(path: str | Path, inputs: Dict[str, torch.Tensor]) -> np.ndarray:
    """Depth B x 1 x H x W (m) of the ONNX file at `path` in onnxruntime (CPU)."""
    import onnxruntime as ort
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {name: inputs[name].numpy() for name in INPUT_NAMES}
    return session.run([OUTPUT_NAME], feeds)[0]


def onnx_max_diff_m(path: str | Path, model: nn.Module, inputs: Dict[str, torch.Tensor]) -> float:
    """Largest |ONNX - PyTorch| (m) over `inputs`, PyTorch being the reference `model.predict`
    (unfolded BN, `optimized=False`); inf on a shape mismatch or a non-finite value."""
    got = run_onnx(path, inputs)
    with torch.inference_mode():
        want = model.eval().predict(*(inputs[name] for name in INPUT_NAMES), optimized=False).numpy()
    if got.shape != want.shape or not np.isfinite(got).all():
        return float("inf")
    return float(np.abs(got - want).max())
