"""The documentation speaks of the project and its users only: no words about how the project was
built (work items, sessions, who asked for what). Every README, docs page and config comment is
searched for the phrases of PROCESS (regular expressions, case-insensitive); a hit fails the test
with file:line, unless the line matches ALLOWED (GitHub issues of the released code, for one)."""
import re

import pytest

from conftest import REPO

PAGES = sorted({REPO / "README.md", *(REPO / "docs").glob("*.md"), REPO / "tools" / "README.md",
                REPO / "utils" / "README.md", REPO / "data" / "README.md",
                REPO / "checkpoints" / "README.md", *(REPO / "configs").rglob("*.yaml")})

# phrase -> what it gives away
PROCESS = {
    r"\bissues?\b": "a work item (GitHub issues of the released code: ALLOWED)",
    r"\btickets?\b": "a work item",
    r"\bskeleton\b": "the project's starting point",
    r"\bsessions?\b": "a working session",
    r"\b(this|our|the next|the previous|an earlier|a later) tasks?\b": "a work item",
    r"\btask (had|has|was|is) (no|none)\b": "a work item",
    r"\b(we|I) (were|was) asked\b": "who asked for what",
    r"\b(as|was|were) requested\b": "who asked for what",
    r"\bthe (user|reviewer|maintainer) asked\b": "who asked for what",
    r"\blent\b": "a machine lent to the work",
    r"\bthis work\b": "the work instead of the project",
    r"\bdevelopment machines?\b": "an unnamed machine: name its CPU / GPU",
    r"\b(TODO|FIXME)\b": "an open work note",
}

# lines where a PROCESS phrase is meant for users: (pattern of PROCESS, pattern the line matches)
ALLOWED = [
    (r"\bissues?\b", r"github\.com/\S+/issues|\bGitHub issues?\b"),
]


def line_hits(line: str) -> list:
    """(phrase, why) of every PROCESS phrase in `line` that ALLOWED does not cover."""
    found = []
    for pattern, why in PROCESS.items():
        match = re.search(pattern, line, re.IGNORECASE)
        if match and not any(p == pattern and re.search(ok, line, re.IGNORECASE) for p, ok in ALLOWED):
            found.append((match.group(0), why))
    return found


def hits(path) -> list:
    """'file:line: phrase (why)' for every uncovered PROCESS phrase of `path`."""
    return [f"{path.relative_to(REPO)}:{number}: {phrase!r} ({why})"
            for number, line in enumerate(path.read_text().splitlines(), 1)
            for phrase, why in line_hits(line)]


def test_pages_exist():
    assert REPO / "README.md" in PAGES and len(PAGES) > 10


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_no_process_words(path):
    found = hits(path)
    assert not found, "process words in the docs; rewrite them for users:\n" + "\n".join(found)


@pytest.mark.parametrize("line, caught", [
    ("GPU: not measured (this task had no GPU). In the next session with one:", True),
    ("the skeleton's first guess was 4 px", True),
    ("The issue that specified this behaviour", True),
    ("Time: not measured (no GPU was lent to this work)", True),
    ("on the 2-core development machine", True),
    ("reported upstream as a GitHub issue", False),
    ("see github.com/megvii-research/Sparse-Beats-Dense/issues/3", False),
    ("## 1. Task and protocol", False),
    ("onnxruntime's InferenceSession", False),
    ("SpaDe in brief", False),
])
def test_the_phrases_are_caught(line, caught):
    assert bool(line_hits(line)) == caught, line_hits(line)
