"""Fail when git tracks what only works on one machine: a symlink whose target leaves the
repository (absolute, or relative through ..), or anything under a `.venv` folder.

    python3 .ci/check_tree.py [REPO]        # exit 0 when clean, 1 naming every offending path

Standard library only: it runs before any virtual environment exists (.ci/run).
"""
from __future__ import annotations

import posixpath
import subprocess
import sys
from typing import List

SYMLINK_MODE = "120000"


def git(repo: str, *args: str) -> bytes:
    return subprocess.run(["git", "-C", repo, *args], check=True, capture_output=True).stdout


def problems(repo: str) -> List[str]:
    """One message per tracked path that ties the checkout to a machine."""
    found = []
    for entry in git(repo, "ls-files", "--stage", "-z").split(b"\0"):
        if not entry:
            continue
        meta, path = entry.decode().split("\t", 1)
        mode, blob = meta.split()[:2]
        parts = path.split("/")
        if ".venv" in parts:
            venv = "/".join(parts[:parts.index(".venv") + 1])
            found.append(f"{path}: a virtual environment is tracked; run `git rm -r --cached "
                         f"{venv}` (.gitignore ignores /.venv; make builds it)")
        if mode == SYMLINK_MODE:
            target = git(repo, "cat-file", "blob", blob).decode()
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
            if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
                found.append(f"{path}: a symlink to {target}, outside the repository; it breaks "
                             "on every other machine (track the file itself, or nothing)")
    return found


def main(argv: List[str]) -> int:
    repo = argv[0] if argv else "."
    try:
        found = problems(repo)
    except subprocess.CalledProcessError as err:
        print(f"error: git failed in {repo}: {err.stderr.decode().strip()}", file=sys.stderr)
        return 2
    for message in found:
        print(f"error: git tracks {message}", file=sys.stderr)
    if found:
        return 1
    print("tree check passed: no tracked .venv, no symlink leaving the repository")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
