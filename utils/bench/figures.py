"""Measured figures on file, and the Markdown the docs quote them in.

A record (docs/figures/<name>.json, written by `tools/benchmark.py <command> --record PATH`) holds
one run's final JSON line with the command, the machine (CPU model, cores, ISA, GPU), the load
average before and after, the date and the commit. README.md and docs/*.md quote records only
between markers, which `render_blocks` fills from the records:

    <!-- figures VIEW NAME [NAME ...] -->
    (generated table)
    <!-- /figures -->

VIEW is a key of VIEWS (model, surround, data, train, wall, demo); NAMEs are record files without
`.json`. `tools/benchmark.py figures` checks that every block equals its rendering (tests/
test_doc_figures.py does too), `--write` rewrites the blocks.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import re
import shlex
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from utils.provenance import git_commit

REPO = Path(__file__).resolve().parents[2]
FIGURES_DIR = REPO / "docs" / "figures"
DOC_FILES = ("README.md", "docs/*.md")
BLOCK = re.compile(r"(<!-- figures (\S+)((?: \S+)+) -->\n)(.*?)(<!-- /figures -->)", re.S)
FLAGS_OF_INTEREST = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


# ---- what a record holds ------------------------------------------------------------------------
def cpu_facts(cpuinfo: str = "/proc/cpuinfo") -> Dict[str, Any]:
    """{"cpu": model name (platform.processor() without one), "cores": logical CPUs usable here,
    "flags": the FLAGS_OF_INTEREST it has}."""
    unknown = platform.processor() or "unknown CPU"
    name, flags = unknown, set()
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and name == unknown:
            name = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": name, "cores": cores, "flags": [f for f in FLAGS_OF_INTEREST if f in flags]}


def machine() -> Dict[str, Any]:
    """The CPU facts, torch's CPU capability (the kernels it dispatches), its version and the GPU."""
    import torch
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {**cpu_facts(), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__, "gpu": gpu}


def make_record(kind: str, command: Sequence[str], result: Dict[str, Any], load_before: float,
                torch_threads: Optional[int] = None, commit_folder: Path = REPO) -> Dict[str, Any]:
    """One run's record: `result` (the final JSON line) with what it was measured under."""
    return {"kind": kind, "command": shlex.join(command), "result": result, "machine": machine(),
            "torch_threads": torch_threads,
            "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "date": datetime.date.today().isoformat(), "commit": git_commit(commit_folder)}


def read_record(name: str, folder: Path = FIGURES_DIR) -> Dict[str, Any]:
    path = folder / f"{name}.json"
    try:
        return json.loads(path.read_text(), parse_constant=_refuse_constant)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such record; write it with tools/benchmark.py ... --record {path}")


def _refuse_constant(name: str):
    raise ValueError(f"non-finite number {name} in a record")


# ---- how the docs show records ------------------------------------------------------------------
def machine_text(m: Dict[str, Any]) -> str:
    """'"AMD EPYC", 2 cores, AVX2 and FMA, no AVX-512, no AMX, no GPU (torch 2.13.0+cpu, kernels AVX2)'."""
    flags = set(m["flags"])
    isa = [n for f, n in (("avx2", "AVX2"), ("fma", "FMA"), ("avx512f", "AVX-512"),
                           ("avx512_bf16", "AVX512-BF16"), ("amx_bf16", "AMX-BF16")) if f in flags]
    missing = [n for f, n in (("avx512f", "no AVX-512"), ("amx_bf16", "no AMX")) if f not in flags]
    gpu = m["gpu"] or "no GPU"
    return (f"\"{m['cpu']}\", {m['cores']} cores, {' and '.join(isa) or 'no AVX2'}"
            f"{''.join(', ' + x for x in missing)}, {gpu} (torch {m['torch']}, kernels "
            f"{m['torch_cpu_capability']})")


def load_text(record: Dict[str, Any]) -> str:
    before, after = record["load_avg_1min"]
    return f"{before:.1f}-{after:.1f}"


def optional(record: Dict[str, Any], key: str, fmt: str) -> str:
    value = record["result"].get(key)
    return "-" if value is None else fmt.format(value)


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {round(seconds % 60):02d} s" if seconds >= 60 else f"{seconds:.1f} s"


Column = Tuple[str, Callable[[Dict[str, Any]], str]]
SIZE: Column = ("input", lambda r: f"{r['result']['batch']} x {r['result']['height']}x{r['result']['width']}")
LOAD: Column = ("load (1-min avg, before-after)", load_text)
THREADS: Column = ("torch threads", lambda r: str(r["torch_threads"]))
REUSE: Column = ("freed buffers kept", lambda r: "yes" if "--reuse-freed-buffers" in r["command"] else "no")
TABLES: Dict[str, List[Column]] = {
    "model": [SIZE, ("reference s", lambda r: f"{r['result']['reference_s']:.3f}"),
              ("fused s", lambda r: f"{r['result']['fused_s']:.3f}"),
              ("speed-up", lambda r: f"{r['result']['speedup']:.2f}x"),
              ("max abs difference m", lambda r: f"{r['result']['max_abs_diff_m']:.2g}"), THREADS, REUSE, LOAD],
    "surround": [("input", lambda r: f"{r['result']['height']}x{r['result']['width']}"),
                 ("1 image s", lambda r: f"{r['result']['single_s']:.3f}"),
                 ("key frame s", lambda r: f"{r['result']['surround_s']:.3f} ({r['result']['cameras']} images)"),
                 ("ratio", lambda r: f"{r['result']['ratio']:.2f}x"),
                 ("under the target", lambda r: "yes" if r["result"]["within_target"] else "no"),
                 THREADS, REUSE, LOAD],
    "data": [("mode", lambda r: r["result"]["mode"]),
             ("ms per sample (CPU ms)", lambda r: f"{r['result']['ms_per_sample']:.1f} "
                                                 f"({r['result']['cpu_ms_per_sample']:.1f})"),
             ("released approach ms", lambda r: optional(r, "reference_ms_per_sample", "{:.1f}")),
             ("faster by", lambda r: optional(r, "speedup", "{:.1f}x")), LOAD],
    "train": [SIZE, ("data", lambda r: "real slice, DataLoader" if "--infos" in r["command"] else "random tensors"),
              ("step s", lambda r: f"{r['result']['step_s']:.3f}"),
              ("samples/s", lambda r: f"{r['result']['samples_per_s']:.2f}"),
              ("data time", lambda r: f"{100 * r['result']['data_fraction']:.1f} %"), THREADS, LOAD],
    "wall": [("command", lambda r: f"`{r['result']['command']}`"),
             ("wall time", lambda r: minutes(r["result"]["wall_s"])),
             ("exit status", lambda r: str(r["result"]["exit_status"])),
             ("checkout", lambda r: "new clone (no .venv, no data)" if r["result"]["new_clone"]
                                    else "used (venv or data present)"), LOAD],
}
RANGES_M = ("50", "70", "80")
DEMO_ROWS = (("model", "SpaDe"), ("baseline_radar", "radar columns filled sideways (`baseline_radar`)"),
             ("baseline_row_median", "per-row median LiDAR depth of the train set (`baseline_row_median`)"))


def table(columns: Sequence[Column], rows: Sequence[Dict[str, Any]]) -> List[str]:
    lines = ["| " + " | ".join(h for h, _ in columns) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(fn(r) for _, fn in columns) + " |" for r in rows]


def provenance_lines(records: Sequence[Dict[str, Any]], names: Sequence[str]) -> List[str]:
    """Under a table: the machine(s), the date(s) and each row's command and record file."""
    machines = list(dict.fromkeys(machine_text(r["machine"]) for r in records))
    dates = ", ".join(dict.fromkeys(r["date"] for r in records))
    lines = ["", f"Machine: {'; '.join(machines)}. Measured {dates}. Records:"]
    return lines + [f"- `{r['command']}` (docs/figures/{n}.json, commit {(r['commit'] or 'unknown')[:7]})"
                    for r, n in zip(records, names)]


def demo_table(record: Dict[str, Any]) -> List[str]:
    """The demo's metrics (a `wall` record of `make demo` with outputs/demo/metrics.json)."""
    metrics = record["result"]["result_file"]
    head = ["predictor"] + [f"MAE 0-{r} m" for r in RANGES_M] + ["RMSE 0-80 m", "dense MAE 0-80 m"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label in DEMO_ROWS:
        m = metrics[key]
        values = [m["mae_mm"][r] for r in RANGES_M] + [m["rmse_mm"]["80"], m["dense"]["mae_mm"]["80"]]
        lines.append("| " + " | ".join([label] + [f"{v:.0f}" for v in values]) + " |")
    return lines


def render(view: str, names: Sequence[str], folder: Path = FIGURES_DIR) -> str:
    """The Markdown of block `<!-- figures VIEW NAMES -->`, ending in a newline."""
    records = [read_record(n, folder) for n in names]
    if view == "demo":
        lines = demo_table(records[0])
    elif view in TABLES:
        lines = table(TABLES[view], records)
    else:
        raise ValueError(f"unknown figures view {view!r}; one of {sorted(TABLES) + ['demo']}")
    return "\n".join(lines + provenance_lines(records, names)) + "\n"


def render_blocks(text: str, folder: Path = FIGURES_DIR) -> str:
    """`text` with every figures block refilled from its records."""
    return BLOCK.sub(lambda m: m.group(1) + render(m.group(2), m.group(3).split(), folder) + m.group(5), text)


def quoted_records(text: str) -> List[str]:
    return [n for m in BLOCK.finditer(text) for n in m.group(3).split()]


def doc_paths(repo: Path = REPO) -> List[Path]:
    return sorted(p for pattern in DOC_FILES for p in repo.glob(pattern))


def stale_docs(repo: Path = REPO, folder: Path = FIGURES_DIR, write: bool = False) -> List[str]:
    """Problems: docs whose blocks differ from their records' rendering (rewritten when `write`),
    and records no doc quotes. Empty when the docs quote exactly what the records hold."""
    problems, quoted = [], set()
    for path in doc_paths(repo):
        text = path.read_text()
        quoted.update(quoted_records(text))
        fresh = render_blocks(text, folder)
        if fresh != text:
            if write:
                path.write_text(fresh)
            problems.append(f"{path.relative_to(repo)}: figures differ from docs/figures"
                            + (" (rewritten)" if write else "; run tools/benchmark.py figures --write"))
    problems += [f"docs/figures/{p.stem}.json: quoted by no doc" for p in sorted(folder.glob("*.json"))
                 if p.stem not in quoted]
    return problems
