"""Info-file records (docs/spade.md section 1) from a devkit `NuScenes`, and the readers of any info file.

    nusc = NuScenes("v1.0-trainval", "data/nuscenes")
    infos = create_infos(nusc, split_scenes("v1.0-trainval"))    # {"train": [...], "val": [...]}
    save_infos(infos["val"], "data/" + infos_filename("val"))

A record (one per sample; released index files and ours are interchangeable):
    schema_version, sample_token, scene_token, scene_name, timestamp,
    cam_infos[CH] / lidar_infos[CH] = {filename, calibrated_sensor, ego_pose, timestamp, ...},
    radar_infos[CH] = [key frame, previous sweep, ...] (at most RADAR_SWEEPS), each {data_path,
        sensor2ego_translation/rotation, ego2global_translation/rotation, timestamp, ...},
    radar_sweeps_short[CH] = {found, wanted, reason} for channels with fewer sweeps on disk.
Paths are relative to the data root ('samples/...', 'sweeps/...'); rotations are [w, x, y, z].
"""
from __future__ import annotations

import json
import logging
import os
import pickle
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from tqdm import tqdm

from datasets.geometry import pose_matrix
from datasets.io import DataFileError
from utils import safe_pickle
from utils.config import NUSCENES_CAMERAS as CAMERAS, NUSCENES_RADARS as RADARS  # noqa: F401 (re-exported)

SCHEMA_VERSION = 1
RADAR_SWEEPS = 5
CAMERA, LIDAR, RADAR = "CAM_FRONT", "LIDAR_TOP", "RADAR_FRONT"    # the released pair (+ labels)
VERSION_SPLITS = {"v1.0-trainval": ("train", "val"), "v1.0-test": ("test",),
                  "v1.0-mini": ("mini_train", "mini_val")}
log = logging.getLogger(__name__)


class InfoFileError(ValueError):
    """An info file is not a readable list of records, is of a newer schema, or is empty where
    samples are needed."""


def infos_filename(split: str) -> str:
    return f"nuscenes_radar_{RADAR_SWEEPS}sweeps_infos_{split}.pkl"


def split_scenes(version: str, splits_file: Optional[str | Path] = None) -> Dict[str, List[str]]:
    """{split: [scene names]}: the devkit's official splits of `version`, or a JSON file's."""
    if splits_file is not None:
        try:
            splits = json.loads(Path(splits_file).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"splits file {splits_file} is unreadable ({err}); it must hold "
                             '{"train": [scene names], "val": [...], "test": [...]}') from None
        if not (isinstance(splits, dict) and all(isinstance(v, list) and all(isinstance(n, str) for n in v)
                                                 for v in splits.values())):
            raise ValueError(f"splits file {splits_file} must map split names to lists of scene names")
        return splits
    if version not in VERSION_SPLITS:
        raise ValueError(f"unknown nuScenes version {version!r}; expected one of {sorted(VERSION_SPLITS)}")
    from nuscenes.utils.splits import create_splits_scenes
    official = create_splits_scenes()
    return {split: list(official[split]) for split in VERSION_SPLITS[version]}


def load_nuscenes(root: str | Path, version: str):
    """The devkit's `NuScenes` of `root`/`version`; a missing or truncated table raises
    DataFileError naming it."""
    from nuscenes.nuscenes import NuScenes
    tables = Path(root) / version
    if not tables.is_dir():
        raise DataFileError(f"{tables} not found; the data root must be the nuScenes root holding "
                            f"the table folder {version}/", tables)
    try:
        return NuScenes(version=version, dataroot=str(root), verbose=False)
    except FileNotFoundError as err:
        raise DataFileError(f"nuScenes table {err.filename} not found; re-download or re-extract "
                            f"the {version} metadata", err.filename) from None
    except json.JSONDecodeError as err:
        bad = _first_unparsable(sorted(tables.glob("*.json")))
        raise DataFileError(f"nuScenes table {bad} is truncated or not JSON ({err.msg}, line "
                            f"{err.lineno}); re-download or re-extract the {version} metadata", bad) from None
    except AssertionError as err:      # the devkit's checks, e.g. "map mask ... does not exist"
        raise DataFileError(f"the nuScenes devkit cannot load {tables} ({err}); re-download or "
                            f"re-extract the {version} metadata and maps", tables) from None


def _first_unparsable(paths: List[Path]) -> Optional[Path]:
    for path in paths:
        try:
            json.loads(path.read_bytes())
        except (ValueError, OSError):
            return path
    return None


def _sensor_entry(nusc, sd: Dict[str, Any]) -> Dict[str, Any]:
    """Key-frame camera or LiDAR entry: the devkit's records, copied."""
    return {
        "sample_data_token": sd["token"],
        "sample_token": sd["sample_token"],
        "channel": sd["channel"],
        "filename": sd["filename"],
        "timestamp": sd["timestamp"],
        "is_key_frame": sd["is_key_frame"],
        "height": sd["height"],
        "width": sd["width"],
        "calibrated_sensor": dict(nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])),
        "ego_pose": dict(nusc.get("ego_pose", sd["ego_pose_token"])),
    }


def _radar_sweep(nusc, sd: Dict[str, Any]) -> Dict[str, Any]:
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    pose = nusc.get("ego_pose", sd["ego_pose_token"])
    return {
        "data_path": sd["filename"],
        "sample_data_token": sd["token"],
        "type": sd["channel"],
        "timestamp": sd["timestamp"],
        "is_key_frame": sd["is_key_frame"],
        "sensor2ego_translation": list(cs["translation"]),
        "sensor2ego_rotation": list(cs["rotation"]),
        "ego2global_translation": list(pose["translation"]),
        "ego2global_rotation": list(pose["rotation"]),
    }


def _radar_sweeps(nusc, key_sd: Dict[str, Any]) -> Tuple[List[Dict[str, Any]], Optional[Dict[str, Any]]]:
    """Key frame then the devkit's `prev` chain, up to RADAR_SWEEPS sweeps whose files exist.

    Returns (sweeps, shortfall): shortfall says why fewer than RADAR_SWEEPS were kept, else None.
    """
    sweeps = [_radar_sweep(nusc, key_sd)]
    sd = key_sd
    while len(sweeps) < RADAR_SWEEPS:
        if not sd["prev"]:
            reason = "prev chain ends (scene start or trimmed tables)"
            break
        sd = nusc.get("sample_data", sd["prev"])
        if not os.path.isfile(os.path.join(nusc.dataroot, sd["filename"])):
            reason = f"file not on disk: {sd['filename']}"
            break
        sweeps.append(_radar_sweep(nusc, sd))
    else:
        return sweeps, None
    return sweeps, {"found": len(sweeps), "wanted": RADAR_SWEEPS, "reason": reason}


def make_record(nusc, sample: Dict[str, Any]) -> Dict[str, Any]:
    """One info record for a devkit `sample`: every camera, LiDAR and radar channel it has."""
    scene = nusc.get("scene", sample["scene_token"])
    record: Dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "sample_token": sample["token"],
        "scene_token": sample["scene_token"],
        "scene_name": scene["name"],
        "timestamp": sample["timestamp"],
        "cam_infos": {}, "lidar_infos": {}, "radar_infos": {}, "radar_sweeps_short": {},
    }
    for channel, sd_token in sample["data"].items():
        sd = nusc.get("sample_data", sd_token)
        modality = sd["sensor_modality"]
        if modality == "camera":
            record["cam_infos"][channel] = _sensor_entry(nusc, sd)
        elif modality == "lidar":
            record["lidar_infos"][channel] = _sensor_entry(nusc, sd)
        elif modality == "radar":
            sweeps, short = _radar_sweeps(nusc, sd)
            record["radar_infos"][channel] = sweeps
            if short is not None:
                record["radar_sweeps_short"][channel] = short
    return record


def create_infos(nusc, splits: Dict[str, List[str]], progress: bool = True,
                 require_scenes: bool = False) -> Dict[str, List[Dict[str, Any]]]:
    """{split: records} for the samples of each split's scenes present in `nusc`, in table order.

    A sample whose key-frame CAM_FRONT, LIDAR_TOP or RADAR_FRONT file is not on disk is left out
    (one warning per split names the first). `require_scenes` (a splits file): a split that
    names scenes of which none is in the tables is an error.
    """
    scene_by_name = {scene["name"]: scene["token"] for scene in nusc.scene}
    split_of_scene: Dict[str, str] = {}
    for split, names in splits.items():
        present = [n for n in names if n in scene_by_name]
        _report_presence(split, names, present, nusc, require_scenes)
        for name in present:
            if name in split_of_scene:
                raise ValueError(f"scene {name} is in both split {split_of_scene[name]} and {split}")
            split_of_scene[name] = split
    wanted = {scene_by_name[n]: s for n, s in split_of_scene.items()}
    samples = [s for s in nusc.sample if s["scene_token"] in wanted]
    infos: Dict[str, List[Dict[str, Any]]] = {split: [] for split in splits}
    left_out: Dict[str, List[str]] = {split: [] for split in splits}
    for sample in tqdm(samples, desc="info records", disable=not progress):
        split = wanted[sample["scene_token"]]
        missing = missing_key_files(nusc, sample)
        if missing:
            left_out[split].append(missing[0])
        else:
            infos[split].append(make_record(nusc, sample))
    for split, paths in left_out.items():
        if paths:
            log.warning("split %s: %d samples left out, their key-frame files are not on disk (first: "
                        "%s); re-download or re-extract them under %s", split, len(paths), paths[0],
                        nusc.dataroot)
    return infos


def _report_presence(split: str, names: List[str], present: List[str], nusc, required: bool) -> None:
    """Log the split's scenes the tables lack (a warning for a splits file or an empty split);
    with `required`, a split none of whose scenes is present raises ValueError."""
    found = set(present)
    absent = [n for n in names if n not in found]
    if not absent:
        return
    shown = ", ".join(absent[:3]) + (", ..." if len(absent) > 3 else "")
    if required and not present:
        raise ValueError(f"split {split}: none of its {len(names)} scenes ({shown}) is in the "
                         f"{nusc.version} tables under {nusc.dataroot}; check the scene names of the "
                         "splits file")
    log.log(logging.WARNING if required or not present else logging.INFO,
            "split %s: %d of %d scenes present in %s (absent: %s)%s", split, len(present), len(names),
            nusc.version, shown, "" if present else "; its info file will be empty")


def missing_key_files(nusc, sample: Dict[str, Any]) -> List[str]:
    """Recorded paths of the sample's key-frame CAM_FRONT, LIDAR_TOP and RADAR_FRONT files that
    are not on disk."""
    paths = [nusc.get("sample_data", sample["data"][ch])["filename"]
             for ch in (CAMERA, LIDAR, RADAR) if ch in sample["data"]]
    return [p for p in paths if not os.path.isfile(os.path.join(nusc.dataroot, p))]


def save_infos(records: List[Dict[str, Any]], path: str | Path) -> None:
    """Pickle the record list (written to a temporary file, then renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(records, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


def load_infos(path: str | Path) -> List[Dict[str, Any]]:
    """The record list of an info file (ours or a released one). Only the file's shape is checked
    here (tools that read one field, such as gen_seg_masks, take partial records); the fields
    `RadarCameraDataset` reads are validated by `datasets.records.check_records`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"info file {path} not found; make it with tools/create_infos.py "
                                "(see docs/data.md)")
    try:
        with open(path, "rb") as f:
            records = safe_pickle.load(f, path)
    except Exception as err:     # pickle raises many kinds (UnpicklingError, EOFError, ImportError, ...)
        raise InfoFileError(f"info file {path} is not a readable pickle ({type(err).__name__}: {err}); "
                            "regenerate it with tools/create_infos.py") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise InfoFileError(f"info file {path} holds a {type(records).__name__}, not a list of records "
                            "(dicts); regenerate it with tools/create_infos.py")
    newest = max((r.get("schema_version", 0) for r in records), default=0)
    if newest > SCHEMA_VERSION:
        raise InfoFileError(f"info file {path} has schema version {newest}; this code reads up to "
                            f"{SCHEMA_VERSION}: update the code or regenerate the file")
    return records


def released_pair(cameras, radars) -> bool:
    """Whether data.cameras / data.radars are the released CAM_FRONT with RADAR_FRONT (whose
    samples follow the release exactly, radar points behind the camera included)."""
    return list(cameras) == [CAMERA] and list(radars) == [RADAR]


def entry_path(entry: Dict[str, Any]) -> str:
    """The recorded file path of a camera/LiDAR entry or a radar sweep."""
    return entry["filename"] if "filename" in entry else entry["data_path"]


def entry_poses(entry: Dict[str, Any]) -> Tuple[np.ndarray, np.ndarray]:
    """(sensor -> ego, ego -> global) 4 x 4 of an entry in either form: calibrated_sensor/ego_pose
    records, or flat sensor2ego_* / ego2global_* fields (released radar sweeps)."""
    if "calibrated_sensor" in entry:
        cs, pose = entry["calibrated_sensor"], entry["ego_pose"]
        return (pose_matrix(cs["translation"], cs["rotation"]),
                pose_matrix(pose["translation"], pose["rotation"]))
    return (pose_matrix(entry["sensor2ego_translation"], entry["sensor2ego_rotation"]),
            pose_matrix(entry["ego2global_translation"], entry["ego2global_rotation"]))
