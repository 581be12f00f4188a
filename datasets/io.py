"""Readers of the files of a nuScenes-format root, with errors that name the file and the fix, and
the one reader and writer of depth maps as uint16-millimetre PNGs (dense truth, dense labels,
predictions).

    img = read_image_bgr(path)            # H x W x 3 uint8, BGR
    xyz = read_lidar_points(path)         # N x 3 float32, sensor frame (m)
    xyz = read_radar_points(path)         # N x 3 float32, after the devkit's default filters
    ids = read_seg_mask(path)             # H x W uint8, ADE20K-150 class index
    depth_m = read_depth_png(path)        # H x W float32 (m), 0 = none
    saturated = write_depth_png(path, depth_m)   # atomic; values beyond 65.535 m saturate
"""
from __future__ import annotations

import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Optional, Tuple

import cv2
import numpy as np

from utils.files import write_png

ROOT_HINT = "check data.root (or --data-root) points at the nuScenes root holding samples/ and sweeps/"
# What libjpeg (inside OpenCV) prints, and only prints, when it decodes damaged data anyway
# (jerror.h: JWRN_HIT_MARKER, JWRN_EXTRANEOUS_DATA, JWRN_HUFF_BAD_CODE, JWRN_JPEG_EOF, ...).
JPEG_DAMAGE = (b"Corrupt JPEG data", b"Premature end of JPEG file", b"Invalid SOS parameters",
               b"Inconsistent progression")


class DataFileError(OSError):
    """A sample's image, point cloud or depth file is missing, unreadable or corrupt; `path` is
    the file (None when no single file is to blame)."""

    def __init__(self, message: str, path: Optional[str | Path] = None):
        super().__init__(message)
        self.path = None if path is None else str(path)


class MissingSegMaskError(FileNotFoundError):
    """A semantic mask needed for the mask loss is absent (never skipped: the set is incomplete)."""


def resolve_data_path(root: str | Path, recorded: str) -> Path:
    """Path of a file named in an info file: the part from `samples/` or `sweeps/` on, under root.

    Released index files hold paths such as './data/nuScenes/samples/...'; ours hold 'samples/...'.
    """
    posix = str(recorded).replace("\\", "/")
    for anchor in ("samples/", "sweeps/"):
        if posix.startswith(anchor):
            return Path(root) / posix
        at = posix.rfind("/" + anchor)
        if at >= 0:
            return Path(root) / posix[at + 1:]
    raise DataFileError(f"info-file path {recorded!r} has no 'samples/' or 'sweeps/' part; "
                        "regenerate the info file with tools/create_infos.py", recorded)


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise DataFileError(f"{what} {path} not found; {ROOT_HINT}", path) from None
    except OSError as err:
        raise DataFileError(f"{what} {path} could not be read ({err})", path) from None


class _StderrCapture:
    """Points the process's file descriptor 2 at a private temporary file while a C library
    call runs, to read what the library printed (OpenCV reports libjpeg's warnings nowhere
    else). A few microseconds of system calls; one call at a time per process; a fork makes
    its own file."""

    def __init__(self):
        self.lock = threading.Lock()
        self.pid, self.file = None, None

    def run(self, fn, *args) -> Tuple[object, bytes]:
        """(fn(*args), bytes written to fd 2 meanwhile); nothing is captured where fd 2 is closed."""
        with self.lock:
            if self.pid != os.getpid():
                self.pid, self.file = os.getpid(), tempfile.TemporaryFile()
            sys.stderr.flush()
            try:
                saved = os.dup(2)
            except OSError:
                return fn(*args), b""
            os.dup2(self.file.fileno(), 2)
            try:
                result = fn(*args)
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                text = self._take()
            return result, text

    def _take(self) -> bytes:
        """What the capture file holds; empties it."""
        fd = self.file.fileno()
        size = os.fstat(fd).st_size
        if not size:
            return b""
        text = os.pread(fd, size, 0)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        return text


_stderr_capture = _StderrCapture()


def decode_jpeg_checked(raw: bytes) -> Tuple[Optional[np.ndarray], str]:
    """(H x W x 3 uint8 BGR or None, libjpeg's damage warning or "") of JPEG bytes: OpenCV's
    decoder, with libjpeg's warning about corrupt data caught (text it prints that is no such
    warning goes on to stderr)."""
    img, text = _stderr_capture.run(cv2.imdecode, np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    if text and not any(mark in text for mark in JPEG_DAMAGE):
        os.write(2, text)
        text = b""
    return img, text.decode("ascii", "replace").strip()


def read_image_bgr(path: str | Path) -> np.ndarray:
    """H x W x 3 uint8 BGR (OpenCV's decoder). A JPEG is rejected when truncated (no end marker)
    or when libjpeg reports corrupt data while decoding it (the image would be partly garbage)."""
    raw = _read_bytes(path, "image")
    damage = ""
    if raw[:2] == b"\xff\xd8":
        img, damage = decode_jpeg_checked(raw)
        if b"\xff\xd9" not in raw[-64:]:
            damage = "no JPEG end marker"
    else:
        img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR) if raw else None
    if img is None or damage:
        raise DataFileError(f"image {path} is corrupt or truncated ({damage or 'OpenCV cannot decode it'}); "
                            "re-download or re-extract it", path)
    return img


def read_lidar_points(path: str | Path) -> np.ndarray:
    """N x 3 float32 sensor-frame xyz (m) of a nuScenes `.pcd.bin` (5 float32 per point)."""
    raw = _read_bytes(path, "LiDAR point cloud")
    if len(raw) == 0 or len(raw) % 20 != 0:
        raise DataFileError(f"LiDAR point cloud {path} is corrupt: {len(raw)} bytes is not a "
                            "positive multiple of 5 float32 per point; re-download it", path)
    xyz = np.frombuffer(raw, np.float32).reshape(-1, 5)[:, :3].copy()
    _check_finite(xyz, path, "LiDAR point cloud")
    return xyz


def _check_finite(xyz: np.ndarray, path: Path, what: str) -> None:
    """Reject N x 3 points with a NaN or infinite coordinate (they would vanish from the
    ground truth, or turn a whole prediction into NaN)."""
    if np.isfinite(xyz).all():
        return
    finite = np.isfinite(xyz).all(1)
    raise DataFileError(f"{what} {path} is corrupt: {int((~finite).sum())} of {len(xyz)} points "
                        "have non-finite coordinates; re-download it", path)


_PCD_DTYPES = {"F": "f", "I": "i", "U": "u"}
# The devkit's RadarPointCloud defaults: kept states of invalid_state, dyn_prop and ambig_state.
RADAR_INVALID_STATES = (0,)
RADAR_DYNPROP_STATES = tuple(range(7))
RADAR_AMBIG_STATES = (3,)


def _radar_table(raw: bytes, path: Path) -> np.ndarray:
    """The structured array of a binary radar `.pcd` (one record per point)."""
    header = {}
    pos = 0
    while "DATA" not in header:
        end = raw.find(b"\n", pos)
        if end < 0:
            raise DataFileError(f"radar point cloud {path} is corrupt: no 'DATA' header line", path)
        words = raw[pos:end].decode("ascii", "replace").split()
        pos = end + 1
        if words and not words[0].startswith("#"):
            header[words[0]] = words[1:]
    try:
        fields, sizes, types = header["FIELDS"], header["SIZE"], header["TYPE"]
        count = int(header["WIDTH"][0]) * int(header["HEIGHT"][0])
        dtype = np.dtype([(name, f"<{_PCD_DTYPES[t]}{s}") for name, s, t in zip(fields, sizes, types)])
    except (KeyError, ValueError, IndexError, TypeError) as err:
        raise DataFileError(f"radar point cloud {path} has a malformed header ({err!r})", path) from None
    if header["DATA"] != ["binary"] or len(raw) - pos < count * dtype.itemsize:
        raise DataFileError(f"radar point cloud {path} is corrupt or truncated: expected "
                            f"{count} binary points; re-download it", path)
    return np.frombuffer(raw, dtype, count=count, offset=pos)


def radar_kept(table: np.ndarray) -> np.ndarray:
    """N bool: the radar records (structured array with nuScenes' fields) that the devkit's
    `RadarPointCloud.from_file` keeps with its default state filters."""
    return (np.isin(table["invalid_state"], RADAR_INVALID_STATES)
            & np.isin(table["dyn_prop"], RADAR_DYNPROP_STATES)
            & np.isin(table["ambig_state"], RADAR_AMBIG_STATES))


def read_radar_points(path: str | Path) -> np.ndarray:
    """N x 3 float32 sensor-frame xyz (m) of a radar `.pcd`, filtered like the devkit's
    `RadarPointCloud.from_file` defaults (vectorised; a NaN in the first point means empty, as
    in the devkit). A kept point with a non-finite coordinate is an error."""
    path = Path(path)
    table = _radar_table(_read_bytes(path, "radar point cloud"), path)
    try:
        xyz = np.stack([table["x"], table["y"], table["z"]], axis=1).astype(np.float32)
        keep = radar_kept(table)
    except ValueError as err:
        raise DataFileError(f"radar point cloud {path} lacks a nuScenes radar field ({err})", path) from None
    if len(table) == 0 or np.isnan(xyz[0]).any():
        return np.zeros((0, 3), np.float32)
    _check_finite(xyz[keep], path, "radar point cloud")
    return xyz[keep]


def read_seg_mask(path: str | Path) -> np.ndarray:
    """H x W uint8 ADE20K-150 class index per pixel."""
    path = Path(path)
    if not path.is_file():
        raise MissingSegMaskError(
            f"semantic mask {path} not found; make the masks with tools/gen_seg_masks.py (or point "
            "data.seg_mask_dir at them), or set data.mask_supervision=false to train without them")
    ids = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if ids is None or ids.ndim != 2 or ids.dtype != np.uint8:
        raise DataFileError(f"semantic mask {path} is not a readable 8-bit single-channel PNG; "
                            "regenerate it with tools/gen_seg_masks.py", path)
    return ids


DEPTH_PNG_MAX_MM = 65535


def depth_png_mm(depth_m: np.ndarray) -> np.ndarray:
    """H x W metres -> H x W uint16 millimetres (rounded; saturates at 65.535 m; 0 = none)."""
    return np.clip(np.rint(np.asarray(depth_m, np.float64) * 1000.0), 0, DEPTH_PNG_MAX_MM).astype(np.uint16)


def write_depth_png(path: str | Path, depth_m: np.ndarray) -> int:
    """Write depth_m (H x W, m) as a uint16-millimetre PNG, atomically. Returns the number of
    pixels that saturated at 65.535 m."""
    png = depth_png_mm(depth_m)
    write_png(path, png)
    return int((png == DEPTH_PNG_MAX_MM).sum())


def read_depth_png(path: str | Path, fix: str = "write it again with the tool that made it") -> np.ndarray:
    """H x W float32 depth (m) from a uint16-millimetre PNG (0 = none); a file that is not one
    raises DataFileError naming it and `fix`."""
    depth_mm = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if depth_mm is None or depth_mm.ndim != 2 or depth_mm.dtype != np.uint16:
        raise DataFileError(f"depth map {path} is not a readable 16-bit single-channel PNG "
                            f"(uint16 millimetres); {fix}", path)
    return depth_mm.astype(np.float32) * np.float32(1e-3)
