"""Atomic file operations: every file this project writes goes through here, so that a reader, a
crash or a full disk never leaves a half-written file at its path.

    atomic_write(path, lambda f: f.write(data))      # bytes via a temporary file + rename
    write_png(path, image)                           # any array OpenCV encodes as PNG
    atomic_link(src, dst)                            # dst becomes the same file as src
"""
from __future__ import annotations

import errno
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, BinaryIO, Callable, Optional, Tuple

import cv2
import numpy as np

TEMP_GLOB = ".*.tmp"


class OutputWriteError(OSError):
    """A file could not be written for lack of space; the previous file at its path is unchanged."""


def fsync_dir(folder: str | Path) -> None:
    """Make a rename in `folder` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _errno_in_chain(exc: BaseException) -> Optional[int]:
    """The errno of the first OSError in `exc`'s cause/context chain (torch's zip writer wraps
    the OSError of a failed write in a RuntimeError)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError) and exc.errno is not None:
            return exc.errno
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _replace(tmp: Path, path: Path) -> None:
    os.replace(tmp, path)
    fsync_dir(path.parent)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], Any]) -> Path:
    """`write` into a temporary file, fsync, rename onto `path`, fsync the folder: `path` holds
    the old or the new content whenever the process or the machine stops. A full disk (or
    quota) raises OutputWriteError naming `path`; the temporary file is removed on any error.
    New files get the permissions of the user's umask."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)      # umask applies
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        _replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if _errno_in_chain(exc) in (errno.ENOSPC, errno.EDQUOT):
            kept = f"the previous {path.name} is unchanged" if path.exists() else f"{path.name} was not written"
            raise OutputWriteError(f"no space left on device writing {path}; {kept} and the partial "
                                   f"temporary file was removed: free space in {path.parent} and run "
                                   "again") from exc
        raise
    return path


def atomic_link(src: str | Path, dst: str | Path) -> Path:
    """Make `dst` the same file as `src` (a hard link, else a copy where the file system has no
    hard links), replacing `dst` atomically."""
    src, dst = Path(src), Path(dst)
    tmp = _temp_path(dst)
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        _replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dst


def write_png(path: str | Path, image: np.ndarray, scale: Optional[float] = None,
              compression: int = 1) -> Path:
    """Write `image` (any array OpenCV encodes as PNG: uint8 BGR or grey, uint16) atomically,
    resized by `scale` when given. zlib level 1 by default: decodes 2-4x faster than OpenCV's
    default level 3 for a few per cent more bytes (the loader decodes masks every epoch)."""
    if scale:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, compression])
    if not ok:
        raise OSError(f"could not encode {path} as PNG ({image.dtype}, shape {image.shape})")
    return atomic_write(path, lambda f: f.write(data.tobytes()))


def remove_orphaned_temp_files(folder: str | Path) -> Tuple[int, int]:
    """Delete the temporary files that killed writers left in `folder`; only safe while no other
    process writes there. Returns (files, bytes)."""
    count = size = 0
    for orphan in Path(folder).glob(TEMP_GLOB):
        try:
            size += orphan.stat().st_size
            orphan.unlink()
            count += 1
        except FileNotFoundError:
            pass
    return count, size
