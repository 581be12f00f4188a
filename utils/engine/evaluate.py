"""Evaluation engine behind eval.py, the demo, the ablations and training's validation
(docs/spade.md section 1).

    predict = model_predictor(model)           # or a baseline: batch dict -> B x 1 x H x W (m)
    result = evaluate(predict, dataset, evaluators_for(cfg.data.root, (50, 70, 80)), batch_size=4)
    write_results(result, "results.json")      # + results.csv, one row per image; atomic writes
    print(format_table(result["summary"]))

Every batch's prediction goes through each evaluator of the list (utils/engine/evaluators.py:
the released protocol, the dense-truth and leakage measures, prediction and panel writers); their
per-image columns make the CSV rows and their summaries the summary. Where the samples carry their
`camera` (datasets/nuscenes_dataset.py: one sample per key frame and camera), the rows gain a
`camera` column and the summary, pooled over every (key frame, camera) image, gains `per_camera`:
the same summary over each camera's images alone. A non-finite prediction
stops the evaluation with an EvaluationError naming the image (it would otherwise leave the mean
unnoticed). A summary value that is undefined (NaN in memory) is written as null with its reason
(utils/jsonio.py, reasons: NULL_REASONS) and shown as "n/a (reason)" by format_table.
"""
from __future__ import annotations

import csv
import io
import math
import time
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Subset, default_collate
from tqdm import tqdm

from datasets.workers import shutdown_workers, worker_options
from utils.files import atomic_write
from utils.jsonio import dumps
from utils.provenance import provenance

Predictor = Callable[[Dict[str, Any]], torch.Tensor]

# Why a value of an evaluation summary can be undefined (NaN in memory): JSON pointer pattern ->
# reason, for utils/jsonio.py's "nulls" and for the console (undefined_reason). The LDL measures
# are those of utils/ldl.py.
NULL_REASONS = {
    "*/ldl/stripe_index": "undefined: the prediction (or the truth) has no horizontal gradient energy "
                          "to divide by: a prediction constant along every row, like the row-median "
                          "baseline's one depth per row, has no LiDAR-row pattern to measure",
    "*/ldl/mae_hit_mm": "undefined: no dense-truth pixel in range is hit by the LiDAR",
    "*/ldl/mae_miss_mm": "undefined: no dense-truth pixel in range lies between the LiDAR pixels",
    "*/ldl/miss_hit_ratio": "undefined: the MAE on LiDAR pixels is zero or undefined",
    "*mae_mm/*": "undefined: no ground-truth pixel in this range in any image",
    "*rmse_mm/*": "undefined: no ground-truth pixel in this range in any image",
}


def undefined_reason(pointer: str) -> str:
    """Why the summary value at JSON pointer `pointer` (e.g. "/ldl/stripe_index") is undefined,
    without the "undefined: " prefix."""
    text = next((t for p, t in NULL_REASONS.items() if fnmatchcase(pointer, p)), "undefined: not a number")
    return text.removeprefix("undefined: ")


def shown(value: Any, spec: str, pointer: str, unit: str = "") -> str:
    """`value` formatted with `spec` and `unit`, or "n/a (why)" when it is not a finite number."""
    if isinstance(value, (int, float)) and math.isfinite(value):
        return format(value, spec) + unit
    return f"n/a ({undefined_reason(pointer)})"


class EvaluationError(RuntimeError):
    """A batch cannot be evaluated (images of several sizes) or a prediction is not finite."""


def model_predictor(model: torch.nn.Module, optimized: bool = True) -> Predictor:
    """Batch dict -> depth B x 1 x H x W (m) through `model.predict` (any input size; the model
    is put in eval mode; `optimized` picks predict's fused inference path, eval.optimized)."""
    model.eval()

    def predict(batch: Dict[str, Any]) -> torch.Tensor:
        return model.predict(batch["img"], batch["radar_map"], batch["radar_pts"], batch["radar_count"],
                             optimized=optimized)
    return predict


def collate_same_size(samples: List[Dict[str, Any]]) -> Dict[str, Any]:
    """default_collate, with an error naming the images when their sizes differ."""
    sizes = {tuple(s["img"].shape[-2:]) for s in samples}
    if len(sizes) > 1:
        listed = ", ".join(f"{s['name']} {s['img'].shape[-2]}x{s['img'].shape[-1]}" for s in samples)
        raise EvaluationError(f"images of different sizes in one batch ({listed}); evaluate with "
                              "--batch-size 1 (eval.batch_size=1)")
    return default_collate(samples)


def check_finite(pred_m: torch.Tensor, names: Sequence[str], indices: Sequence[int]) -> None:
    """Raise EvaluationError naming the first image whose prediction B x 1 x H x W has a NaN
    or inf pixel."""
    bad = (~torch.isfinite(pred_m)).flatten(1).sum(1)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise EvaluationError(f"the prediction for {names[i]} (sample {indices[i]}) has {int(bad[i])} "
                              "non-finite pixels: check that sample's files (image, radar) and the "
                              "checkpoint")


def _to_device(batch: Dict[str, Any], device: torch.device) -> Dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()}


def camera_images(cameras: Sequence[str]) -> Dict[str, List[int]]:
    """{camera: positions of its images in `cameras` (one name per image)}, cameras in the order
    they first appear."""
    groups: Dict[str, List[int]] = {}
    for position, camera in enumerate(cameras):
        groups.setdefault(camera, []).append(position)
    return groups


def summarise(evaluators: Sequence[Any], images: Sequence[int] | None = None) -> Dict[str, Any]:
    """The evaluators' summaries merged, over the images at positions `images` (None: all)."""
    summary: Dict[str, Any] = {}
    for evaluator in evaluators:
        summary.update(evaluator.summary(images))
    return summary


@torch.inference_mode()
def evaluate(predict: Predictor, dataset: Dataset, evaluators: Sequence[Any], *, batch_size: int = 4,
             num_workers: int = 0, max_samples: int = 0, device: torch.device | str = "cpu",
             desc: str = "eval", progress: bool = True) -> Dict[str, Any]:
    """Run `predict` over `dataset` (eval-mode samples) in order, each batch's prediction through
    every evaluator. Returns {"summary": the evaluators' summaries merged, with `seconds` and,
    where the samples carry `camera`, `per_camera` ({camera: the summary of its images}),
    "rows": one dict per image (index, name, camera where carried, and the evaluators' columns)}."""
    device = torch.device(device)
    if max_samples > 0 and max_samples < len(dataset):
        dataset = Subset(dataset, range(max_samples))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, pin_memory=device.type == "cuda",
                        collate_fn=collate_same_size, **worker_options(num_workers))
    rows: List[Dict[str, Any]] = []
    start = time.perf_counter()
    batches = iter(loader)
    try:
        for batch in tqdm(batches, desc=desc, unit="batch", total=len(loader), disable=not progress,
                          dynamic_ncols=True):
            indices = batch["index"].tolist()
            batch = _to_device(batch, device)
            pred_m = predict(batch).float()
            check_finite(pred_m, batch["name"], indices)
            columns: Dict[str, List[Any]] = {"index": indices, "name": batch["name"]}
            columns.update({"camera": batch["camera"]} if "camera" in batch else {})
            for evaluator in evaluators:
                columns.update(evaluator.process(batch, pred_m))
            rows += [{k: v[i] for k, v in columns.items()} for i in range(len(indices))]
    finally:
        shutdown_workers(batches)       # on an error too: no worker killed at exit with a traceback
    summary = summarise(evaluators)
    summary["seconds"] = time.perf_counter() - start
    if rows and "camera" in rows[0]:
        summary["per_camera"] = {camera: summarise(evaluators, images)
                                 for camera, images in camera_images([r["camera"] for r in rows]).items()}
    return {"summary": summary, "rows": rows}


def csv_path_for(out_json: str | Path) -> Path:
    """The per-image CSV beside a summary JSON: X.json -> X.csv (a .csv summary path is an error)."""
    out_json = Path(out_json)
    if out_json.suffix.lower() == ".csv":
        raise ValueError(f"summary path {out_json} ends in .csv, where the per-image CSV goes; give "
                         f"the summary a .json path ({out_json.with_suffix('.json')})")
    return out_json.with_suffix(".csv")


def write_results(result: Dict[str, Any], out_json: str | Path, **meta: Any) -> Path:
    """Write the summary (plus `meta` and the provenance of this code, utils/provenance.py) as
    JSON and the per-image rows as CSV beside it, each atomically; returns the CSV's path."""
    csv_path = csv_path_for(out_json)
    document = {**meta, "provenance": provenance(), **result["summary"]}
    text = dumps(document, indent=2, reasons=NULL_REASONS).encode() + b"\n"
    atomic_write(out_json, lambda f: f.write(text))
    rows = result["rows"]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(rows[0]) if rows else ["index", "name"])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(csv_path, lambda f: f.write(text.getvalue().encode()))
    return csv_path


def format_table(summary: Dict[str, Any], title: str = "") -> str:
    """The released protocol's table in millimetres, pooled over all images, with a row per
    camera under the MAE and the RMSE rows when `per_camera` holds several cameras (plus dense/LDL
    lines where present); an undefined value shows as n/a, with its reason."""
    ranges = list(summary["mae_mm"])
    cameras = summary.get("per_camera", {}) if len(summary.get("per_camera", {})) > 1 else {}
    width = max([14] + [len(camera) + 3 for camera in cameras])
    lines = [title] if title else []
    undefined = []

    def row(label: str, values: Dict[str, Any], what: str = "") -> str:
        cells = []
        for r in ranges:
            value = values.get(r)
            finite = isinstance(value, (int, float)) and math.isfinite(value)
            undefined.extend([] if finite else [f"{what or label} 0-{r} m"])
            cells.append(f"{value:>12.1f}" if finite else f"{'n/a':>12}")
        return f"{label:<{width}}" + "".join(cells)

    lines.append(f"{'range':<{width}}" + "".join(f"{'0-' + r + ' m':>12}" for r in ranges))
    for label, key in (("MAE (mm)", "mae_mm"), ("RMSE (mm)", "rmse_mm")):
        lines.append(row(label, summary[key]))
        lines += [row(f"  {camera}", own[key], f"{camera} {label}") for camera, own in cameras.items()]
    if "dense" in summary:
        d = summary["dense"]
        lines.append(row("dense MAE", d["mae_mm"]))
        lines.append(row("dense RMSE", d["rmse_mm"]))
    if undefined:
        lines.append(f"n/a ({', '.join(undefined)}): {undefined_reason('/mae_mm/')}")
    if "dense" in summary:
        ldl = summary["ldl"]
        lines.append(f"LDL: MAE on LiDAR pixels {shown(ldl['mae_hit_mm'], '.1f', '/ldl/mae_hit_mm', ' mm')}, "
                     f"elsewhere {shown(ldl['mae_miss_mm'], '.1f', '/ldl/mae_miss_mm', ' mm')} (ratio "
                     f"{shown(ldl['miss_hit_ratio'], '.2f', '/ldl/miss_hit_ratio')}); "
                     f"stripe index {shown(ldl['stripe_index'], '.2f', '/ldl/stripe_index')}")
    each = ", ".join(f"{camera} {own['num_samples']}" for camera, own in cameras.items())
    lines.append(f"{summary['num_samples']} images" + (f" ({each})" if each else ""))
    return "\n".join(lines)
