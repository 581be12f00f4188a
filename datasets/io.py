"""Readers of the files of a nuScenes-format root, with errors that name the file and the fix, and
the one reader and writer of depth maps as uint16-millimetre PNGs (dense truth, dense labels,
predictions).

    img = read_image_bgr(path)            # H x W x 3 uint8, BGR
    xyz = read_lidar_points(path)         # N x 3 float32, sensor frame (m)
    xyz = read_radar_points(path)         # N x 3 float32, after the devkit's default filters
    ids = read_seg_mask(path)             # H x W uint8, ADE20K-150 class index
    depth_m = read_depth_png(path)        # H x W float32 (m), 0 = none
    saturated = write_depth_png(path, depth_m)   # atomic; values beyond 65.535 m saturate
    path = resolve_data_path(root, "./data/nuScenes/samples/CAM_FRONT/x.jpg")   # root/samples/...

What a file named by an info file (or given as own data) may be:
- Under the root. `resolve_data_path` keeps the part of a recorded path from `samples/` or
  `sweeps/` on and refuses one with a `..` component after it ("leads outside the data root"),
  lexically, before touching the disk. Symbolic links under the root are followed wherever they
  point: nuScenes users link `samples/` or `sweeps/` to another disk, and the tests link single
  files; the root belongs to its user, while the info file (often downloaded) only names paths.
- A regular file. `read_regular_file` opens with O_NONBLOCK and checks fstat before reading, so a
  FIFO (which would hang), /dev/zero (which would fill the memory), a socket or a folder is
  refused, never read.
- Not larger than a ceiling: MAX_IMAGE_BYTES, MAX_LIDAR_BYTES, MAX_RADAR_BYTES on disk, and
  MAX_IMAGE_PIXELS for the pixel count an image's header declares (checked before decoding).
  Each refusal is a DataFileError naming the file (see the constants for the sizes and reasons).
"""
from __future__ import annotations

import io
import os
import posixpath
import stat
import struct
import sys
import tempfile
import threading
import warnings
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

# Ceilings on what a reader takes in (bytes on disk; for images also the decoded pixel count, read
# from the header before decoding). Generous for nuScenes: a 900x1600 CAM_FRONT JPEG is ~0.1-0.4
# MB (decoded 1.44 Mpx, 4.3 MB), a LIDAR_TOP .pcd.bin ~0.7 MB (~35k points x 20 B), a RADAR_FRONT
# .pcd ~6 kB (~125 points x 43 B). The limits leave room for own data from larger sensors while
# keeping one file from filling the memory of a loader worker (the network at 50 Mpx would need
# far more memory than any GPU has, so no usable input is refused).
MAX_IMAGE_BYTES = 256 << 20          # an uncompressed 50 Mpx 8-bit RGB PNG is ~150 MB
MAX_IMAGE_PIXELS = 50_000_000        # 35x a nuScenes frame; 8K (7680x4320) is 33 Mpx
MAX_LIDAR_BYTES = 64 << 20           # 3.3M points of 20 B; nuScenes: 0.7 MB, a 128-beam sweep ~5 MB
MAX_RADAR_BYTES = 16 << 20           # 390k points of 43 B; nuScenes: ~6 kB


class DataFileError(OSError):
    """A sample's image, point cloud or depth file is missing, unreadable or corrupt; `path` is
    the file (None when no single file is to blame)."""

    def __init__(self, message: str, path: Optional[str | Path] = None):
        super().__init__(message)
        self.path = None if path is None else str(path)


class RefusedFileError(DataFileError):
    """A file refused before it is decoded: its path leads outside the data root, it is no regular
    file, or it is over a size ceiling."""


class MissingSegMaskError(FileNotFoundError):
    """A semantic mask needed for the mask loss is absent (never skipped: the set is incomplete)."""


def data_relative_path(recorded: str) -> str:
    """The root-relative part of a path named in an info file ('samples/...' or 'sweeps/...'),
    normalised. Raises DataFileError for a path without that part, or one with a '..'
    component after it (it would leave the data root, or its data folders)."""
    if not isinstance(recorded, str):
        raise DataFileError(f"info-file path {recorded!r} is a {type(recorded).__name__}, not text; "
                            "regenerate the info file with tools/create_infos.py", None)
    posix = recorded.replace("\\", "/")
    for anchor in ("samples/", "sweeps/"):
        at = 0 if posix.startswith(anchor) else posix.rfind("/" + anchor) + 1
        if at > 0 or posix.startswith(anchor):     # the last '/samples/' (or a leading one) on
            rel = posix[at:]
            if ".." in rel.split("/") or "\x00" in rel:
                raise RefusedFileError(f"info-file path {recorded!r} leads outside the data root's "
                                    f"{anchor} folder ('..'); refused: regenerate the info file with "
                                    "tools/create_infos.py", recorded)
            return posixpath.normpath(rel)
    raise DataFileError(f"info-file path {recorded!r} has no 'samples/' or 'sweeps/' part; "
                        "regenerate the info file with tools/create_infos.py", recorded)


def resolve_data_path(root: str | Path, recorded: str) -> Path:
    """Path of a file named in an info file: the part from `samples/` or `sweeps/` on, under root.

    Released index files hold paths such as './data/nuScenes/samples/...'; ours hold 'samples/...'.
    A '..' component after that part is refused (DataFileError: the path leads outside the data
    root); symbolic links under the root are followed wherever they point (see the module
    docstring).
    """
    return Path(root) / data_relative_path(recorded)


def read_regular_file(path: str | Path, what: str, max_bytes: int, fix: str = ROOT_HINT) -> bytes:
    """The bytes of `path`, which must be a regular file (after symbolic links) of at most
    `max_bytes`. Opened without blocking and checked with fstat before any read: a FIFO, a
    device such as /dev/zero, a socket or a folder is refused, never read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise DataFileError(f"{what} {path} not found; {fix}", path) from None
    except (OSError, ValueError) as err:      # ValueError: a NUL byte in the name
        raise DataFileError(f"{what} {path} could not be opened ({err})", path) from None
    with os.fdopen(fd, "rb", buffering=0) as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RefusedFileError(f"{what} {path} is not a regular file ({_file_kind(info.st_mode)}); "
                                f"refused: point it at the file itself", path)
        if info.st_size > max_bytes:
            raise RefusedFileError(_too_large(path, what, info.st_size, max_bytes), path)
        try:
            os.set_blocking(fd, True)
            raw = f.read(max_bytes + 1)
        except OSError as err:
            raise DataFileError(f"{what} {path} could not be read ({err})", path) from None
    if len(raw) > max_bytes:                  # grew while we read it
        raise RefusedFileError(_too_large(path, what, len(raw), max_bytes), path)
    return raw


def _too_large(path, what: str, size: int, max_bytes: int) -> str:
    return (f"{what} {path} is {size} bytes, over the ceiling of {max_bytes} bytes "
            f"({max_bytes >> 20} MiB) for a {what}; refused (see datasets/io.py)")


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a folder")):
        if test(mode):
            return kind
    return "not a plain file"


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
    raw = read_regular_file(path, "image", MAX_IMAGE_BYTES)
    check_image_pixels(raw, path)
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


def image_header_size(raw: bytes) -> Optional[Tuple[int, int]]:
    """(width, height) from an encoded image's header, without decoding it (PIL reads the header
    lazily); None when PIL does not know the format."""
    from PIL import Image, UnidentifiedImageError
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw)) as img:
                return img.size
    except Image.DecompressionBombError:       # PIL's own refusal (over 2 x its MAX_IMAGE_PIXELS)
        return (Image.MAX_IMAGE_PIXELS, 2)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, struct.error):
        return None


def check_image_pixels(raw: bytes, path) -> None:
    """Refuse an image whose header declares more than MAX_IMAGE_PIXELS pixels (before the
    decoder allocates them)."""
    size = image_header_size(raw)
    if size is not None and size[0] * size[1] > MAX_IMAGE_PIXELS:
        w, h = size
        raise RefusedFileError(f"image {path} is {w} x {h} = {w * h} pixels, over the ceiling of "
                            f"{MAX_IMAGE_PIXELS} pixels; refused: resize it (and scale its "
                            "intrinsics with it)", path)


def read_lidar_points(path: str | Path) -> np.ndarray:
    """N x 3 float32 sensor-frame xyz (m) of a nuScenes `.pcd.bin` (5 float32 per point)."""
    raw = read_regular_file(path, "LiDAR point cloud", MAX_LIDAR_BYTES)
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
    table = _radar_table(read_regular_file(path, "radar point cloud", MAX_RADAR_BYTES), path)
    try:
        xyz = np.stack([table["x"], table["y"], table["z"]], axis=1).astype(np.float32)
        keep = radar_kept(table)
    except ValueError as err:
        raise DataFileError(f"radar point cloud {path} lacks a nuScenes radar field ({err})", path) from None
    if len(table) == 0 or np.isnan(xyz[0]).any():
        return np.zeros((0, 3), np.float32)
    _check_finite(xyz[keep], path, "radar point cloud")
    return xyz[keep]


def _decode_png(path: str | Path, what: str, fix: str) -> Optional[np.ndarray]:
    """The image of a mask or depth PNG as stored (None when it does not decode), read with the
    regular-file and size checks of every image."""
    raw = read_regular_file(path, what, MAX_IMAGE_BYTES, fix)
    check_image_pixels(raw, path)
    return cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)


def read_seg_mask(path: str | Path) -> np.ndarray:
    """H x W uint8 ADE20K-150 class index per pixel."""
    path = Path(path)
    if not path.is_file():
        raise MissingSegMaskError(
            f"semantic mask {path} not found; make the masks with tools/gen_seg_masks.py (or point "
            "data.seg_mask_dir at them), or set data.mask_supervision=false to train without them")
    ids = _decode_png(path, "semantic mask", "regenerate it with tools/gen_seg_masks.py")
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
    depth_mm = _decode_png(path, "depth map", fix)
    if depth_mm is None or depth_mm.ndim != 2 or depth_mm.dtype != np.uint16:
        raise DataFileError(f"depth map {path} is not a readable 16-bit single-channel PNG "
                            f"(uint16 millimetres); {fix}", path)
    return depth_mm.astype(np.float32) * np.float32(1e-3)
