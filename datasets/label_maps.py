"""Training labels other than the released single LiDAR sweep, and how wrong a label is.

    label_m = read_label(root, cfg.data, name)        # H x W float32 (m), 0 = none; None for 'lidar'
    counts = label_error_counts(label_m, truth_m)     # per frame; pooled_label_error([...]) per set

`data.label_kind`:
- `lidar` (default, released): the key-frame LiDAR sweep of the info record, 0 < z < max range and
  the occlusion filter (datasets/nuscenes_dataset.py); `data.label_dir` must be empty.
- `depth_png`: `<data.label_dir>/<image basename>.png`, uint16 millimetres, 0 = no label
  (`label_dir` relative to data.root unless absolute): the synthetic world's exact truth
  (`depth_dense`) or labels built by tools/make_dense_labels.py. In train mode the map is warped
  with the nearest rule like the semantic masks and pixels at or beyond data.max_depth_m are set
  to 0. Evaluation never reads it (the released protocol scores against the single sweep).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, Optional

import numpy as np

from datasets.io import read_depth_png

LABEL_KINDS = ("lidar", "depth_png")
FAR_OFF_M = 1.0                 # a label pixel "more than 1 m off" the exact truth


class MissingLabelError(FileNotFoundError):
    """A label map named by data.label_dir is absent (never skipped: the label set is incomplete)."""


def label_folder(root: str | Path, label_dir: str) -> Path:
    """`label_dir` under the data root (or itself when absolute)."""
    return Path(label_dir) if Path(label_dir).is_absolute() else Path(root) / label_dir


def read_label(root: str | Path, data_cfg, name: str) -> Optional[np.ndarray]:
    """H x W float32 label (m, 0 = none) of image `name` for data.label_kind depth_png, else None."""
    if data_cfg.label_kind != "depth_png":
        return None
    path = label_folder(root, data_cfg.label_dir) / f"{name}.png"
    if not path.is_file():
        raise MissingLabelError(f"label map {path} not found (data.label_dir={data_cfg.label_dir}); build the "
                                "labels with tools/make_dense_labels.py --data-root ROOT --infos INFOS "
                                "--preset NAME, or point data.label_dir at a complete folder")
    return read_depth_png(path, "delete it and run tools/make_dense_labels.py again (it rebuilds "
                                "missing labels only)")


def label_error_counts(label_m: np.ndarray, truth_m: np.ndarray) -> Dict[str, float]:
    """Sums over one frame (H x W label and exact truth, m, 0 = none): `pixels`, `labelled`,
    `compared` (labelled with truth), `abs_err_sum_m` and `far_off` (|error| > FAR_OFF_M) over
    the compared pixels. Truth is 0 beyond 65.535 m (uint16 mm) and on the sky."""
    compared = (label_m > 0) & (truth_m > 0)
    err = np.abs(label_m[compared].astype(np.float64) - truth_m[compared])
    return {"pixels": int(label_m.size), "labelled": int(np.count_nonzero(label_m > 0)),
            "compared": int(compared.sum()), "abs_err_sum_m": float(err.sum()),
            "far_off": int((err > FAR_OFF_M).sum())}


def pooled_label_error(counts: Iterable[Dict[str, float]]) -> Dict[str, float]:
    """Pixel-pooled quality of a set of frames: `mae_mm` and `far_off_pct` (% of compared pixels
    more than 1 m off) against the truth, `coverage_pct` (% of all pixels labelled), `frames`."""
    total = {"pixels": 0, "labelled": 0, "compared": 0, "abs_err_sum_m": 0.0, "far_off": 0, "frames": 0}
    for c in counts:
        for key in ("pixels", "labelled", "compared", "abs_err_sum_m", "far_off"):
            total[key] += c[key]
        total["frames"] += 1
    compared = max(total["compared"], 1)
    return {"mae_mm": 1000.0 * total["abs_err_sum_m"] / compared if total["compared"] else float("nan"),
            "far_off_pct": 100.0 * total["far_off"] / compared if total["compared"] else float("nan"),
            "coverage_pct": 100.0 * total["labelled"] / max(total["pixels"], 1), "frames": total["frames"]}
