"""The table of tools/science.py: mean and standard deviation over seeds, and which gaps are noise.

    rows = [{"name", "title", "runs": [eval summary per seed], "label_quality": {...} or None,
             "paper": {...} or None}, ...]
    text = table_markdown(rows) + "\n" + noise_markdown(rows, "sparse_released")

A cell is "mean ± sd" over the seeds (sample standard deviation; the mean alone for one seed).
A row's gap to the reference row is beyond noise when Welch's t-test puts its two-sided 95 %
confidence interval away from 0 (needs two seeds per row).
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

KeyPath = Tuple[str, ...]          # keys into an evaluation summary, e.g. ("dense", "mae_mm", "80")


def values(runs: Sequence[Dict[str, Any]], path: KeyPath) -> List[float]:
    """The finite values at `path` of each run's summary (runs lacking it are left out)."""
    out = []
    for summary in runs:
        node: Any = summary
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, (int, float)) and math.isfinite(node):
            out.append(float(node))
    return out


def mean_sd(xs: Sequence[float]) -> Tuple[float, float]:
    """(mean, sample standard deviation; nan for fewer than two values; both nan for none)."""
    if not xs:
        return float("nan"), float("nan")
    return float(np.mean(xs)), float(np.std(xs, ddof=1)) if len(xs) > 1 else float("nan")


def cell(xs: Sequence[float], digits: int = 0) -> str:
    mean, sd = mean_sd(xs)
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.{digits}f}" if math.isnan(sd) else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def welch(a: Sequence[float], b: Sequence[float]) -> Optional[Tuple[float, float]]:
    """(mean(a) - mean(b), half-width of its 95 % confidence interval, Welch's t), or None when a
    side has fewer than two values."""
    from scipy.stats import t as student_t
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return float(np.mean(a) - np.mean(b)), 0.0
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return float(np.mean(a) - np.mean(b)), float(student_t.ppf(0.975, dof) * se)


def _number(x: Any, spec: str, unit: str = "") -> str:
    """`x` formatted, or "n/a" when it is None (null in JSON) or not finite."""
    return f"{x:{spec}}{unit}" if isinstance(x, (int, float)) and math.isfinite(x) else "n/a"


def _label_cells(quality: Optional[Dict[str, float]]) -> List[str]:
    if not quality:
        return ["n/a"] * 3
    return [_number(quality.get("mae_mm"), ".0f"), _number(quality.get("far_off_pct"), ".1f", " %"),
            _number(quality.get("coverage_pct"), ".1f", " %")]


def _paper_cell(paper: Optional[Dict[str, Any]], ranges: Sequence[str]) -> str:
    if not paper:
        return ""
    shown = [r for r in ranges if r in paper.get("mae_mm", {})]
    return ", ".join(f"0-{r} m: {paper['mae_mm'][r]:.1f} / {paper['rmse_mm'][r]:.1f}" for r in shown)


def table_markdown(rows: List[Dict[str, Any]], ranges: Sequence[str] = ("50", "70", "80"),
                   with_paper: bool = False) -> str:
    """One markdown table: the released protocol against the single-sweep LiDAR (MAE, RMSE per
    range), MAE against the exact truth, the leakage measures, the training label's own error."""
    far = ranges[-1]
    head = (["row", "training label", "seeds"] + [f"MAE 0-{r} m" for r in ranges]
            + [f"RMSE 0-{r} m" for r in ranges]
            + [f"MAE vs exact truth 0-{far} m", "MAE on LiDAR px", "MAE elsewhere", "elsewhere / LiDAR px",
               "stripe index", "label MAE vs truth (mm)", "label px > 1 m off", "labelled px"]
            + (["paper, nuScenes val (MAE / RMSE)"] if with_paper else []))
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        runs = row["runs"]
        cells = ([row["name"], row["title"], str(len(runs))]
                 + [cell(values(runs, ("mae_mm", r))) for r in ranges]
                 + [cell(values(runs, ("rmse_mm", r))) for r in ranges]
                 + [cell(values(runs, ("dense", "mae_mm", far))),
                    cell(values(runs, ("ldl", "mae_hit_mm"))), cell(values(runs, ("ldl", "mae_miss_mm"))),
                    cell(values(runs, ("ldl", "miss_hit_ratio")), 2),
                    cell(values(runs, ("ldl", "stripe_index")), 2)]
                 + _label_cells(row.get("label_quality"))
                 + ([_paper_cell(row.get("paper"), ranges)] if with_paper else []))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def noise_markdown(rows: List[Dict[str, Any]], reference: str, far: str = "80") -> str:
    """For each row, its gap to the `reference` row in LiDAR MAE and exact-truth MAE (0-far m),
    with the 95 % interval, marked 'beyond noise' or 'within noise'."""
    ref = next((r for r in rows if r["name"] == reference), None)
    if ref is None:
        return ""
    out = [f"Gaps to `{reference}` (mean difference ± 95 % interval, Welch's t over seeds; mm):", ""]
    for row in rows:
        if row is ref:
            continue
        parts = []
        for label, path in ((f"LiDAR MAE 0-{far} m", ("mae_mm", far)),
                            (f"exact-truth MAE 0-{far} m", ("dense", "mae_mm", far))):
            a, b = values(row["runs"], path), values(ref["runs"], path)
            if not a or not b:
                continue
            test = welch(a, b)
            if test is None:
                parts.append(f"{label} {np.mean(a) - np.mean(b):+.0f} (one seed: noise unknown)")
            else:
                gap, half = test
                verdict = "beyond noise" if abs(gap) > half else "within noise"
                parts.append(f"{label} {gap:+.0f} ± {half:.0f} ({verdict})")
        if parts:
            out.append(f"- `{row['name']}`: " + "; ".join(parts))
    return "\n".join(out) + "\n"


def published_markdown(published: Dict[str, Dict[str, Any]], ranges: Sequence[str]) -> str:
    """The published dense-supervised methods (other networks), as a note under the table."""
    lines = ["Published dense-supervised methods on nuScenes val (other networks; MAE / RMSE, mm):", ""]
    for name, numbers in published.items():
        lines.append(f"- {name}: {_paper_cell(numbers, ranges)}")
    return "\n".join(lines) + "\n"


def ablation_markdown(rows: List[Dict[str, Any]]) -> str:
    """The ablation table (utils/engine/ablation.py): released metrics, dense error and leakage."""
    ranges = list(rows[0]["summary"]["mae_mm"])
    far = ranges[-1]
    head = (["ablation", "changes"] + [f"MAE 0-{r} m" for r in ranges] + [f"RMSE 0-{far} m",
            f"dense MAE 0-{far} m", "MAE on LiDAR px", "MAE elsewhere", "ratio", "stripe index"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    undefined: Dict[str, List[str]] = {}          # pointer of an n/a value -> the rows
    for row in rows:
        s = row["summary"]
        ldl, dense = s.get("ldl", {}), s.get("dense", {}).get("mae_mm", {})
        values = ([(f"/mae_mm/{r}", s["mae_mm"].get(r), ".0f") for r in ranges]
                  + [(f"/rmse_mm/{far}", s["rmse_mm"].get(far), ".0f"), (f"/dense/mae_mm/{far}", dense.get(far), ".0f")]
                  + [(f"/ldl/{k}", ldl.get(k), spec) for k, spec in (("mae_hit_mm", ".0f"), ("mae_miss_mm", ".0f"),
                                                                      ("miss_hit_ratio", ".2f"), ("stripe_index", ".2f"))])
        cells = [row["name"], row["changes"]]
        for pointer, value, spec in values:
            cells.append(_number(value, spec))
            if cells[-1] == "n/a" and (ldl or not pointer.startswith("/ldl")) and (dense or "dense" not in pointer):
                undefined.setdefault(pointer, []).append(row["name"])
        lines.append("| " + " | ".join(cells) + " |")
    if undefined:
        from utils.engine.evaluate import undefined_reason
        lines += [""] + [f"n/a at {pointer.strip('/')} ({', '.join(names)}): {undefined_reason(pointer)}"
                         for pointer, names in undefined.items()]
    return ("Errors in mm on the synthetic val split (LiDAR ground truth unless 'dense'); leakage "
            "measures of utils/ldl.py against the dense truth (ratio = elsewhere / on LiDAR "
            "pixels; stripe index 1 = the truth's vertical/horizontal gradient balance).\n\n"
            + "\n".join(lines) + "\n")


def surround_markdown(arms: List[Dict[str, Any]], far: str = "80") -> str:
    """The surround table (utils/engine/surround.py): per camera and pooled, each arm's LiDAR MAE
    0-`far` m (and the exact-truth MAE where the world has it) as mean ± sd over seeds, and the
    gap of the last arm to the first with its 95 % interval (Welch's t)."""
    cameras = list(arms[0]["runs"][0].get("per_camera", {}))
    dense = any("dense" in run for arm in arms for run in arm["runs"])
    metrics = [("LiDAR MAE", ("mae_mm", far))] + ([("exact-truth MAE", ("dense", "mae_mm", far))] if dense else [])
    first, last = arms[0], arms[-1]
    head = ["camera"] + [f"{label} `{arm['name']}`" for label, _ in metrics for arm in arms] \
        + [f"{label} gap" for label, _ in metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for camera in cameras + ["all (pooled)"]:
        def runs(arm):
            return arm["runs"] if camera == "all (pooled)" else [r["per_camera"].get(camera, {}) for r in arm["runs"]]
        cells = [camera] + [cell(values(runs(arm), path)) for _, path in metrics for arm in arms]
        for _, path in metrics:
            a, b = values(runs(last), path), values(runs(first), path)
            test = welch(a, b) if a and b else None
            cells.append("n/a" if test is None else f"{test[0]:+.0f} ± {test[1]:.0f}"
                         + (" *" if abs(test[0]) > test[1] else ""))
        lines.append("| " + " | ".join(cells) + " |")
    seeds = ", ".join(f"`{arm['name']}`: {len(arm['runs'])} seeds" for arm in arms)
    return (f"Errors in mm, 0-{far} m, on the surround val split ({seeds}; mean ± sd over seeds). "
            f"gap = `{last['name']}` - `{first['name']}` ± the 95 % interval of Welch's t; * beyond "
            "seed noise.\n\n" + "\n".join(lines) + "\n")
