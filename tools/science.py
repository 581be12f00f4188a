"""Does sparse beat dense? SpaDe trained on single-sweep LiDAR, on dense labels built as prior
work builds them, on the exact truth, and with multi-sweep radar, several seeds each (docs/science.md).

Rows: configs/science/rows.yaml. For each row that trains on accumulated labels, the labels of the
train and val key frames are built first (tools/make_dense_labels.py, into <data.root>/dense_labels/
<preset>; built once, reused). Each row x seed trains in OUT/runs/<row>/seed<N> (train.seed=N; a
finished run is only evaluated, a partial one resumed) and is evaluated on data.val_infos. key=value
overrides apply to every run (train.max_steps=100 for a shorter budget). Writes OUT/table.md (the
table, the gaps that are beyond or within seed noise, on nuScenes the paper's numbers beside ours),
OUT/table.json and OUT/labels_and_predictions.png (one val frame: single-sweep label, accumulated
label, exact truth, predictions of sparse- and dense-trained models). On nuScenes
(--base configs/spade_nuscenes.yaml data.root=...) rows needing the exact truth are skipped.
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import yaml

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # as tools/demo.py: robust on a busy CPU

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from utils.cli import make_parser  # noqa: E402
from datasets.infos import CAMERA, load_infos  # noqa: E402
from datasets.io import read_dense_depth  # noqa: E402
from datasets.label_maps import label_error_counts, label_folder, pooled_label_error, read_label  # noqa: E402
from datasets.nuscenes_dataset import RadarCameraDataset  # noqa: E402
from models import SpaDe  # noqa: E402
from tools import make_dense_labels  # noqa: E402
from tools.demo import ensure_world, trained_model  # noqa: E402
from utils.config import Config, apply_mapping, config_to_dict, load_config, parse_overrides  # noqa: E402
from utils.evaluate import evaluate, model_predictor  # noqa: E402
from utils.science_table import noise_markdown, published_markdown, table_markdown  # noqa: E402
from utils.visualize import depth_tile, image_bgr, panel, write_png  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ROWS = REPO / "configs" / "science" / "rows.yaml"
PUBLISHED = REPO / "configs" / "science" / "published.yaml"
REFERENCE_ROW = "sparse_released"
log = logging.getLogger("science")


def row_config(base: Path, row: Dict[str, Any], overrides: List[str], seed: int, out: Path) -> Config:
    """base <- the row's config <- the overrides <- this seed and its run folder."""
    cfg = load_config(base)
    apply_mapping(cfg, row.get("config") or {})
    apply_mapping(cfg, parse_overrides(overrides))
    run_dir = out / "runs" / row["name"] / f"seed{seed}"
    apply_mapping(cfg, {"train": {"seed": seed, "out_dir": str(run_dir)}})
    return cfg


def has_truth(cfg: Config) -> bool:
    return (Path(cfg.data.root) / "depth_dense").is_dir()


def build_labels(cfg: Config, preset: str, version: str, workers: int) -> None:
    """The preset's labels of the train and val key frames (missing ones only)."""
    for infos in (cfg.data.train_infos, cfg.data.val_infos):
        make_dense_labels.main(["--data-root", cfg.data.root, "--infos", infos, "--preset", preset,
                                "--label-dir", cfg.data.label_dir, "--version", version,
                                "--workers", str(workers), "--no-progress"])


def evaluated_run(cfg: Config) -> Tuple[Dict[str, Any], SpaDe]:
    """(evaluation summary on data.val_infos, model) of the run of `cfg`, trained now unless
    finished; the summary is kept in the run folder (eval.json) and reused while the checkpoint
    is unchanged."""
    start = time.perf_counter()
    model = trained_model(cfg)
    trained_s = time.perf_counter() - start
    ckpt = Path(cfg.train.out_dir) / "checkpoints" / "latest.ckpt"
    cache = Path(cfg.train.out_dir) / "eval.json"
    stamp = {"checkpoint_mtime_ns": ckpt.stat().st_mtime_ns, "val_infos": cfg.data.val_infos,
             "eval": config_to_dict(cfg)["eval"]}
    if cache.is_file():
        kept = json.loads(cache.read_text())
        if kept.get("stamp") == stamp:
            return kept["summary"], model
    summary = evaluate(model_predictor(model, cfg.eval.optimized),
                       RadarCameraDataset(cfg, cfg.data.val_infos, mode="eval"),
                       batch_size=cfg.eval.batch_size, ranges_m=cfg.eval.ranges_m,
                       device=next(model.parameters()).device, num_workers=cfg.data.num_workers,
                       desc=Path(cfg.train.out_dir).parent.name, progress=False)["summary"]
    summary["seconds_train_or_load"] = round(trained_s, 1)
    cache.write_text(json.dumps({"stamp": stamp, "summary": summary}, indent=2) + "\n")
    return summary, model


def native_lidar_labels(cfg: Config, infos: str) -> RadarCameraDataset:
    """Train-mode samples of `infos` at the camera's own size, no disruption: their lidar_map is
    the single-sweep label as trained (range and occlusion filter)."""
    cam = load_infos(infos)[0]["cam_infos"][CAMERA]
    plain = copy.deepcopy(cfg)
    apply_mapping(plain, {"data": {"disruption": "none", "mask_supervision": False, "height": cam["height"],
                                   "width": cam["width"], "label_kind": "lidar", "label_dir": "",
                                   "radar_sweeps": 1}})
    return RadarCameraDataset(plain, infos, mode="train")


def label_quality(cfg: Config) -> Optional[Dict[str, float]]:
    """The training label's pooled error against the exact truth over the train key frames (as
    trained: beyond data.max_depth_m cut); None without exact truth."""
    if not has_truth(cfg):
        return None
    root, counts = Path(cfg.data.root), []
    samples = native_lidar_labels(cfg, cfg.data.train_infos) if cfg.data.label_kind == "lidar" else None
    for index, record in enumerate(load_infos(cfg.data.train_infos)):
        name = make_dense_labels.frame_name(record)
        label = samples[index]["lidar_map"][0] if samples is not None else read_label(root, cfg.data, name)
        label = np.where(label < cfg.data.max_depth_m, label, 0)
        counts.append(label_error_counts(label, read_dense_depth(root / "depth_dense" / f"{name}.png")))
    return pooled_label_error(counts)


def smear_frame(cfg: Config, label_dir: str) -> int:
    """Index in data.val_infos of the val frame whose accumulated label has the most pixels more
    than 1 m off from another sweep's moving object (frames.jsonl); the middle frame without."""
    names = [make_dense_labels.frame_name(r) for r in load_infos(cfg.data.val_infos)]
    frames = make_dense_labels.read_done(label_folder(cfg.data.root, label_dir) / "frames.jsonl")
    smear = [frames.get(n, {}).get("error_smear", {}).get("far_off", -1) for n in names]
    return int(np.argmax(smear)) if max(smear) >= 0 else len(names) // 2


def picture(cfgs: Dict[str, Config], models: Dict[str, SpaDe], out: Path) -> Optional[Path]:
    """labels_and_predictions.png for one val frame (needs the sparse_released row and one
    accumulated-label row): the models of each row's first seed."""
    dense = next((n for n in cfgs if n.startswith("dense_accum")), None)
    if REFERENCE_ROW not in cfgs or dense is None:
        return None
    base = cfgs[REFERENCE_ROW]
    index = smear_frame(base, cfgs[dense].data.label_dir)
    sample = RadarCameraDataset(base, base.data.val_infos, mode="eval")[index]
    name, vmax = sample["name"], float(max(base.eval.ranges_m))
    root = Path(base.data.root)
    single = native_lidar_labels(base, base.data.val_infos)[index]["lidar_map"]
    accumulated = read_label(root, cfgs[dense].data, name)
    tiles = [("image", image_bgr(sample["img"])),
             ("single-sweep label", depth_tile(single, vmax, sparse=True)),
             (f"{cfgs[dense].data.label_dir} label", depth_tile(accumulated, vmax))]
    if "dense_depth" in sample:
        tiles.append(("exact truth", depth_tile(sample["dense_depth"], vmax)))
    for row in (REFERENCE_ROW, dense, "dense_exact"):
        if row not in cfgs:
            continue
        model = models[row]
        device = next(model.parameters()).device
        x = {k: torch.as_tensor(sample[k])[None].to(device)
             for k in ("img", "radar_map", "radar_pts", "radar_count")}
        with torch.inference_mode():
            pred = model.predict(x["img"], x["radar_map"], x["radar_pts"], x["radar_count"])[0, 0]
        tiles.append((f"prediction, trained {row}", depth_tile(pred, vmax, no_value=False)))
    path = out / "labels_and_predictions.png"
    write_png(path, panel(tiles, columns=2))
    return path


def main(argv=None) -> List[Dict[str, Any]]:
    parser = make_parser(__doc__, """
        python tools/science.py                      (what `make science` runs: every row, 3 seeds)
        python tools/science.py --rows sparse_released dense_accum_boxes --seeds 5 train.max_steps=1000
        python tools/science.py --base configs/spade_nuscenes.yaml --label-workers 16 --out outputs/science_nuscenes \\
            data.root=data/nuscenes data.train_infos=data/nuscenes_radar_5sweeps_infos_train.pkl \\
            data.val_infos=data/nuscenes_radar_5sweeps_infos_val.pkl
        """)
    parser.add_argument("--base", default=str(REPO / "configs" / "synthetic_demo.yaml"),
                        help="base config of every row (configs/spade_nuscenes.yaml for nuScenes)")
    parser.add_argument("--rows", nargs="*", help="rows of configs/science/rows.yaml to run (default all)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per row: train.seed = 0 .. N-1")
    parser.add_argument("--out", default="outputs/science", help="runs, table.md/.json and the picture")
    parser.add_argument("--version", default="v1.0-trainval", help="nuScenes table folder for the labels")
    parser.add_argument("--label-workers", type=int, default=1, help="processes building labels")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="overrides of every run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    rows = yaml.safe_load(ROWS.read_text())
    unknown = set(args.rows or ()) - set(rows)
    if unknown:
        sys.exit(f"error: no row {', '.join(sorted(unknown))} in {ROWS}; choose from {', '.join(rows)}")
    if args.seeds < 1:
        sys.exit("error: --seeds must be at least 1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = Path(args.base)
    results, first_cfg, first_models, qualities = [], {}, {}, {}
    for name, row in rows.items():
        if args.rows and name not in args.rows:
            continue
        row = {**row, "name": name}
        cfgs = [row_config(base, row, args.overrides, seed, out) for seed in range(args.seeds)]
        if base.resolve() == (REPO / "configs" / "synthetic_demo.yaml").resolve():
            ensure_world(cfgs[0])
        if row.get("needs_truth") and not has_truth(cfgs[0]):
            log.info("row %s skipped: %s has no exact truth (depth_dense/)", name, cfgs[0].data.root)
            continue
        if row.get("labels"):
            build_labels(cfgs[0], row["labels"], args.version, args.label_workers)
        runs = []
        for cfg in cfgs:
            summary, model = evaluated_run(cfg)
            runs.append(summary)
            if cfg is cfgs[0] and (name == REFERENCE_ROW or name.startswith("dense_")):
                first_models[name] = model              # for the picture
        label = (cfgs[0].data.label_kind, cfgs[0].data.label_dir)
        if label not in qualities:
            qualities[label] = label_quality(cfgs[0])
        results.append({"name": name, "title": row["title"], "config": row.get("config") or {},
                        "runs": runs, "label_quality": qualities[label], "paper": row.get("paper")})
        first_cfg[name] = cfgs[0]
        write_outputs(results, out)
    if results:
        shown = picture(first_cfg, first_models, out)
        if shown:
            print(f"wrote {shown}")
    return results


def write_outputs(results: List[Dict[str, Any]], out: Path) -> None:
    """table.json and table.md (rewritten after every row, so a long suite shows progress)."""
    ranges = list(results[0]["runs"][0]["mae_mm"])
    on_real_data = not any("dense" in run for row in results for run in row["runs"])
    text = (table_markdown(results, ranges, with_paper=on_real_data) + "\n"
            + noise_markdown(results, REFERENCE_ROW, ranges[-1]))
    if on_real_data:
        text += "\n" + published_markdown(yaml.safe_load(PUBLISHED.read_text()), ranges)
    (out / "table.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "table.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
