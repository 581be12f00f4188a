"""Shared fixtures: the read-only data beside the repository (skipped when absent), and the
run's closing list of what was skipped and why (pytest_terminal_summary)."""
import re
import sys
from collections import Counter
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
def ckpt(tmp_path_factory) -> Path:
    """A released-format checkpoint ({"network": state_dict}) with seeded random weights."""
    from models import SpaDe
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "model.ckpt"
    torch.save({"network": SpaDe().state_dict()}, path)
    return path


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


# What each folder of SHARED holds: the tests that skip without it (pytest_terminal_summary)
SHARED_CONTENT = {
    "nuscenes-real": "the real nuScenes slice: the real-data tests",
    "reference": "the released network's weights: the fidelity tests",
    "reference/golden": "the released network's own outputs: the fidelity tests",
}
MAX_REASON_LINES = 6


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return text.removeprefix("Skipped: ").strip()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """End the run with its skips grouped by reason (counts, not one line per test), and how to
    run the ones that need ../shared."""
    reasons = Counter(_skip_reason(r) for r in terminalreporter.stats.get("skipped", []))
    if not reasons:
        return
    absent = re.compile(rf"^{re.escape(str(SHARED))}/(\S+) is absent$")
    shared_lines, other = Counter(), Counter()
    for reason, count in reasons.items():
        found = absent.match(reason)
        if found:
            shared_lines[found.group(1)] += count
        elif reason.startswith("EXEMPT: "):          # tests/test_docs.py: its table says why
            other["documented command not run here (tests/test_docs.py EXEMPT lists why)"] += count
        else:
            other[reason] += count
    plural = lambda n: f"{n} test{'s' if n != 1 else ''}"    # noqa: E731
    write = terminalreporter.write_line
    terminalreporter.write_sep("=", f"what was skipped ({plural(sum(reasons.values()))})")
    for folder, count in sorted(shared_lines.items()):
        what = SHARED_CONTENT.get(folder) or SHARED_CONTENT.get(folder.split("/")[0], "")
        write(f"{plural(count)} skipped because ../shared/{folder} is absent" + (f" ({what})" if what else ""))
    if shared_lines:
        write(f"  to run them: place the project's shared folder (nuscenes-real/, reference/) beside the "
              f"repository, as {SHARED}; the tests find it there by themselves")
    shown = other.most_common(MAX_REASON_LINES)
    for reason, count in shown:
        write(f"{plural(count)} skipped: {reason[:160]}")
    if len(other) > len(shown):
        rest = sum(other.values()) - sum(c for _, c in shown)
        write(f"{plural(rest)} skipped for {len(other) - len(shown)} other reasons (pytest -rs lists each)")
