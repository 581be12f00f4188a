"""Docs that run: every command of the ```bash and ```python blocks of README.md and docs/*.md
runs on the tiny synthetic world (tests/tiny_world.py) and exits 0, unless EXEMPT says why not
(docs/tools.md, "Docs that run"). Each command runs in a fresh folder laid out like the repository:
links to the code, data/synthetic = data/nuscenes = the tiny world (linked, so that outputs stay
in the folder; left out for a command that writes data/synthetic itself) with its info files also
in data/, and the user files of FILES that it reads. Commands on the real nuScenes slice
(../shared/nuscenes-real) skip when it is absent."""
import functools
import importlib.util
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, shared, torch_threads
from tiny_world import HEIGHT, WIDTH, linked_world, tiny_world

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
CODE = ["configs", "datasets", "models", "tools", "utils", "eval.py", "train_DDP.py"]
TRAIN = "data/synthetic/nuscenes_radar_5sweeps_infos_train.pkl"

# documented text -> what runs instead (a callable gets the session's DocWorld), and why
SUBSTITUTIONS = {
    "=/data/nuscenes": ("=data/nuscenes", "a server's absolute data root: the folder's data/nuscenes"),
    "/shared/runs/spade": ("outputs/runs/spade", "a cluster's shared disk: a folder of the run"),
    "--nnodes 2": ("--nnodes 1", "one machine: the two-node job runs as one node"),
    "node0:29500": ("localhost:0", "the rendezvous host: this machine, a free port"),
    "--nproc_per_node 8": ("--nproc_per_node 1", "no 8 GPUs: one CPU process (gloo)"),
    "OMP_NUM_THREADS=2": ("OMP_NUM_THREADS=1", "two processes share the 2 CI cores"),
    "/models/segformer-b5-ade": (lambda w: str(w.segformer), "no downloaded model: a "
                                 "save_pretrained folder of a random-weight SegFormer-B0"),
    "/tmp/masks": ("masks", "outputs stay in the run's folder"),
    "--data-root R --infos P": (f"--data-root data/synthetic --infos {TRAIN}", "placeholders"),
    "make_dense_labels.py ...": (f"make_dense_labels.py --data-root data/synthetic --infos {TRAIN}",
                                 "'...': the data root and info file of the command above"),
    "n008-...__CAM_FRONT__1535639716662720": (lambda w: w.val_name, "a nuScenes image name: "
                                              "the tiny world's first val frame"),
    "918265ec...": (lambda w: w.val_token, "a nuScenes sample token: the same frame's"),
    ".venv/bin/python": ("python", "the repository's virtual environment: this interpreter"),
    "../shared/nuscenes-real": (lambda w: str(w.real_root), "the real slice beside the repository "
                                "(tests/conftest.py `shared`); the command skips when it is absent"),
    "/tmp/infos": ("infos", "outputs stay in the run's folder (its info file: FILES)"),
}

# user files named in the docs -> files made once per session, or kept from the documented
# command that writes them (the first at the documented path, the others beside it), and what
FILES = {
    "model.ckpt": (["model.ckpt"], "seeded random weights + the demo config at the tiny size"),
    "checkpoints/model.ckpt": (["model.ckpt"], "the same checkpoint"),
    "outputs/demo/run/checkpoints/latest.ckpt": (["model.ckpt"], "the same checkpoint"),
    "old_run.pth": (["model.ckpt"], "the same checkpoint (--trust-pickle reads any torch.save file)"),
    "outputs/model.safetensors": (["model.safetensors", "model.json"], "tools/export_weights.py of it"),
    "frame.jpg": (["frame.jpg"], "the first val frame's CAM_FRONT image"),
    "K.json": (["K.json"], "its calibrated_sensor record"),
    "radar.pcd": (["radar.pcd"], "its RADAR_FRONT key-frame .pcd"),
    "E.json": (["E.json"], "RADAR_FRONT -> CAM_FRONT"),
    "radar_cam.npy": (["radar_cam.npy"], "the .pcd's points in the camera frame"),
    "outputs/spade.onnx": (["spade.onnx"], "tools/export_onnx.py of the checkpoint at the frame's size"),
    "infos/nuscenes_radar_5sweeps_infos_val.pkl": (["real_val.pkl"], "the real slice's val info "
                                                   "file, kept from `create_infos.py --out-dir infos`"),
}

# entry point (or entry point and sub-command) -> arguments added (flags before the command's first
# key=value, key=values after it, so that they win), and why
TINY = [f"data.height={HEIGHT}", f"data.width={WIDTH}", "data.num_workers=0"]
SIZE = ["--height", str(HEIGHT), "--width", str(WIDTH)]
TINY_TRAIN = TINY + ["train.batch_size=2", "train.max_steps=1", "train.val_every=0"]
OVERRIDES = {
    "train_DDP.py": (TINY_TRAIN, "one step of batch 2 (batch 1 fails in ASPP's batch norm)"),
    "tools/science.py": (["--rows", "sparse_released", "--seeds", "1", *TINY_TRAIN],
                         "one row, one seed, one step: the suite's code, not its budget"),
    "eval.py": (TINY, "the tiny world's size, no loader processes"),
    "tools/export_onnx.py": (SIZE, "the tiny size"),
    "tools/make_dense_labels.py": (["--workers", "1"], "2 CI cores"),
    "tools/gen_seg_masks.py": (["--workers", "0"], "no decoding processes for 4 images"),
    "tools/make_synthetic.py": (["--scenes", "1", "--samples-per-scene", "2", *SIZE, "--workers", "1",
                                 "camera.sweeps=false"], "2 key frames at the tiny size, no camera sweeps"),
    "tools/benchmark.py data": (["--samples", "1", "--repeats", "1"], "one sample, one call: the "
                                "code path, not a timing"),
    "tools/benchmark.py model": ([*SIZE, "--iters", "1", "--warmup", "1", "--threads", "1"],
                                 "one round at the tiny size on one thread (2 CI cores)"),
    "tools/benchmark.py surround": ([*SIZE, "--iters", "1", "--warmup", "0", "--threads", "1"],
                                    "one round at the tiny size on one thread (2 CI cores)"),
    "tools/surround.py": (["--seeds", "1", *TINY_TRAIN, "data.root=data/synthetic", f"data.train_infos={TRAIN}",
                           f"data.val_infos={TRAIN.replace('train', 'val')}"],
                          "one seed of one step per arm on the tiny world (its CAM_FRONT pairs; the "
                          "surround world is not generated)"),
    "tools/benchmark.py train": ([*SIZE, "--iters", "1", "--warmup", "0", "--threads", "1", "--workers", "0"],
                                 "one step of batch 2 at the tiny size, one thread, no loader processes"),
}

# pattern (re.search on the documented command) -> why it does not run here
EXEMPT = {
    r"^make (demo|test)$": "CI runs them itself (`make test` would run this test again)",
    r"^make science$": "(re)builds .venv, then runs python tools/science.py: the lines below",
    r"gen_seg_masks\.py (?!.*(--model|--random-init))": "downloads the hub model: no network "
                                                        "here (the --model and --random-init lines run)",
    r"^pytest ": "the suite runs its tests itself (tests/test_inference.py's CUDA test skips "
                 "without CUDA); a pytest inside pytest would run them twice",
    r"--device cuda": None if torch.cuda.is_available() else "needs a CUDA device: none here",
}


@dataclass(frozen=True)
class Command:
    where: str          # doc:line
    kind: str           # bash or python
    text: str           # one command (bash: joined, comments stripped) or the python block

    def __str__(self):
        return self.where


def block_commands(where: str, kind: str, lines: list) -> list:
    """The commands of one block: its (number, line) pairs."""
    if kind == "python":
        return [Command(f"{where}:{lines[0][0]}", kind, "\n".join(line for _, line in lines))]
    commands, start, text = [], None, ""
    for number, line in lines:
        start = start or number
        text += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            tokens = shlex.split(text, comments=True)
            cuts = [-1] + [i for i, t in enumerate(tokens) if t in (";", "&&")] + [len(tokens)]
            commands += [Command(f"{where}:{start}", kind, shlex.join(tokens[a + 1:b]))
                         for a, b in zip(cuts, cuts[1:]) if b > a + 1]
            start, text = None, ""
    return commands


def doc_commands() -> list:
    """Every command of the ```bash / ```python blocks of DOCS (plain ``` blocks show trees and
    formulas)."""
    commands = []
    for doc in DOCS:
        where, kind, lines = doc.relative_to(REPO).as_posix(), None, []
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            fence = re.match(r"```(\w*)", line)
            if fence and kind is None:
                kind, lines = fence.group(1), []
            elif fence:
                if kind in ("bash", "python"):
                    commands += block_commands(where, kind, lines)
                kind = None
            elif kind is not None:
                lines.append((number, line))
    return commands


COMMANDS = doc_commands()


class DocWorld:
    """The tiny world and the user files of FILES, made once per session on demand."""

    def __init__(self, base: Path):
        self.world = tiny_world(base)
        self.files = base / "doc_files"
        self.files.mkdir(exist_ok=True)
        from datasets.infos import infos_filename, load_infos
        self.record = load_infos(self.world / infos_filename("val"))[0]
        self.val_name = Path(self.record["cam_infos"]["CAM_FRONT"]["filename"]).stem
        self.val_token = self.record["sample_token"]

    @property
    def real_root(self) -> Path:
        """The real nuScenes slice, or skip the test."""
        return shared("nuscenes-real", "v1.0-trainval")

    @functools.cached_property
    def segformer(self) -> Path:
        import transformers
        from datasets.seg_masks import build_random_segformer
        folder = self.files / "segformer"
        build_random_segformer("b0", input_hw=(128, 128)).model.save_pretrained(folder)
        processor = getattr(transformers, "SegformerImageProcessorPil", transformers.SegformerImageProcessor)
        processor(size={"height": 128, "width": 128}).save_pretrained(folder)
        return folder

    @functools.cache
    def file(self, name: str) -> Path:
        path = self.files / name
        if not path.exists():
            with torch_threads(1):
                {"model.ckpt": self._checkpoint, "model.safetensors": self._weights,
                 "model.json": self._weights, "spade.onnx": self._onnx,
                 "real_val.pkl": self._real_infos}.get(name, self._frame)()
        return path

    def _checkpoint(self):
        from models import SpaDe
        from utils.checkpoint import save_checkpoint
        from utils.config import config_to_dict, load_config
        torch.manual_seed(0)
        cfg = load_config(REPO / "configs" / "synthetic_demo.yaml", TINY)
        save_checkpoint(self.files / "model.ckpt", SpaDe(), config=config_to_dict(cfg))

    def _weights(self):
        from tools import export_weights
        export_weights.main(["-m", str(self.file("model.ckpt")),
                             "--out", str(self.files / "model.safetensors")])

    def _onnx(self):
        from models.onnx_export import export_onnx
        from utils.checkpoint import load_model
        export_onnx(load_model(self.file("model.ckpt"))[0], self.files / "spade.onnx", HEIGHT, WIDTH)

    def _real_infos(self):
        """What `create_infos.py --data-root REAL --out-dir infos` writes, for a command run alone."""
        from nuscenes.nuscenes import NuScenes
        from datasets.infos import create_infos, save_infos, split_scenes
        infos = create_infos(NuScenes("v1.0-trainval", str(self.real_root), verbose=False),
                             split_scenes("v1.0-trainval"), progress=False)
        save_infos(infos["val"], self.files / "real_val.pkl")

    def _frame(self):
        from nuscenes.utils.data_classes import RadarPointCloud
        from datasets import geometry
        from datasets.infos import entry_path, entry_poses
        cam, radar = self.record["cam_infos"]["CAM_FRONT"], self.record["radar_infos"]["RADAR_FRONT"][0]
        shutil.copyfile(self.world / entry_path(cam), self.files / "frame.jpg")
        shutil.copyfile(self.world / entry_path(radar), self.files / "radar.pcd")
        (self.files / "K.json").write_text(json.dumps(cam["calibrated_sensor"]))
        radar_to_cam = geometry.rigid_inverse(entry_poses(cam)[0]) @ entry_poses(radar)[0]
        (self.files / "E.json").write_text(json.dumps({"matrix": radar_to_cam.tolist()}))
        points = RadarPointCloud.from_file(str(self.files / "radar.pcd")).points[:3].T
        np.save(self.files / "radar_cam.npy", geometry.transform_points(radar_to_cam, points))

    def layout(self, folder: Path, text: str) -> list:
        """folder: the code, data/ and the FILES that `text` reads; returns those it writes."""
        for name in CODE:
            (folder / name).symlink_to(REPO / name)
        from datasets.infos import infos_filename
        (folder / "data").mkdir()
        makes_world = re.search(r"--out data/synthetic(\s|$)", text)     # make_synthetic.py
        if not makes_world:
            linked_world(self.world, folder / "data" / "synthetic")
            (folder / "data" / "synthetic" / "depth_dense").symlink_to(self.world / "depth_dense")
        (folder / "data" / "nuscenes").symlink_to("synthetic")
        for name in (infos_filename("train"), infos_filename("val"), "splits.json"):
            for dest in ("data",) if makes_world else ("data", "data/synthetic"):
                shutil.copyfile(self.world / name, folder / dest / name)
        written = [p for p in FILES if writes(text, p)]
        for doc_path in FILES:
            if doc_path in text and doc_path not in written:    # `--out X` is written, unless checked
                for name, path in in_folder(folder, doc_path):
                    path.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(self.file(name), path)
        return written

    def keep(self, folder: Path, written: list) -> None:
        """The FILES a command wrote, for the commands that read them (no second export)."""
        for doc_path in written:
            for name, path in in_folder(folder, doc_path):
                if not (self.files / name).exists():
                    shutil.copyfile(path, self.files / name)


def writes(text: str, doc_path: str) -> bool:
    """`--out doc_path` (unless --skip-export checks it) or `--out-dir` its folder."""
    folder = re.escape(Path(doc_path).parent.as_posix())
    return re.search(rf"--out {re.escape(doc_path)}\b(?!.*--skip-export)|--out-dir {folder}/?(\s|$)",
                     text) is not None


def in_folder(folder: Path, doc_path: str) -> list:
    """(made name, path in folder) of FILES[doc_path]: the first at doc_path, the others beside it."""
    first, *others = FILES[doc_path][0]
    return [(first, folder / doc_path)] + [(name, (folder / doc_path).parent / name) for name in others]


@pytest.fixture(scope="session")
def doc_world(tmp_path_factory) -> DocWorld:
    return DocWorld(tmp_path_factory.getbasetemp())


def exempt(command: Command):
    return next((why for pattern, why in EXEMPT.items() if why and re.search(pattern, command.text)), None)


def substituted(text: str, world: DocWorld) -> str:
    for old, (new, _) in SUBSTITUTIONS.items():
        if old in text:
            text = text.replace(old, new(world) if callable(new) else new)
    return text


def is_key_value(token: str) -> bool:
    return re.fullmatch(r"[\w.]+=.*", token) is not None


def argv_env(command: Command, text: str):
    """(argv, environment additions) of a command: `python` is this interpreter, `torchrun`
    torch.distributed.run; the OVERRIDES of its entry point added."""
    if command.kind == "python":
        return [sys.executable, "-c", text], {}
    tokens, env = shlex.split(text), {}
    while is_key_value(tokens[0]):
        env.update([tokens.pop(0).split("=", 1)])
    program = {"python": [sys.executable], "torchrun": [sys.executable, "-m", "torch.distributed.run"]}
    assert tokens[0] in program, f"{command}: `{tokens[0]}` neither runs here nor matches EXEMPT"
    at = next((i for i, t in enumerate(tokens) if t.endswith(".py")), 0)
    entry, args = tokens[at], tokens[at + 1:]
    if args and f"{entry} {args[0]}" in OVERRIDES:      # a sub-command's own arguments
        entry, args = f"{entry} {args[0]}", args[1:]
        at += 1
    extra = OVERRIDES.get(entry, ([], ""))[0]
    cut = next((i for i, t in enumerate(args) if is_key_value(t)), len(args))
    argv = (program[tokens[0]] + tokens[1:at + 1] + args[:cut] + [t for t in extra if not is_key_value(t)]
            + args[cut:] + [t for t in extra if is_key_value(t)])
    return argv, env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@functools.cache
def run(argv: tuple, env: tuple, world: DocWorld, text: str) -> subprocess.CompletedProcess:
    """One run per distinct command (README and docs/ repeat some), in a fresh folder."""
    with tempfile.TemporaryDirectory(prefix="doc_") as folder:
        written = world.layout(Path(folder), text)
        environ = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
                   "PET_MASTER_PORT": str(free_port()), **dict(env)}
        job = subprocess.run(argv, cwd=folder, env=environ, capture_output=True, text=True, timeout=600)
        if job.returncode == 0:
            world.keep(Path(folder), written)
        return job


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_doc_command_runs(command, doc_world):
    why = exempt(command)
    if why:
        pytest.skip(f"EXEMPT: {why}")
    if "gen_seg_masks.py" in command.text and importlib.util.find_spec("transformers") is None:
        pytest.skip("the masks extra (transformers) is not installed")
    text = substituted(command.text, doc_world)
    argv, env = argv_env(command, text)
    job = run(tuple(argv), tuple(env.items()), doc_world, text)
    assert job.returncode == 0, (f"{command}: {shlex.join(argv)} exited {job.returncode}\n"
                                 f"{(job.stdout + job.stderr)[-4000:]}")


def test_tables_match_the_docs():
    """Every EXEMPT, SUBSTITUTIONS, FILES and OVERRIDES entry still applies to a doc command."""
    texts = [c.text for c in COMMANDS]
    stale = [p for p in EXEMPT if not any(re.search(p, t) for t in texts)]
    stale += [k for k in [*SUBSTITUTIONS, *FILES] if not any(k in t for t in texts)]
    bash = [f" {c.text} " for c in COMMANDS if c.kind == "bash"]
    stale += [k for k in OVERRIDES if not any(f" {k} " in text for text in bash)]
    assert not stale, f"no doc command matches {stale}"
    assert {c.kind for c in COMMANDS} == {"bash", "python"}
