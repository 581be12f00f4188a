"""Validation of info records for the channels `RadarCameraDataset` reads, on load.

    problems = check_records(records, infos_path, keep_bad=False)   # raises InfoFileError
    problems = check_records(records, infos_path, keep_bad=True)    # {index: one-line message}

Each record must hold, with the types and values the dataset needs:
- `sample_token`: text, unique in the file (a duplicated record or a shared token would be scored
  twice): duplicates are always an InfoFileError naming the file, both indices and the token;
- `cam_infos.CAM_FRONT`: `filename` (a path under `samples/` or `sweeps/` without `..`,
  `datasets.io.data_relative_path`), `calibrated_sensor` {translation, rotation,
  camera_intrinsic}, `ego_pose` {translation, rotation}; `height`, `width` when recorded:
  positive integers;
- `lidar_infos.LIDAR_TOP`: a path and its poses;
- `radar_infos.RADAR_FRONT`: a non-empty list of sweeps, each a path (`data_path` or `filename`)
  and its poses.
Poses in either form `datasets.infos.entry_poses` reads (`calibrated_sensor`/`ego_pose`, or the
flat `sensor2ego_*`/`ego2global_*` of released radar sweeps). Translations: 3 finite numbers of at
most MAX_TRANSLATION_M; rotations: 4 finite numbers [w, x, y, z] of norm 1 within
ROTATION_NORM_TOL; camera_intrinsic: 3 x 3 finite, last row [0, 0, 1], focal lengths positive
and, where the image size is recorded, within `intrinsics_problem`'s range with the principal
point inside the image.

Cost: one pass over the records' dicts to gather the numbers, then NumPy checks on all of them at
once (28,000 records in about 0.3 s); only a file with a malformed number is looked at value by
value to name it. A bad record's message is one line: "info file X: record i (sample_token T):
field what; regenerate ...". Eval mode and training without `data.skip_bad_samples` raise it for
the first bad record (with the count of bad records); training with skipping keeps the messages
and `RadarCameraDataset` raises `BadRecordError` (a DataFileError) when such a record is drawn, so
the existing skip path replaces and records it.
"""
from __future__ import annotations

from itertools import chain
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from datasets.infos import CAMERA, LIDAR, RADAR, InfoFileError
from datasets.io import DataFileError, data_relative_path

# Translations: nuScenes map coordinates stay below 3 km; other data sets in nuScenes form may use
# UTM or earth-centred coordinates (up to ~6.4e6 m). 1e8 m is beyond any point on Earth yet far
# below the garbage (1e30) a corrupt file holds.
MAX_TRANSLATION_M = 1e8
# Devkit and released quaternions are unit to ~1e-7 (float32 storage included); a norm far from 1
# (0 above all, which turns every point into NaN) means the field holds something else.
ROTATION_NORM_TOL = 1e-3
# Focal lengths relative to the longer image side: 0.05 is a horizontal field of view of 169 deg,
# 100 one of 0.6 deg (a crop of 1/80 of a nuScenes frame keeps its f = 1266 px); nuScenes: 0.79.
MIN_FOCAL_RATIO, MAX_FOCAL_RATIO = 0.05, 100.0
FIX = "regenerate it with tools/create_infos.py"


class InfoRecordError(ValueError):
    """Raised inside validation for one record's structural problem (message: field and what)."""


class BadRecordError(DataFileError):
    """A training sample whose info record is invalid (skipped by the skip path; `path` is the
    info file)."""


def intrinsics_problem(K: np.ndarray, h: Optional[int], w: Optional[int]) -> Optional[str]:
    """What is wrong with a 3 x 3 intrinsic K of an h x w image (None: nothing). Without a size
    only finiteness, the last row and positive focal lengths are checked."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or not np.isfinite(K).all():
        return f"must be 3 x 3 finite numbers, got {np.asarray(K).tolist()}"
    if not np.allclose(K[2], [0, 0, 1]):
        return f"has last row {K[2].tolist()}, not [0, 0, 1]"
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    if h is None or w is None:
        if fx <= 0 or fy <= 0:
            return f"has focal lengths fx={fx:g}, fy={fy:g}: they must be positive"
        return None
    side = max(h, w)
    lo, hi = MIN_FOCAL_RATIO * side, MAX_FOCAL_RATIO * side
    if not (lo <= fx <= hi and lo <= fy <= hi):
        return (f"has focal lengths fx={fx:g}, fy={fy:g} px, outside {lo:g} .. {hi:g} px for a "
                f"{w} x {h} image ({MIN_FOCAL_RATIO:g} .. {MAX_FOCAL_RATIO:g} x its longer side): "
                "give them in pixels of this image")
    if not (0 < cx < w and 0 < cy < h):
        return (f"has its principal point ({cx:.1f}, {cy:.1f}) outside the {w} x {h} image, so it "
                "belongs to another image size")
    return None


def _get(node: Any, key: Any, where: str) -> Any:
    if isinstance(key, str):
        if not isinstance(node, dict):
            raise InfoRecordError(f"{where} is a {type(node).__name__}, not a dict")
        if key not in node:
            raise InfoRecordError(f"{where} has no key {key!r}" if where else f"no key {key!r}")
        return node[key]
    return node[key]


class _Gathered:
    """The numbers of every record, to be checked at once: (value, record index, field)."""

    def __init__(self):
        self.trans: List[Any] = []
        self.trans_at: List[Tuple[int, str]] = []
        self.rots: List[Any] = []
        self.rots_at: List[Tuple[int, str]] = []
        self.cams: List[Tuple[int, str, Any, Optional[int], Optional[int]]] = []

    def pose(self, i: int, where: str, translation: Any, rotation: Any, names: Tuple[str, str]) -> None:
        self.trans.append(translation)
        self.trans_at.append((i, f"{where}.{names[0]}" if where else names[0]))
        self.rots.append(rotation)
        self.rots_at.append((i, f"{where}.{names[1]}" if where else names[1]))


def _path(entry: Dict[str, Any], where: str) -> None:
    key = "filename" if "filename" in entry else "data_path"
    try:
        data_relative_path(_get(entry, key, where))
    except DataFileError as err:      # "info-file path 'P' leads outside ...; regenerate ..."
        raise InfoRecordError(f"{where}.{key} {str(err).split('; ')[0].removeprefix('info-file path ')}") from None


def _entry_poses(entry: Dict[str, Any], i: int, where: str, out: _Gathered) -> None:
    """Gather an entry's poses in either form (as datasets.infos.entry_poses reads them)."""
    if "calibrated_sensor" in entry:
        for key in ("calibrated_sensor", "ego_pose"):
            rec = _get(entry, key, where)
            sub = f"{where}.{key}"
            out.pose(i, sub, _get(rec, "translation", sub), _get(rec, "rotation", sub),
                     ("translation", "rotation"))
    else:
        for prefix in ("sensor2ego", "ego2global"):
            out.pose(i, where, _get(entry, f"{prefix}_translation", where),
                     _get(entry, f"{prefix}_rotation", where),
                     (f"{prefix}_translation", f"{prefix}_rotation"))


def _size(cam: Dict[str, Any], key: str, where: str) -> Optional[int]:
    value = cam.get(key)
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise InfoRecordError(f"{where}.{key} must be a positive integer, got {value!r}")
    return int(value)


def _present(record: Any, section: str, channels: Tuple[str, ...], required: bool) -> List[str]:
    """The channels of `record[section]` to check: all of `channels` when `required` (a missing
    one is then an error), else those the record holds."""
    if required or not isinstance(record, dict) or not isinstance(record.get(section), dict):
        return list(channels)
    return [ch for ch in channels if ch in record[section]]


def _gather(record: Any, i: int, out: _Gathered, cameras: Tuple[str, ...] = (CAMERA,),
            radars: Tuple[str, ...] = (RADAR,), required: bool = True) -> None:
    """Check a record's structure and gather its numbers; InfoRecordError names the field."""
    if not isinstance(record, dict):
        raise InfoRecordError(f"is a {type(record).__name__}, not a dict")
    for camera in _present(record, "cam_infos", cameras, required):
        where = f"cam_infos.{camera}"
        cam = _get(_get(record, "cam_infos", ""), camera, "cam_infos")
        if not isinstance(cam, dict):
            raise InfoRecordError(f"{where} is a {type(cam).__name__}, not a dict")
        _path(cam, where)
        cs = _get(cam, "calibrated_sensor", where)
        K = _get(cs, "camera_intrinsic", f"{where}.calibrated_sensor")
        out.cams.append((i, f"{where}.calibrated_sensor.camera_intrinsic", K,
                         _size(cam, "height", where), _size(cam, "width", where)))
        _entry_poses(cam, i, where, out)
    where = f"lidar_infos.{LIDAR}"
    lidar = _get(_get(record, "lidar_infos", ""), LIDAR, "lidar_infos")
    if not isinstance(lidar, dict):
        raise InfoRecordError(f"{where} is a {type(lidar).__name__}, not a dict")
    _path(lidar, where)
    _entry_poses(lidar, i, where, out)
    for radar in _present(record, "radar_infos", radars, required):
        sweeps = _get(_get(record, "radar_infos", ""), radar, "radar_infos")
        if not isinstance(sweeps, (list, tuple)) or not sweeps:
            raise InfoRecordError(f"radar_infos.{radar} must be a non-empty list of sweeps, got a "
                                  f"{type(sweeps).__name__}")
        for j, sweep in enumerate(sweeps):
            where = f"radar_infos.{radar}[{j}]"
            if not isinstance(sweep, dict):
                raise InfoRecordError(f"{where} is a {type(sweep).__name__}, not a dict")
            _path(sweep, where)
            _entry_poses(sweep, i, where, out)


def _numbers(values: List[Any], shape: Tuple[int, ...]) -> Tuple[np.ndarray, np.ndarray]:
    """(len x shape float64 array, len bool: not `shape` numbers). All at once; value by value
    only when that fails (to name the bad one)."""
    if len(shape) == 1 and set(map(type, values)) <= {list, tuple} \
            and set(map(len, values)) <= {shape[0]}:          # plain lists: 10x faster than np.array
        try:
            flat = np.fromiter(chain.from_iterable(values), np.float64, count=len(values) * shape[0])
            return flat.reshape((len(values),) + shape), np.zeros(len(values), bool)
        except (ValueError, TypeError):
            pass
    try:
        arr = np.array(values)
        if arr.shape == (len(values),) + shape and arr.dtype.kind in "iuf":
            return arr.astype(np.float64), np.zeros(len(values), bool)
    except (ValueError, TypeError):
        pass
    arr = np.full((len(values),) + shape, np.nan)
    malformed = np.zeros(len(values), bool)
    for j, value in enumerate(values):
        try:
            one = np.array(value)
            ok = one.shape == shape and one.dtype.kind in "iuf"
        except (ValueError, TypeError):
            ok = False
        if ok:
            arr[j] = one
        else:
            malformed[j] = True
    return arr, malformed


def _record_label(records: List[Any], i: int) -> str:
    token = records[i].get("sample_token") if isinstance(records[i], dict) else None
    return f"record {i} (sample_token {token})"


def check_records(records: List[Any], infos_path: str | Path, keep_bad: bool,
                  cameras: Tuple[str, ...] = (CAMERA,), radars: Tuple[str, ...] = (RADAR,),
                  required: bool = True) -> Dict[int, str]:
    """{index: one-line message} of the invalid records (empty when all are valid).

    `cameras`, `radars`: the channels checked besides LIDAR_TOP; with `required` a record must
    hold every one, else only those it holds are checked (the dataset leaves the others out).
    Duplicate sample tokens always raise InfoFileError. Without `keep_bad`, the first invalid
    record raises InfoFileError (with the count of invalid ones)."""
    channels = (tuple(cameras), tuple(radars), required)
    first_at: Dict[str, int] = {}
    for i, record in enumerate(records):
        token = record.get("sample_token") if isinstance(record, dict) else None
        if isinstance(token, str):
            if token in first_at:
                raise InfoFileError(f"info file {infos_path}: records {first_at[token]} and {i} have "
                                    f"the same sample_token {token}: a sample would be scored twice; "
                                    f"remove the duplicate or {FIX}")
            first_at[token] = i
    found: Dict[int, str] = {}
    for i in sorted(_suspects(records, *channels)):  # the few records the fast scan did not clear
        out = _Gathered()
        try:
            token = _get(records[i], "sample_token", "")
            if not isinstance(token, str):
                raise InfoRecordError(f"sample_token is a {type(token).__name__}, not text")
            _gather(records[i], i, out, *channels)
        except InfoRecordError as err:
            found[i] = str(err)
            continue
        _check_numbers(out, found)
    problems = {i: f"info file {infos_path}: {_record_label(records, i)}: {found[i]}; {FIX}"
                for i in sorted(found)}
    if problems and not keep_bad:
        first = next(iter(problems.values()))
        more = f" ({len(problems)} of {len(records)} records are bad)" if len(problems) > 1 else ""
        raise InfoFileError(first + more)
    return problems


def _plain_paths(paths: List[Any]) -> bool:
    """Whether `data_relative_path` surely accepts every one of these recorded paths (cheap string
    tests on all of them at once)."""
    if set(map(type, paths)) != {str}:
        return False
    joined = "\n".join(paths)
    return (".." not in joined and "\\" not in joined and "\x00" not in joined
            and joined.count("\n") == len(paths) - 1
            and all("samples/" in p or "sweeps/" in p for p in paths))


def _suspects(records: List[Any], cameras: Tuple[str, ...] = (CAMERA,),
              radars: Tuple[str, ...] = (RADAR,), required: bool = True) -> set:
    """Indices of the records that may be invalid: those of an unusual form (looked at one by one
    by the caller) and those whose numbers or paths fail the checks made on all at once. The usual
    form (nested camera and LiDAR poses, flat radar sweeps: ours and released) is read with plain
    indexing."""
    suspects = set()
    trans, rots, kmats, sizes, paths = [], [], [], [], []
    counts, path_counts, k_owner = [], [], []
    kept = []
    for i, r in enumerate(records):
        try:
            lidar = r["lidar_infos"][LIDAR]
            lcs, lep = lidar["calibrated_sensor"], lidar["ego_pose"]
            t = [lcs["translation"], lep["translation"]]
            q = [lcs["rotation"], lep["rotation"]]
            p = [lidar["filename"]]
            plain = type(r["sample_token"]) is str
            ks, hws = [], []
            for camera in _present(r, "cam_infos", cameras, required):
                cam = r["cam_infos"][camera]
                cs, ep = cam["calibrated_sensor"], cam["ego_pose"]
                h, w = cam.get("height", -1), cam.get("width", -1)
                ks.append(cs["camera_intrinsic"])
                hws.append((h, w))
                t += (cs["translation"], ep["translation"])
                q += (cs["rotation"], ep["rotation"])
                p.append(cam["filename"])
                plain = plain and type(h) is int and type(w) is int and (h > 0 and w > 0 or h == w == -1)
            for radar in _present(r, "radar_infos", radars, required):
                sweeps = r["radar_infos"][radar]
                plain = plain and type(sweeps) is list and bool(sweeps)
                for sweep in sweeps:
                    t += (sweep["sensor2ego_translation"], sweep["ego2global_translation"])
                    q += (sweep["sensor2ego_rotation"], sweep["ego2global_rotation"])
                    p.append(sweep["data_path"])
        except Exception:          # any unusual form: KeyError, TypeError, IndexError, ...
            plain = False
        if not plain:
            suspects.add(i)
            continue
        trans += t
        rots += q
        paths += p
        kmats += ks
        sizes += hws
        k_owner += [i] * len(ks)
        counts.append(len(t))
        path_counts.append(len(p))
        kept.append(i)
    if not kept:
        return suspects
    kept = np.asarray(kept)
    if not _plain_paths(paths):                 # find the records (rare: a path to refuse)
        owner = np.repeat(kept, path_counts)
        suspects.update(owner[[not _plain_paths([path]) for path in paths]].tolist())
    owner = np.repeat(kept, counts)             # record index of each translation / rotation
    t, bad_t = _numbers(trans, (3,))
    q, bad_q = _numbers(rots, (4,))
    K, bad_k = _numbers(kmats, (3, 3))
    bad_t |= ~(np.isfinite(t).all(1) & (np.abs(t).max(1) <= MAX_TRANSLATION_M))
    bad_q |= ~(np.abs(np.sqrt((q * q).sum(1)) - 1.0) <= ROTATION_NORM_TOL)
    bad_k |= ~_intrinsics_ok(K, np.asarray(sizes, dtype=np.float64).reshape(-1, 2))
    suspects.update(owner[bad_t | bad_q].tolist())
    suspects.update(np.asarray(k_owner, dtype=np.int64)[bad_k].tolist())
    return suspects


def _intrinsics_ok(K: np.ndarray, hw: np.ndarray) -> np.ndarray:
    """N bool for N x 3 x 3 intrinsics and N x 2 (h, w) sizes (-1: not recorded): the checks of
    `intrinsics_problem`, vectorised."""
    fx, fy, cx, cy = K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2]
    ok = np.isfinite(K).all((1, 2)) & np.isclose(K[:, 2], [0, 0, 1]).all(1) & (fx > 0) & (fy > 0)
    sized = hw.min(1) > 0
    side = hw.max(1)
    lo, hi = MIN_FOCAL_RATIO * side, MAX_FOCAL_RATIO * side
    in_range = ((fx >= lo) & (fx <= hi) & (fy >= lo) & (fy <= hi)
                & (cx > 0) & (cx < hw[:, 1]) & (cy > 0) & (cy < hw[:, 0]))
    return ok & (~sized | in_range)


def _check_numbers(out: _Gathered, found: Dict[int, str]) -> None:
    """Vectorised checks of every gathered translation, rotation and intrinsic matrix."""
    def report(bad: np.ndarray, at: List[Tuple[int, str]], values: List[Any], what: str) -> None:
        for j in np.flatnonzero(bad):
            i, field = at[j]
            found.setdefault(i, f"{field} {what(values[j])}")

    if out.trans:
        t, malformed = _numbers(out.trans, (3,))
        report(malformed, out.trans_at, out.trans, lambda v: f"must be 3 numbers, got {v!r}")
        finite = np.isfinite(t).all(1)
        report(~malformed & ~finite, out.trans_at, out.trans,
               lambda v: f"{np.asarray(v, np.float64).tolist()} is not finite")
        far = finite & (np.abs(t).max(1, initial=0) > MAX_TRANSLATION_M)
        report(far, out.trans_at, out.trans,
               lambda v: f"{np.asarray(v, np.float64).tolist()} lies beyond {MAX_TRANSLATION_M:g} m")
    if out.rots:
        q, malformed = _numbers(out.rots, (4,))
        report(malformed, out.rots_at, out.rots, lambda v: f"must be 4 numbers [w, x, y, z], got {v!r}")
        norm = np.sqrt((q * q).sum(1))
        not_unit = ~malformed & ~(np.abs(norm - 1.0) <= ROTATION_NORM_TOL)     # NaN: not unit
        report(not_unit, out.rots_at, out.rots,
               lambda v: f"{np.asarray(v, np.float64).tolist()} is not a finite unit quaternion "
                         f"[w, x, y, z] (norm {np.linalg.norm(np.asarray(v, np.float64)):g})")
    if out.cams:
        at = [(i, field) for i, field, _, _, _ in out.cams]
        values = [K for _, _, K, _, _ in out.cams]
        K, malformed = _numbers(values, (3, 3))
        report(malformed, at, values, lambda v: f"must be 3 x 3 numbers, got {v!r}")
        hw = np.array([(h if h is not None else -1, w if w is not None else -1)
                       for _, _, _, h, w in out.cams], dtype=np.float64).reshape(-1, 2)
        bad = ~malformed & ~_intrinsics_ok(K, hw)
        for j in np.flatnonzero(bad):
            i, field, value, h, w = out.cams[j]
            found.setdefault(i, f"{field} {intrinsics_problem(K[j], h, w)}")
