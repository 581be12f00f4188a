"""Does sparse beat dense? (`make science`, tools/science.py, docs/science.md): SpaDe trained on
single-sweep LiDAR, on dense labels built as prior work builds them, on the exact truth, and with
multi-sweep radar, several seeds each; the table (utils/engine/tables.py) and the picture.

    results = run_science(Path("configs/synthetic_demo.yaml"), None, 3, Path("outputs/science"))

Rows: configs/science/rows.yaml. Each row x seed trains in OUT/runs/<row>/seed<N> (train.seed=N;
a finished run is only evaluated, a partial one resumed) and is evaluated on data.val_infos.
"""
from __future__ import annotations

import copy
import json
import logging
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import yaml

from datasets.infos import load_infos
from datasets.io import read_depth_png
from datasets.label_builder import build_labels, frame_name, read_done
from datasets.label_maps import label_error_counts, label_folder, pooled_label_error, read_label
from datasets.build import build_dataset
from datasets.nuscenes_dataset import RadarCameraDataset
from models import SpaDe
from utils.config import Config, apply_mapping, config_to_dict, load_config, parse_overrides
from utils.engine.evaluate import NULL_REASONS, evaluate, model_predictor
from utils.engine.evaluators import evaluators_for
from utils.engine.runs import REPO, ensure_world, sample_depth_m, train_in_parallel, trained_model
from utils.engine.tables import noise_markdown, published_markdown, table_markdown
from utils.files import write_png
from utils.jsonio import dumps, restore
from utils.visualize import depth_tile, error_tile, image_bgr, model_line, panel

ROWS = REPO / "configs" / "science" / "rows.yaml"
PUBLISHED = REPO / "configs" / "science" / "published.yaml"
REFERENCE_ROW = "sparse_released"
Tile = Tuple[str, np.ndarray]                           # a picture's (caption, H x W x 3 uint8 BGR)
# why a value of table.json can be null (utils/jsonio.py): the runs' summaries, the label quality
TABLE_NULL_REASONS = {**NULL_REASONS,
                      "*/label_quality/*": "undefined: no labelled pixel of the train key frames has "
                                           "exact truth to compare with"}
log = logging.getLogger(__name__)


def science_rows(only: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, Any]]:
    """The rows of configs/science/rows.yaml (those named in `only`, when given; an unknown name
    raises ValueError listing the choices)."""
    rows = yaml.safe_load(ROWS.read_text())
    unknown = set(only or ()) - set(rows)
    if unknown:
        raise ValueError(f"no row {', '.join(sorted(unknown))} in {ROWS}; choose from {', '.join(rows)}")
    return {name: row for name, row in rows.items() if not only or name in only}


def row_config(base: Path, row: Dict[str, Any], overrides: Sequence[str], seed: int, out: Path) -> Config:
    """base <- the row's config <- the overrides <- this seed and its run folder."""
    cfg = load_config(base)
    apply_mapping(cfg, row.get("config") or {})
    apply_mapping(cfg, parse_overrides(overrides))
    run_dir = out / "runs" / row["name"] / f"seed{seed}"
    apply_mapping(cfg, {"train": {"seed": seed, "out_dir": str(run_dir)}})
    return cfg


def has_truth(cfg: Config) -> bool:
    return (Path(cfg.data.root) / "depth_dense").is_dir()


def labels_for(cfg: Config, preset: str, version: str, workers: int) -> None:
    """The preset's labels of the train and val key frames, for each of data.cameras (missing ones
    only)."""
    for infos in (cfg.data.train_infos, cfg.data.val_infos):
        build_labels(cfg.data.root, infos, preset, cfg.data.label_dir, version, workers, progress=False,
                     cameras=cfg.data.cameras)


def evaluated_run(cfg: Config, eval_cfg: Optional[Config] = None) -> Tuple[Dict[str, Any], SpaDe]:
    """(evaluation summary on data.val_infos, model) of the run of `cfg`, trained now unless
    finished, scored with the data and eval settings of `eval_cfg` (default `cfg`; e.g. other
    data.cameras); the summary is kept in the run folder (eval.json) and reused while the
    checkpoint and those settings are unchanged."""
    eval_cfg = eval_cfg or cfg
    start = time.perf_counter()
    model = trained_model(cfg)
    trained_s = time.perf_counter() - start
    ckpt = Path(cfg.train.out_dir) / "checkpoints" / "latest.ckpt"
    cache = Path(cfg.train.out_dir) / "eval.json"
    stamp = {"checkpoint_mtime_ns": ckpt.stat().st_mtime_ns, "val_infos": eval_cfg.data.val_infos,
             "eval": config_to_dict(eval_cfg)["eval"]}
    if eval_cfg is not cfg:
        stamp["data"] = config_to_dict(eval_cfg)["data"]
    if cache.is_file():
        kept = restore(json.loads(cache.read_text()))      # its nulls: NaN again, as computed
        if kept.get("stamp") == stamp:
            return kept["summary"], model
    summary = evaluate(model_predictor(model, eval_cfg.eval.optimized),
                       build_dataset(eval_cfg, "val"),
                       evaluators_for(eval_cfg.data.root, eval_cfg.eval.ranges_m),
                       batch_size=eval_cfg.eval.batch_size, device=next(model.parameters()).device,
                       num_workers=eval_cfg.data.num_workers,
                       desc=Path(cfg.train.out_dir).parent.name, progress=False)["summary"]
    summary["seconds_train_or_load"] = round(trained_s, 1)
    cache.write_text(dumps({"stamp": stamp, "summary": summary}, indent=2, reasons=NULL_REASONS) + "\n")
    return summary, model


def native_lidar_labels(cfg: Config, infos: str) -> RadarCameraDataset:
    """Train-mode samples of `infos` at the size of the first camera of data.cameras, no
    disruption: their lidar_map is the single-sweep label as trained (range and occlusion filter)."""
    cam = load_infos(infos)[0]["cam_infos"][cfg.data.cameras[0]]
    plain = copy.deepcopy(cfg)
    apply_mapping(plain, {"data": {"disruption": "none", "mask_supervision": False, "height": cam["height"],
                                   "width": cam["width"], "label_kind": "lidar", "label_dir": "",
                                   "radar_sweeps": 1}})
    return build_dataset(plain, "train", infos=infos)


def sample_names(dataset: RadarCameraDataset) -> List[str]:
    """The image name (label name) of each sample of `dataset`, one per (key frame, camera) pair."""
    return [frame_name(dataset.infos[record], camera) for record, camera in dataset.pairs]


def label_quality(cfg: Config) -> Optional[Dict[str, float]]:
    """The training label's pooled error against the exact truth over the train samples (each key
    frame's image of each of data.cameras; as trained: beyond data.max_depth_m cut); None without
    exact truth."""
    if not has_truth(cfg):
        return None
    root, counts = Path(cfg.data.root), []
    samples = native_lidar_labels(cfg, cfg.data.train_infos)
    for index, name in enumerate(sample_names(samples)):
        label = (samples[index]["lidar_map"][0] if cfg.data.label_kind == "lidar"
                 else read_label(root, cfg.data, name))
        label = np.where(label < cfg.data.max_depth_m, label, 0)
        counts.append(label_error_counts(label, read_depth_png(root / "depth_dense" / f"{name}.png")))
    return pooled_label_error(counts)


def smear_frame(names: List[str], root: str, label_dir: str) -> int:
    """Index in `names` (image names) of the frame whose accumulated label has the most pixels more
    than 1 m off from another sweep's moving object (frames.jsonl); the middle frame without."""
    frames = read_done(label_folder(root, label_dir) / "frames.jsonl")
    smear = [frames.get(n, {}).get("error_smear", {}).get("far_off", -1) for n in names]
    return int(np.argmax(smear)) if max(smear) >= 0 else len(names) // 2


def prediction_caption(title: str) -> str:
    """The caption of the prediction of the model trained per the row titled `title` (rows.yaml),
    two lines: "prediction (m), trained on" and the title."""
    return f"prediction (m), trained on\n{title}"


def picture_tiles(cfgs: Dict[str, Config], models: Dict[str, SpaDe]) -> Optional[Tuple[List[Tile], str]]:
    """(captioned tiles, heading) of `picture`, None without the sparse_released row or an
    accumulated-label row. Captions name the rows by their titles (configs/science/rows.yaml);
    the heading names the models' budget (`model_line`) and the frame."""
    dense = next((n for n in cfgs if n.startswith("dense_accum")), None)
    if REFERENCE_ROW not in cfgs or dense is None:
        return None
    titles = {name: row["title"] for name, row in science_rows(list(cfgs)).items()}
    base = cfgs[REFERENCE_ROW]
    val = build_dataset(base, "val")
    index = smear_frame(sample_names(val), base.data.root, cfgs[dense].data.label_dir)
    sample = val[index]
    name, vmax = sample["name"], float(max(base.eval.ranges_m))
    root = Path(base.data.root)
    single = native_lidar_labels(base, base.data.val_infos)[index]["lidar_map"]
    accumulated = read_label(root, cfgs[dense].data, name)
    tiles = [("image", image_bgr(sample["img"])),
             ("single-sweep LiDAR label (m)", depth_tile(single, vmax, sparse=True, clipped=True)),
             (f"training label (m):\n{titles[dense]}", depth_tile(accumulated, vmax, clipped=True))]
    if "dense_depth" in sample:
        truth = np.asarray(sample["dense_depth"]).squeeze()
        tiles += [("exact truth (m)", depth_tile(truth, vmax, clipped=True)),
                  ("|error| of the training label against the truth (m)",
                   error_tile(accumulated, np.where(accumulated > 0, truth, 0)))]
    for row in (REFERENCE_ROW, dense, "dense_exact"):
        if row not in cfgs:
            continue
        tiles.append((prediction_caption(titles[row]), depth_tile(sample_depth_m(models[row], sample), vmax,
                                                                  clipped=True)))
    device = next(models[REFERENCE_ROW].parameters()).device
    return tiles, f"Models: {model_line(base, device)}, one per training label\nval frame {name}"


def picture(cfgs: Dict[str, Config], models: Dict[str, SpaDe], out: Path) -> Optional[Path]:
    """labels_and_predictions.png for one val frame (needs the sparse_released row and one
    accumulated-label row): image, labels, exact truth and the accumulated label's error against
    it, predictions of the models of each row's first seed, under a heading with their budget."""
    shown = picture_tiles(cfgs, models)
    if shown is None:
        return None
    path = out / "labels_and_predictions.png"
    write_png(path, panel(shown[0], columns=2, heading=shown[1]))
    return path


def run_science(base: Path, only: Optional[Sequence[str]], seeds: int, out: Path,
                overrides: Sequence[str] = (), version: str = "v1.0-trainval",
                label_workers: int = 1, jobs: int = 1) -> List[Dict[str, Any]]:
    """Run the rows (all, or `only`) with `seeds` seeds each over the `base` config, training
    `jobs` runs at a time (train_in_parallel) when more than one; write out/table.md,
    out/table.json and out/labels_and_predictions.png. Returns the results."""
    out.mkdir(parents=True, exist_ok=True)
    planned = {}                                        # row name -> (row, its seeds' configs)
    for name, row in science_rows(only).items():
        row = {**row, "name": name}
        cfgs = [row_config(base, row, overrides, seed, out) for seed in range(seeds)]
        if base.resolve() == (REPO / "configs" / "synthetic_demo.yaml").resolve():
            ensure_world(cfgs[0])
        if row.get("needs_truth") and not has_truth(cfgs[0]):
            log.info("row %s skipped: %s has no exact truth (depth_dense/)", name, cfgs[0].data.root)
            continue
        if row.get("labels"):
            labels_for(cfgs[0], row["labels"], version, label_workers)
        planned[name] = (row, cfgs)
    if jobs > 1:
        train_in_parallel([cfg for _, cfgs in planned.values() for cfg in cfgs], jobs)
    results, first_models, qualities = [], {}, {}
    for name, (row, cfgs) in planned.items():
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
        write_outputs(results, out)
    if results:
        shown = picture({name: cfgs[0] for name, (_, cfgs) in planned.items()}, first_models, out)
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
    (out / "table.json").write_text(dumps(results, indent=2, reasons=TABLE_NULL_REASONS) + "\n")
    (out / "table.md").write_text(text)
    print(text)
