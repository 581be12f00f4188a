"""Write a synthetic nuScenes root: sensor files, dense truth, tables, splits.json.

    generate(load_synthetic_config("configs/synthetic_world.yaml"), Path("data/synthetic"))

Work is cut into one task per key frame (that key frame plus the sweeps since the previous one);
tasks run in `cfg.workers` processes and every random draw is seeded by (seed, scene, stream), so
the bytes written do not depend on the number of workers.
"""
from __future__ import annotations

import functools
import multiprocessing
import shutil
from pathlib import Path
from typing import Any, Dict, List, Tuple

import cv2
import numpy as np
import yaml
from tqdm import tqdm

from datasets.io import radar_kept
from datasets.synthetic import tables as tb
from datasets.synthetic import writer as wr
from datasets.synthetic.camera import render_camera
from datasets.synthetic.config import SyntheticConfig, config_dict
from datasets.synthetic.lidar import Lidar
from datasets.synthetic.radar import REAL, Radar
from datasets.synthetic.sensors import LIDAR, MODALITY, RIGS, Frame, frame_rng, timeline
from datasets.synthetic.world import Scene, build_scene
from utils.jsonio import dumps

OUTPUTS = ("samples", "sweeps", "seg_mask", "depth_dense", "maps", "v1.0-trainval", "splits.json",
           "synthetic_config.yaml")
_STATE: Dict[str, Any] = {}


def generate(cfg: SyntheticConfig, root: Path, overwrite: bool = False, progress: bool = True) -> Path:
    """Render every scene of `cfg` into the nuScenes root `root`; returns `root`."""
    root = Path(root)
    marker = root / "synthetic_config.yaml"
    if (root / "v1.0-trainval").exists():
        if not overwrite:
            raise FileExistsError(f"{root} already holds a v1.0-trainval world; remove it or pass "
                                  "--overwrite (which deletes only what the generator writes)")
        if not marker.is_file():
            raise FileExistsError(f"{root} holds a v1.0-trainval world that this generator did not "
                                  "write (no synthetic_config.yaml); nothing was deleted: choose another --out")
        for name in OUTPUTS:
            path = root / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    # written first: it marks the folder as this generator's, also when the run is interrupted
    marker.write_text(yaml.safe_dump(config_dict(cfg), sort_keys=True))
    rig = RIGS[cfg.rig]
    for channel in rig.channels:
        (root / "samples" / channel).mkdir(parents=True, exist_ok=True)
        (root / "sweeps" / channel).mkdir(parents=True, exist_ok=True)
    for name in ("seg_mask", "depth_dense", "maps"):
        (root / name).mkdir(parents=True, exist_ok=True)

    tasks = [(s, k) for s in range(cfg.scenes) for k in range(cfg.samples_per_scene)]
    bar = tqdm(total=len(tasks), desc="synthetic key frames", unit="frame", disable=not progress)
    measures: Dict[Tuple[int, int], Dict[str, np.ndarray]] = {}
    if cfg.workers == 1:
        _init(cfg, root)
        results = map(_render_task, tasks)
        pool = None
    else:
        # spawn, not fork: a forked child can hang in its first OpenCV call (datasets/workers.py)
        pool = multiprocessing.get_context("spawn").Pool(cfg.workers, _init_worker, (cfg, root))
        results = pool.imap(_render_task, tasks)
    try:
        for task, result in zip(tasks, results):
            measures[task] = result
            bar.update()
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()

    tables = {name: [] for name in tb.TABLES}
    tables.update(tb.vocabulary(cfg.seed, rig.channels))
    for s in range(cfg.scenes):
        scene = build_scene(cfg, s)
        part = tb.scene_tables(cfg, scene, timeline(scene, cfg.samples_per_scene, cfg.seed, rig),
                               [measures[(s, k)] for k in range(cfg.samples_per_scene)])
        for name, records in part.items():
            tables[name].extend(records)
    tables["map"] = tb.map_table(cfg.seed, tables["log"])
    wr.write_image(root / tables["map"][0]["filename"], np.zeros((8, 8), np.uint8))
    wr.write_tables(root / "v1.0-trainval", tables)
    splits = split_scenes([r["name"] for r in tables["scene"]], cfg.val_fraction)
    (root / "splits.json").write_text(dumps(splits, indent=1) + "\n")
    return root


def split_scenes(names: List[str], val_fraction: float) -> Dict[str, List[str]]:
    """The last round(n * val_fraction) scenes (at least one, leaving one for training) go to val."""
    n = len(names)
    n_val = 0 if n == 1 or val_fraction == 0 else min(n - 1, max(1, int(n * val_fraction + 0.5)))
    return {"train": names[:n - n_val], "val": names[n - n_val:], "test": []}


def _init_worker(cfg: SyntheticConfig, root: Path) -> None:
    cv2.setNumThreads(1)                      # one core per worker process
    _init(cfg, root)


def _init(cfg: SyntheticConfig, root: Path) -> None:
    _STATE.update(cfg=cfg, root=root, lidar=Lidar(cfg.lidar), radar=Radar(cfg.radar))
    _scene.cache_clear()


@functools.lru_cache(maxsize=2)
def _scene(index: int) -> Tuple[Scene, Dict[str, List[Frame]]]:
    cfg = _STATE["cfg"]
    scene = build_scene(cfg, index)
    return scene, timeline(scene, cfg.samples_per_scene, cfg.seed, RIGS[cfg.rig])


def _render_task(task: Tuple[int, int]) -> Dict[str, np.ndarray]:
    """Render and write key frame `key` of scene `index` with the sweeps before it; returns the key
    frame's per-instance counts: lidar (points), coverage (rays without occluders), radar (valid
    real detections of all radars)."""
    index, key = task
    cfg, root = _STATE["cfg"], _STATE["root"]
    scene, frames = _scene(index)
    n_inst = len(scene.instances)
    out: Dict[str, np.ndarray] = {"radar": np.zeros(n_inst, np.int64)}
    for channel, channel_frames in frames.items():
        camera = MODALITY[channel] == "camera"
        for frame in channel_frames:
            is_key = frame.key >= 0
            if frame.task != key or (camera and not is_key and not cfg.camera.sweeps):
                continue
            tau, rng = frame.tau(scene), frame_rng(cfg.seed, scene, frame)
            path = root / tb.frame_filename(scene.log, channel, frame.timestamp, is_key)
            if camera:
                cam = render_camera(scene, tau, cfg.camera, rng, with_truth=is_key, channel=channel)
                wr.write_image(path, cam["image"], cfg.camera.jpeg_quality)
                if is_key:
                    name = path.stem
                    wr.write_image(root / "seg_mask" / f"{name}.png", cam["seg"])
                    wr.write_image(root / "depth_dense" / f"{name}.png", cam["depth_mm"])
            elif channel == LIDAR:
                sweep = _STATE["lidar"].sweep(scene, tau, rng, n_inst if is_key else 0)
                wr.write_lidar(path, sweep["points"])
                if is_key:
                    inst = sweep["inst"]
                    out["lidar"] = np.bincount(inst[inst >= 0], minlength=n_inst)
                    out["coverage"] = sweep["coverage"]
            else:
                sweep = _STATE["radar"].sweep(scene, tau, rng, channel)
                wr.write_radar(path, sweep["records"])
                if is_key:
                    rec = sweep["records"]
                    kept = (sweep["origin"] == REAL) & radar_kept(rec) & (sweep["inst"] >= 0)
                    out["radar"] += np.bincount(sweep["inst"][kept], minlength=n_inst)
    return out
