"""One writer per output: a lock file that names its holder (pid, host, start time, command).

    with RunLock(out_dir / "run.lock", f"train.out_dir {out_dir}", "choose another train.out_dir"):
        ...                                  # a second RunLock on the same file raises RunLockedError

The lock is an `flock` on the file, which the kernel releases when the holder dies however it
dies (kill -9 included), so a dead run's lock is taken over by the next run with a note naming
the dead holder. Where the file system has no flock (some network file systems) the file's
content decides instead: a holder on this host whose process is gone is taken over, any other
holder refuses (the message says to delete the file if that run is gone).
"""
from __future__ import annotations

import datetime
import errno
import fcntl
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any, Dict, Optional

log = logging.getLogger(__name__)
NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)


class RunLockedError(RuntimeError):
    """Another live process holds the lock of an output."""


def holder_record() -> Dict[str, Any]:
    """Who this process is: pid, host, start time (UTC) and command line."""
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv)}


def _read_holder(fd: int) -> Optional[Dict[str, Any]]:
    try:
        holder = json.loads(os.pread(fd, 65536, 0) or b"null")
    except ValueError:
        return None
    return holder if isinstance(holder, dict) else None


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
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            locked = _flock(fd)
            previous = _read_holder(fd)
            if locked is False or (locked is None and previous and _alive(previous)):
                os.close(fd)
                raise RunLockedError(self._refusal(previous, flock=locked is not None))
            try:
                same_file = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:       # the previous holder removed it meanwhile
                same_file = False
            if same_file:
                break
            os.close(fd)
        if previous:
            log.info("%s: taking over the lock of pid %s on %s (started %s), which ended without "
                     "releasing it", self.path, previous.get("pid"), previous.get("host"),
                     previous.get("started"))
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder_record()).encode() + b"\n", 0)
        self.fd = fd
        return self

    def _refusal(self, holder: Optional[Dict[str, Any]], flock: bool) -> str:
        who = (f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}: "
               f"{holder.get('command')}" if holder else "a process that has not written its name yet")
        stale = "" if flock else f"; if that run is gone, delete {self.path}"
        return (f"{self.what} is in use by another run ({who}); wait for it to end or stop it, or "
                f"{self.fix}{stale}")

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            if os.stat(self.path).st_ino == os.fstat(self.fd).st_ino:
                self.path.unlink()
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
