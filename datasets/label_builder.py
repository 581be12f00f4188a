"""Building prior-work dense labels for the key frames of an info file (the engine of
tools/make_dense_labels.py and tools/science.py): accumulate the LiDAR sweeps around each key frame
(datasets/dense_labels.py, presets in configs/dense_labels/) into the image of each chosen camera
(default CAM_FRONT; data.cameras) and write <root>/<label dir>/<image>.png
(uint16 mm, 0 = no label; atomic), <label dir>/recipe.yaml (the recipe; a folder built with another
recipe is refused) and <label dir>/frames.jsonl (a line per frame: sweeps used and why any are
missing, point and pixel counts, and where the root has the exact truth depth_dense/, the label's
error against it). Resumable: frames already listed with their PNG are skipped.

    summary = build_labels("data/synthetic", "data/synthetic/..._train.pkl", "accum_boxes")
    summary = build_labels("data/nuscenes", "data/..._train.pkl", "accum_boxes", cameras=CAMERAS)
"""
from __future__ import annotations

import json
import logging
import math
import multiprocessing
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import yaml
from tqdm import tqdm

from datasets.dense_labels import (SOURCE_MOVING_OTHER, Camera, LabelRecipe, build_label,
                                   load_recipe)
from datasets.infos import CAMERA, entry_path, entry_poses, load_infos, load_nuscenes
from datasets.io import read_depth_png, read_image_bgr, read_lidar_points, resolve_data_path, write_depth_png
from datasets.label_maps import label_error_counts, label_folder, pooled_label_error
from datasets.lidar_sweeps import MovingBoxes, SweepPlan, sweep_plan
from datasets.records import check_records
from utils.files import atomic_write
from utils.jsonio import dumps, write_json


class LabelBuildError(ValueError):
    """The labels cannot be built as asked (another recipe in the folder, frames not in the tables)."""


CHUNK_PER_WORKER = 8
log = logging.getLogger(__name__)


def camera_of(record: Dict[str, Any], root: Path, camera: str = CAMERA) -> Camera:
    """The key frame's geometry of `camera` (size from the record, else from the image)."""
    cam = record["cam_infos"][camera]
    height, width = cam.get("height"), cam.get("width")
    if height is None or width is None:
        height, width = read_image_bgr(resolve_data_path(root, entry_path(cam))).shape[:2]
    camera2ego, ego2global = entry_poses(cam)
    return Camera(np.asarray(cam["calibrated_sensor"]["camera_intrinsic"], dtype=np.float64),
                  int(height), int(width), camera2ego, ego2global)


def frame_name(record: Dict[str, Any], camera: str = CAMERA) -> str:
    """The basename of `camera`'s image (nuScenes basenames hold the channel): the label's name."""
    return Path(entry_path(record["cam_infos"][camera])).stem


def label_one(job: Dict[str, Any]) -> Dict[str, Any]:
    """Build, write and measure one frame's label (runs in a worker process); returns its
    frames.jsonl record."""
    root, plan, recipe = Path(job["root"]), job["plan"], job["recipe"]
    label = build_label(plan, lambda path: read_lidar_points(resolve_data_path(root, path)), job["camera"],
                        recipe, job["moving_boxes"])
    write_depth_png(job["out"], label.depth_m)
    record = {"name": job["name"], "sample_token": job["sample_token"],
              "sweep_offsets": [s.offset for s in plan.sweeps], "shortfall": plan.shortfall(),
              "missing": plan.missing, **label.stats}
    truth_path = root / "depth_dense" / f"{job['name']}.png"
    if truth_path.is_file():
        truth = read_depth_png(truth_path)
        stored = np.rint(label.depth_m * 1000.0) / 1000.0          # as written (mm)
        record["error"] = label_error_counts(stored, truth)
        smear = np.where(label.source == SOURCE_MOVING_OTHER, stored, 0)
        record["error_smear"] = label_error_counts(smear, truth)
    return record


def read_done(frames_path: Path) -> Dict[str, Dict[str, Any]]:
    """name -> record of frames.jsonl (a line cut off by a crash is ignored)."""
    done: Dict[str, Dict[str, Any]] = {}
    if frames_path.is_file():
        for line in frames_path.read_text().splitlines():
            try:
                record = json.loads(line)
                done[record["name"]] = record
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return done


def check_recipe(folder: Path, preset: str, recipe: LabelRecipe) -> None:
    """Write folder/recipe.yaml, or refuse a folder whose labels were built with another recipe."""
    path = folder / "recipe.yaml"
    wanted = {"preset": preset, "recipe": asdict(recipe)}
    if path.is_file():
        found = yaml.safe_load(path.read_text()) or {}
        if found.get("recipe") != wanted["recipe"]:
            diff = {k: (found.get("recipe", {}).get(k), v) for k, v in wanted["recipe"].items()
                    if found.get("recipe", {}).get(k) != v}
            raise LabelBuildError(f"{folder} holds labels of another recipe (differences, there -> asked: "
                             f"{diff}); choose another --label-dir or delete {folder}")
        return
    atomic_write(path, lambda f: f.write(yaml.safe_dump(wanted, sort_keys=False).encode()))


def jobs(todo: List[Tuple[Dict[str, Any], List[str]]], nusc, root: Path, folder: Path, recipe: LabelRecipe
         ) -> Iterator[Dict[str, Any]]:
    """One job per (key frame, camera) of `todo` (record, its cameras to build): the key frame's
    sweeps and the moving boxes at each (needs the tables; found once per key frame), the camera."""
    moving = MovingBoxes(nusc, recipe.moving_speed_mps)
    for record, cameras in todo:
        try:
            plan: SweepPlan = sweep_plan(nusc, record, recipe.sweeps_before, recipe.sweeps_after)
        except KeyError:
            raise LabelBuildError(f"the LiDAR key frame of {frame_name(record, cameras[0])} is not in the "
                             f"{nusc.version} tables under {root}; pass the --data-root and --version the "
                             "info file was made from") from None
        boxes = {s.sample_data_token: moving(s.sample_data_token) for s in plan.sweeps}
        for camera in cameras:
            name = frame_name(record, camera)
            yield {"root": str(root), "name": name, "sample_token": record.get("sample_token"),
                   "plan": plan, "recipe": recipe, "camera": camera_of(record, root, camera),
                   "moving_boxes": boxes, "out": folder / f"{name}.png"}


def chunks(items: Iterator[Dict[str, Any]], size: int) -> Iterator[List[Dict[str, Any]]]:
    chunk: List[Dict[str, Any]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def build_labels(root: str | Path, infos: str | Path, preset: str, label_dir: Optional[str] = None,
                 version: str = "v1.0-trainval", workers: int = 1, overrides: Sequence[str] = (),
                 progress: bool = True, cameras: Sequence[str] = (CAMERA,)) -> Dict[str, Any]:
    """Build the missing labels of `preset` (configs/dense_labels/<preset>.yaml or a YAML path,
    key=value `overrides`) for the images of `cameras` of the key frames of `infos` into
    <root>/<label_dir> (default dense_labels/<preset>); returns the summary that `summarise`
    writes (over every key frame and camera)."""
    root = Path(root)
    recipe = load_recipe(preset, overrides)
    name = Path(preset).stem
    folder = label_folder(root, label_dir or f"dense_labels/{name}")
    folder.mkdir(parents=True, exist_ok=True)
    check_recipe(folder, name, recipe)
    records = load_infos(infos)
    check_records(records, infos, keep_bad=False, cameras=tuple(cameras))   # InfoFileError: one line
    frames_path = folder / "frames.jsonl"
    done = read_done(frames_path)
    todo = [(r, [c for c in cameras if not (frame_name(r, c) in done and
                                            (folder / f"{frame_name(r, c)}.png").is_file())]) for r in records]
    todo = [(r, missing) for r, missing in todo if missing]
    count = sum(len(missing) for _, missing in todo)
    log.info("%s: %d key frames x %d camera(s), %d to build (%s)", folder, len(records), len(cameras), count, name)
    bar = tqdm(total=count, desc=f"labels {name}", unit="frame", disable=not progress)
    pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 1 and todo else None
    try:
        with open(frames_path, "a") as frames:
            nusc = load_nuscenes(root, version) if todo else None
            for chunk in chunks(jobs(todo, nusc, root, folder, recipe), CHUNK_PER_WORKER * workers):
                for record in (pool.map(label_one, chunk) if pool else map(label_one, chunk)):
                    frames.write(dumps(record) + "\n")
                    frames.flush()
                    done[record["name"]] = record
                    if record["shortfall"]:
                        bar.write(f"{record['name']}: {record['shortfall']}")
                    bar.update(1)
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    return summarise(folder, [done[frame_name(r, c)] for r in records for c in cameras], Path(infos).stem)


# why a value of quality_<infos>.json can be null (strict JSON: utils/jsonio.py)
QUALITY_NULL_REASONS = {
    "/error_smear/*": "undefined: no label pixel comes from a moving object in another sweep (none does "
                      "when moving objects are removed), so there is no smear to measure",
    "/error/*": "undefined: no labelled pixel has exact truth to compare with",
}


def summarise(folder: Path, frames: List[Dict[str, Any]], infos_stem: str) -> Dict[str, Any]:
    """Print and write folder/quality_<infos stem>.json: frames short of sweeps, mean sweeps and
    coverage, and (with exact truth) the pooled error of all label pixels and of those whose point
    is a moving object's in another sweep (the smear; none when removed)."""
    summary: Dict[str, Any] = {
        "frames": len(frames), "frames_short_of_sweeps": sum(bool(f["shortfall"]) for f in frames),
        "mean_sweeps": float(np.mean([f["sweeps"] for f in frames])) if frames else 0.0,
        "moving_points_other": int(sum(f["moving_points_other"] for f in frames))}
    if frames and all("error" in f for f in frames):
        summary["error"] = pooled_label_error(f["error"] for f in frames)
        summary["error_smear"] = pooled_label_error(f["error_smear"] for f in frames)
    write_json(folder / f"quality_{infos_stem}.json", summary, reasons=QUALITY_NULL_REASONS)
    short = f"; {summary['frames_short_of_sweeps']} short of sweeps (see frames.jsonl)" \
        if summary["frames_short_of_sweeps"] else ""
    line = f"{folder}: {summary['frames']} frames, {summary['mean_sweeps']:.1f} sweeps per frame{short}"
    if "error" in summary:
        e = summary["error"]
        compared = (f"MAE {e['mae_mm']:.0f} mm, {e['far_off_pct']:.2f} % of pixels > 1 m off"
                    if math.isfinite(e["mae_mm"]) else
                    f"MAE n/a ({QUALITY_NULL_REASONS['/error/*'].removeprefix('undefined: ')})")
        line += f"; against the exact truth: {compared}, {e['coverage_pct']:.1f} % of pixels labelled"
    print(line)
    return summary
