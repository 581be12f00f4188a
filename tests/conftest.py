"""Shared fixtures: the read-only data beside the repository (skipped when absent)."""
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO))


def shared(folder: str, *needed: str) -> Path:
    """SHARED/folder, or skip the test when it or one of the `needed` paths in it is absent."""
    path = SHARED / folder
    if not all((path / item).exists() for item in needed):
        pytest.skip(f"{path} is absent")
    return path


@contextmanager
def torch_threads(count: int):
    """torch uses `count` CPU threads inside the block (a module-scoped fixture pins a file's)."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def one_torch_thread():
    """pytestmark = pytest.mark.usefixtures("one_torch_thread"): small inputs, where a second
    thread gains little and, on a loaded machine, costs a lot."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def two_torch_threads():
    with torch_threads(2):
        yield


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    return shared("reference", "official_state_dict.tsv")


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    """What the released network computed on deterministic weights and inputs (golden.pt)."""
    shared("reference", "official_state_dict.tsv")
    return shared("reference/golden", "golden.pt")


@pytest.fixture(scope="session")
def real_root() -> Path:
    """The 40-keyframe real nuScenes slice (v1.0-trainval tables), never copied into the repo."""
    return shared("nuscenes-real", "v1.0-trainval")


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
