"""What produced a file: this code's git commit, the library versions, the host and the time.

    info = provenance()     # {"git_commit": "3f2a...+dirty", "date", "host", "python", "torch", ...}

Written into training run folders (run_info.json), checkpoints (`extra.provenance`), eval JSON
files and exported weights.
"""
from __future__ import annotations

import datetime
import functools
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, Optional

REPO = Path(__file__).resolve().parents[1]
# distribution -> key: the libraries whose version changes numbers
LIBRARIES = {"torch": "torch", "numpy": "numpy", "opencv-python-headless": "opencv",
             "Pillow": "pillow", "scipy": "scipy", "nuscenes-devkit": "nuscenes_devkit"}


@functools.lru_cache(maxsize=4)
def git_commit(folder: Path = REPO) -> Optional[str]:
    """HEAD of the git checkout at `folder` (default: the one this code runs from), '+dirty' when
    tracked files have local changes; None outside git (or without git)."""
    try:
        head = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "-uno"],
                               capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def library_versions() -> Dict[str, Optional[str]]:
    """Installed versions of LIBRARIES (None when absent), python's, and torch's CUDA."""
    versions: Dict[str, Optional[str]] = {"python": platform.python_version()}
    for dist, key in LIBRARIES.items():
        try:
            versions[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[key] = None
    import torch
    versions["torch"] = str(torch.__version__)         # with its build tag (+cpu, +cu126)
    versions["cuda"] = torch.version.cuda
    return versions


def provenance() -> Dict[str, Any]:
    """git_commit, date (UTC), host and library_versions() in one flat dict."""
    return {"git_commit": git_commit(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "host": socket.gethostname(), **library_versions()}
