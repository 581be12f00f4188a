""".ci/check_tree.py (run first by .ci/run) on throw-away git repositories, and .gitignore's
/.venv pattern against every form a virtual environment can take."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECK = REPO / ".ci" / "check_tree.py"

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def check(repo: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHECK), str(repo)], capture_output=True, text=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with a file, a folder and a symlink that stays inside."""
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "README.md").write_text("hello\n")
    (root / "docs" / "guide.md").write_text("guide\n")
    os.symlink("../README.md", root / "docs" / "readme-link.md")
    git(root, "init", "-q")
    return root


def track(repo: Path, *paths: str) -> None:
    git(repo, "add", "-f", *paths)


def test_clean_repository_passes(repo):
    track(repo, ".")
    result = check(repo)
    assert result.returncode == 0, result.stderr
    assert "tree check passed" in result.stdout


@pytest.mark.parametrize("name, target", [("abs-link", "/usr/lib/python3/site-packages"),
                                          ("docs/escape", "../../elsewhere/file.txt"),
                                          ("up", "..")])
def test_symlink_leaving_the_repository_fails_naming_it(repo, name, target):
    os.symlink(target, repo / name)
    track(repo, ".")
    result = check(repo)
    assert result.returncode == 1
    assert f"git tracks {name}: a symlink to {target}, outside the repository" in result.stderr
    assert "readme-link" not in result.stderr                  # the inside link is fine


def test_tracked_venv_fails_naming_it(repo):
    (repo / ".venv" / "bin").mkdir(parents=True)
    (repo / ".venv" / "bin" / "python").write_text("#!/bin/sh\n")
    track(repo, ".")
    result = check(repo)
    assert result.returncode == 1
    assert "git tracks .venv/bin/python: a virtual environment is tracked" in result.stderr
    assert "git rm -r --cached .venv" in result.stderr


def test_venv_symlink_fails_twice(repo, tmp_path):
    """The original fault: .venv tracked as a symlink to an absolute path."""
    os.symlink(tmp_path / "venvs" / "spade", repo / ".venv")
    track(repo, ".venv")
    errors = check(repo).stderr.splitlines()
    assert errors[0].startswith("error: git tracks .venv: a virtual environment is tracked")
    assert errors[1].startswith(f"error: git tracks .venv: a symlink to {tmp_path}/venvs/spade")


def test_gitignore_ignores_venv_in_every_form(repo, tmp_path):
    shutil.copy(REPO / ".gitignore", repo / ".gitignore")
    track(repo, ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    for make in (lambda p: p.mkdir(), lambda p: p.write_text("x"),
                 lambda p: os.symlink(tmp_path, p)):
        venv = repo / ".venv"
        make(venv)
        if venv.is_dir() and not venv.is_symlink():
            (venv / "pyvenv.cfg").write_text("home = /x\n")
        git(repo, "add", "-A")
        status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain"],
                                capture_output=True, text=True, check=True).stdout
        assert status == "", status
        shutil.rmtree(venv) if venv.is_dir() and not venv.is_symlink() else venv.unlink()


# import name -> distribution, for every third-party module the code imports
DISTRIBUTIONS = {"cv2": "opencv-python-headless", "huggingface_hub": "huggingface_hub",
                 "nuscenes": "nuscenes-devkit", "numpy": "numpy", "onnx": "onnx",
                 "onnxruntime": "onnxruntime", "PIL": "Pillow", "pyquaternion": "pyquaternion",
                 "pytest": "pytest", "safetensors": "safetensors", "scipy": "scipy",
                 "tensorboard": "tensorboard", "torch": "torch", "tqdm": "tqdm", "transformers": "transformers", "yaml": "pyyaml"}


def test_every_third_party_import_is_declared_in_pyproject():
    import ast
    import re
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[<>=!~ \[]", r)[0].lower() for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        declared |= {re.split(r"[<>=!~ \[]", r)[0].lower() for r in extra}
    files = [p for p in REPO.rglob("*.py") if not {".venv", "data", "outputs"} & set(p.parts)]
    local = {p.stem for p in REPO.glob("*.py")} | {p.stem for p in (REPO / "tests").glob("*.py")}
    local |= {p.parent.name for p in REPO.glob("*/__init__.py")}
    imported = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - local - {"__future__"}
    unknown = sorted(third_party - set(DISTRIBUTIONS))
    assert not unknown, f"new third-party imports {unknown}: declare them in pyproject.toml " \
                        "and add them to DISTRIBUTIONS"
    undeclared = sorted(DISTRIBUTIONS[m] for m in third_party
                        if DISTRIBUTIONS[m].lower() not in declared)
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"
