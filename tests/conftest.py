"""Shared fixtures: paths to the read-only data beside the repository (skipped when absent)."""
from pathlib import Path
import sys

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO))


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    path = SHARED / "reference"
    if not (path / "official_state_dict.tsv").is_file():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(scope="session")
def real_root() -> Path:
    """The 40-keyframe real nuScenes slice (v1.0-trainval tables), never copied into the repo."""
    path = SHARED / "nuscenes-real"
    if not (path / "v1.0-trainval").is_dir():
        pytest.skip(f"{path} is absent")
    return path
