"""Process-level settings for sample preparation, shared by every DataLoader of the project.

Loader workers are started with `spawn`, not Linux's default `fork`: a forked child inherits
OpenCV's thread pool in whatever state the parent's threads left it, and its first OpenCV call
then waits forever on a condition variable of a thread that does not exist in the child (seen
in the test process after OpenCV had run threaded in the parent). A spawned worker starts clean;
the cost is one interpreter start and import per worker (seconds), paid once per loader with
persistent workers.
"""
from __future__ import annotations

import ctypes
import logging
import os
from typing import Any, Dict

import cv2

log = logging.getLogger(__name__)
_lowered_from: set = set()          # worker counts already reported as lowered (one line each)

# glibc mallopt parameters: serve blocks up to 32 MiB from the heap, keep up to 64 MiB of freed
# heap instead of handing it back to the OS after every sample.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_BYTES, _TRIM_THRESHOLD_BYTES = 32 << 20, 64 << 20


def reuse_freed_buffers() -> None:
    """Make glibc reuse the freed arrays of the previous sample. By default each sample's ~20 MiB
    of new arrays are mapped and zeroed by the kernel again (about 5500 page faults, a third of a
    training sample's CPU time); with this, about one. Process-wide; a no-op without glibc's
    mallopt."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)
        mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES)


def init_worker(_worker_id: int) -> None:
    """Loader worker start-up: one OpenCV thread (the workers are the parallelism; torch already
    runs one thread per worker) and glibc buffer reuse."""
    cv2.setNumThreads(1)
    reuse_freed_buffers()


def usable_cpus() -> int:
    """The CPU cores this process may run on (its affinity mask; os.cpu_count() elsewhere)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def worker_options(num_workers: int, persistent: bool = False) -> Dict[str, Any]:
    """DataLoader keyword arguments for `num_workers` worker processes (none when 0), lowered
    to the usable CPU cores (data.num_workers; one info line the first time): more workers than
    cores only compete for them, and the DataLoader warns about it."""
    if num_workers <= 0:
        return {"num_workers": 0}
    cores = usable_cpus()
    if num_workers > cores:
        if num_workers not in _lowered_from:
            _lowered_from.add(num_workers)
            log.info("data.num_workers=%d lowered to %d, the CPU cores this process may use",
                     num_workers, cores)
        num_workers = cores
    return {"num_workers": num_workers, "multiprocessing_context": "spawn",
            "worker_init_fn": init_worker, "persistent_workers": persistent}


def shutdown_workers(loader_or_iterator: Any) -> None:
    """Stop the worker processes of a DataLoader (its persistent iterator) or of a DataLoader
    iterator now. Called in a `finally` around the loop: after an error the workers would
    otherwise be terminated at interpreter exit, where the DataLoader reports each as "killed by
    signal: Terminated" with a traceback after the error's one line."""
    iterator = getattr(loader_or_iterator, "_iterator", loader_or_iterator)
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()


def error_message(error: BaseException) -> str:
    """The message of `error`. A DataLoader re-raises a worker's error in the main process with
    the worker's traceback in its message ("Caught X in DataLoader worker process 0. Original
    Traceback ..."); for such an error, the original message (its last line) alone."""
    text = str(error)
    if "in DataLoader worker process" not in text.split("\n", 1)[0]:
        return text
    return text.rstrip().rsplit("\n", 1)[-1].split(": ", 1)[-1]
