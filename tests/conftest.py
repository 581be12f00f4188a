"""Shared fixtures: the read-only data beside the repository (skipped when absent)."""
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
def golden_dir() -> Path:
    """What the released network computed on deterministic weights and inputs (golden.pt)."""
    path = SHARED / "reference" / "golden"
    if not (path / "golden.pt").is_file() or not (SHARED / "reference" / "official_state_dict.tsv").is_file():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(scope="session")
def real_root() -> Path:
    """The 40-keyframe real nuScenes slice (v1.0-trainval tables), never copied into the repo."""
    path = SHARED / "nuscenes-real"
    if not (path / "v1.0-trainval").is_dir():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(scope="session")
def real_records(real_root) -> list:
    """The info records of the real slice's 40 key frames (all in the official val split)."""
    from nuscenes.nuscenes import NuScenes
    from datasets.infos import create_infos, split_scenes
    return create_infos(NuScenes("v1.0-trainval", str(real_root), verbose=False),
                        split_scenes("v1.0-trainval"), progress=False)["val"]


@pytest.fixture(scope="session")
def real_infos(real_records, tmp_path_factory) -> Path:
    """`real_records` saved as an info file."""
    from datasets.infos import save_infos
    path = tmp_path_factory.mktemp("real_infos") / "val.pkl"
    save_infos(real_records, path)
    return path
