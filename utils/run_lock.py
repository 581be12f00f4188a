"""One writer per output: a lock file that names its holder (pid, host, start time, command).

    with RunLock(out_dir / "run.lock", f"train.out_dir {out_dir}", "choose another train.out_dir"):
        ...                                  # a second RunLock on the same file raises RunLockedError

The lock is an `flock` on the file, which the kernel releases when the holder dies however it
dies (kill -9 included), so a dead run's lock is taken over by the next run with a note naming
the dead holder. Where the file system has no flock (some network file systems) the file's
content decides instead: a holder on this host whose process is gone is taken over, any other
holder refuses (the message says to delete the file if that run is gone).

The lock path may be planted by someone else, so it is never followed and never clobbers a file
that is not a lock: it is created with O_EXCL, or an existing one is opened with O_NOFOLLOW and
must be a regular file of one name (a symbolic link, hard link, FIFO or device is refused with
RunLockedError naming it). It is truncated and rewritten only when it is empty or holds a
holder record of this code; a file with other content is refused, unchanged.
"""
from __future__ import annotations

import datetime
import errno
import fcntl
import json
import logging
import os
import socket
import stat
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from utils.jsonio import dumps

log = logging.getLogger(__name__)
NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)


class RunLockedError(RuntimeError):
    """Another live process holds the lock of an output, or its lock path is no lock file."""


def holder_record() -> Dict[str, Any]:
    """Who this process is: pid, host, start time (UTC) and command line."""
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv)}


def _read_holder(fd: int) -> Optional[Dict[str, Any]]:
    """The holder record in the file (a dict with a pid), else None."""
    try:
        holder = json.loads(os.pread(fd, 65536, 0) or b"null")
    except ValueError:
        return None
    return holder if isinstance(holder, dict) and "pid" in holder else None


def _flock(fd: int) -> Optional[bool]:
    """True: locked; False: another process holds it; None: the file system has no flock."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as err:
        if err.errno in NO_FLOCK:
            return None
        raise


def _alive(holder: Dict[str, Any]) -> bool:
    """False only for a holder on this host whose process no longer exists."""
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, TypeError, ValueError):
        return True
    return True


class RunLock:
    """Exclusive lock of one output; `what` names the output and `fix` the way out in the
    refusal message."""

    def __init__(self, path: str | Path, what: str, fix: str):
        self.path, self.what, self.fix = Path(path), what, fix
        self.fd: Optional[int] = None

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd, created = self._open()
            locked = _flock(fd)
            previous = _read_holder(fd)
            if locked is False or (locked is None and previous and _alive(previous)):
                os.close(fd)
                raise RunLockedError(self._refusal(previous, flock=locked is not None))
            if not created and previous is None and os.fstat(fd).st_size:
                os.close(fd)
                raise RunLockedError(f"{self.path} is not a lock file of this code (it holds other "
                                     f"data); nothing was changed: move it away, or {self.fix}")
            if self._names(fd):
                break
            os.close(fd)
        if previous:
            log.info("%s: taking over the lock of pid %s on %s (started %s), which ended without "
                     "releasing it", self.path, previous.get("pid"), previous.get("host"),
                     previous.get("started"))
        os.ftruncate(fd, 0)
        os.pwrite(fd, dumps(holder_record()).encode() + b"\n", 0)
        self.fd = fd
        return self

    def _open(self) -> Tuple[int, bool]:
        """(descriptor, created): the lock file newly created (O_EXCL), else the existing one
        opened without following a link, refused unless a regular file of one name."""
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        while True:
            try:
                return os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o666), True
            except FileExistsError:
                pass
            try:
                self._check(os.lstat(self.path))       # a FIFO or device is never opened
                fd = os.open(self.path, flags)
            except FileNotFoundError:                  # its holder removed it meanwhile
                continue
            except OSError as err:
                if err.errno == errno.ELOOP:           # replaced by a link after the lstat
                    raise RunLockedError(self._unsafe("is a symbolic link")) from None
                raise
            try:
                self._check(os.fstat(fd))
            except RunLockedError:
                os.close(fd)
                raise
            return fd, False

    def _check(self, st: os.stat_result) -> None:
        if stat.S_ISLNK(st.st_mode):
            raise RunLockedError(self._unsafe("is a symbolic link"))
        if not stat.S_ISREG(st.st_mode):
            raise RunLockedError(self._unsafe("is not a regular file"))
        if st.st_nlink != 1:
            raise RunLockedError(self._unsafe(f"is a hard link ({st.st_nlink} names of one file)"))

    def _unsafe(self, problem: str) -> str:
        return (f"lock file {self.path} {problem}; refused, nothing was written (a lock file is "
                f"rewritten: this one could overwrite another file): delete it, or {self.fix}")

    def _names(self, fd: int) -> bool:
        """Whether the lock path still names the file open as `fd` (not removed or replaced)."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)

    def _refusal(self, holder: Optional[Dict[str, Any]], flock: bool) -> str:
        who = (f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}: "
               f"{holder.get('command')}" if holder else "a process that has not written its name yet")
        stale = "" if flock else f"; if that run is gone, delete {self.path}"
        return (f"{self.what} is in use by another run ({who}); wait for it to end or stop it, or "
                f"{self.fix}{stale}")

    def release(self) -> None:
        if self.fd is None:
            return
        if self._names(self.fd):
            self.path.unlink(missing_ok=True)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
