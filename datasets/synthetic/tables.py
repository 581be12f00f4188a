"""The nuScenes v1.0 table records of a synthetic world (schema of the devkit's README).

Tokens are md5 hex digests of names, so the same seed writes the same tables.
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Any, Dict, List, Sequence

import numpy as np
from pyquaternion import Quaternion

from datasets.synthetic.config import SyntheticConfig
from datasets.synthetic.sensors import CALIBRATION, LIDAR, MODALITY, RIGS, Frame, camera_matrix
from datasets.synthetic.world import Scene

TABLES = ("category", "attribute", "visibility", "instance", "sensor", "calibrated_sensor", "ego_pose",
          "log", "scene", "sample", "sample_data", "sample_annotation", "map")
# nuScenes categories with their lidarseg indices, and the standard attributes / visibility bins
CATEGORIES = [
    ("noise", 0), ("animal", 1), ("human.pedestrian.adult", 2), ("human.pedestrian.child", 3),
    ("human.pedestrian.construction_worker", 4), ("human.pedestrian.personal_mobility", 5),
    ("human.pedestrian.police_officer", 6), ("human.pedestrian.stroller", 7),
    ("human.pedestrian.wheelchair", 8), ("movable_object.barrier", 9), ("movable_object.debris", 10),
    ("movable_object.pushable_pullable", 11), ("movable_object.trafficcone", 12),
    ("static_object.bicycle_rack", 13), ("vehicle.bicycle", 14), ("vehicle.bus.bendy", 15),
    ("vehicle.bus.rigid", 16), ("vehicle.car", 17), ("vehicle.construction", 18),
    ("vehicle.emergency.ambulance", 19), ("vehicle.emergency.police", 20), ("vehicle.motorcycle", 21),
    ("vehicle.trailer", 22), ("vehicle.truck", 23), ("flat.driveable_surface", 24), ("flat.other", 25),
    ("flat.sidewalk", 26), ("flat.terrain", 27), ("static.manmade", 28), ("static.other", 29),
    ("static.vegetation", 30), ("vehicle.ego", 31)]
ATTRIBUTES = ["vehicle.moving", "vehicle.stopped", "vehicle.parked", "cycle.with_rider",
              "cycle.without_rider", "pedestrian.sitting_lying_down", "pedestrian.standing",
              "pedestrian.moving"]
VISIBILITY = [("1", "v0-40"), ("2", "v40-60"), ("3", "v60-80"), ("4", "v80-100")]
Table = List[Dict[str, Any]]


def token(seed: int, *parts: Any) -> str:
    return hashlib.md5("/".join(["synthetic", str(seed), *map(str, parts)]).encode()).hexdigest()


def quaternion_yaw(yaw: float) -> List[float]:
    """[w, x, y, z] of a rotation by `yaw` about z."""
    return [float(v) for v in Quaternion(axis=[0.0, 0.0, 1.0], angle=yaw).elements]


def frame_filename(log: str, channel: str, timestamp: int, key_frame: bool) -> str:
    """'samples/<CH>/<log>__<CH>__<timestamp>.<ext>' (key frames) or 'sweeps/...', as nuScenes."""
    ext = {"camera": "jpg", "lidar": "pcd.bin", "radar": "pcd"}[MODALITY[channel]]
    return f"{'samples' if key_frame else 'sweeps'}/{channel}/{log}__{channel}__{timestamp}.{ext}"


def chain(records: Sequence[Dict[str, Any]]) -> None:
    """Set prev/next tokens of records already in order."""
    for a, b in zip(records[:-1], records[1:]):
        a["next"], b["prev"] = b["token"], a["token"]


def vocabulary(seed: int, channels: Sequence[str]) -> Dict[str, Table]:
    """category, attribute, visibility and sensor (one per channel): the same for every scene."""
    return {
        "category": [{"token": token(seed, "category", name), "name": name, "description": name,
                      "index": index} for name, index in CATEGORIES],
        "attribute": [{"token": token(seed, "attribute", name), "name": name, "description": name}
                      for name in ATTRIBUTES],
        "visibility": [{"token": t, "level": level, "description": f"visible fraction {level[1:]} %"}
                       for t, level in VISIBILITY],
        "sensor": [{"token": token(seed, "sensor", ch), "channel": ch, "modality": MODALITY[ch]}
                   for ch in channels],
    }


def map_table(seed: int, logs: Table) -> Table:
    """One placeholder map record for all logs (the devkit needs one per log)."""
    map_token = token(seed, "map")
    return [{"token": map_token, "log_tokens": [r["token"] for r in logs], "category": "semantic_prior",
             "filename": f"maps/{map_token}.png"}]


def visibility_token(visible_fraction: float) -> str:
    return VISIBILITY[int(np.searchsorted([0.4, 0.6, 0.8], visible_fraction, side="right"))][0]


def scene_tables(cfg: SyntheticConfig, scene: Scene, frames: Dict[str, List[Frame]],
                 measures: List[Dict[str, np.ndarray]]) -> Dict[str, Table]:
    """log, calibrated_sensor, scene, sample, sample_data, ego_pose, instance, sample_annotation of a
    scene; `measures[k]` holds key frame k's per-instance counts (lidar, coverage, radar)."""
    seed, h, w, channels = cfg.seed, cfg.camera.height, cfg.camera.width, RIGS[cfg.rig].channels
    tables: Dict[str, Table] = defaultdict(list)
    log_token, scene_token = token(seed, "log", scene.index), token(seed, "scene", scene.index)
    tables["log"].append({"token": log_token, "logfile": scene.log, "vehicle": "synth",
                          "date_captured": "2020-09-13", "location": "synthetic-city"})
    calib = {ch: token(seed, "calibrated_sensor", scene.index, ch) for ch in channels}
    camera = {ch: MODALITY[ch] == "camera" for ch in channels}
    tables["calibrated_sensor"] = [{
        "token": calib[ch], "sensor_token": token(seed, "sensor", ch),
        "translation": list(CALIBRATION[ch].translation), "rotation": list(CALIBRATION[ch].rotation),
        "camera_intrinsic": camera_matrix(h, w, ch).tolist() if camera[ch] else []} for ch in channels]
    key_frames = [f for f in frames[LIDAR] if f.key >= 0]
    samples = [{"token": token(seed, "sample", scene.index, k), "timestamp": f.timestamp, "prev": "",
                "next": "", "scene_token": scene_token} for k, f in enumerate(key_frames)]
    chain(samples)
    for ch in channels:
        records = []
        for f in frames[ch]:
            if camera[ch] and f.key < 0 and not cfg.camera.sweeps:
                continue
            tok = token(seed, "sample_data", scene.index, ch, f.index)
            rot, pos = scene.to_global(*scene.ego_pose(f.tau(scene)))
            tables["ego_pose"].append({"token": tok, "timestamp": f.timestamp,
                                       "rotation": quaternion_yaw(np.arctan2(rot[1, 0], rot[0, 0])),
                                       "translation": [float(v) for v in pos]})
            records.append({
                "token": tok, "sample_token": samples[min(f.task, len(samples) - 1)]["token"],
                "ego_pose_token": tok, "calibrated_sensor_token": calib[ch], "timestamp": f.timestamp,
                "fileformat": "jpg" if camera[ch] else "pcd", "is_key_frame": f.key >= 0,
                "height": h if camera[ch] else 0, "width": w if camera[ch] else 0,
                "filename": frame_filename(scene.log, ch, f.timestamp, f.key >= 0), "prev": "", "next": ""})
        chain(records)
        tables["sample_data"].extend(records)
    _annotations(tables, cfg, scene, key_frames, samples, measures)
    tables["scene"].append({"token": scene_token, "log_token": log_token, "nbr_samples": len(samples),
                            "first_sample_token": samples[0]["token"],
                            "last_sample_token": samples[-1]["token"], "name": scene.name,
                            "description": scene.description})
    tables["sample"] = samples
    return tables


def _annotations(tables: Dict[str, Table], cfg: SyntheticConfig, scene: Scene, key_frames: List[Frame],
                 samples: Table, measures: List[Dict[str, np.ndarray]]) -> None:
    """instance and sample_annotation: objects seen by the key LiDAR sweep or radar."""
    seed, vocab = cfg.seed, vocabulary(cfg.seed, channels=())
    category = {r["name"]: r["token"] for r in vocab["category"]}
    attribute = {r["name"]: r["token"] for r in vocab["attribute"]}
    street_yaw = np.arctan2(scene.global_rot[1, 0], scene.global_rot[0, 0])
    per_instance: Dict[int, Table] = defaultdict(list)
    for k, (frame, m) in enumerate(zip(key_frames, measures)):
        tau = frame.tau(scene)
        for i in map(int, np.flatnonzero(m["lidar"] + m["radar"] > 0)):
            inst = scene.instances[i]
            per_instance[i].append({
                "token": token(seed, "sample_annotation", scene.index, k, i),
                "sample_token": samples[k]["token"],
                "instance_token": token(seed, "instance", scene.index, i),
                "visibility_token": visibility_token(m["lidar"][i] / max(int(m["coverage"][i]), 1)),
                "attribute_tokens": [attribute[inst.attribute]],
                "translation": [float(v) for v in scene.to_global(np.eye(3), inst.center(tau))[1]],
                "size": [float(v) for v in inst.size], "rotation": quaternion_yaw(street_yaw + inst.yaw),
                "prev": "", "next": "", "num_lidar_pts": int(m["lidar"][i]),
                "num_radar_pts": int(m["radar"][i])})
    for i, anns in sorted(per_instance.items()):
        chain(anns)
        tables["instance"].append({"token": token(seed, "instance", scene.index, i),
                                   "category_token": category[scene.instances[i].category],
                                   "nbr_annotations": len(anns), "first_annotation_token": anns[0]["token"],
                                   "last_annotation_token": anns[-1]["token"]})
        tables["sample_annotation"].extend(anns)
