"""Hostile or careless settings (issue 20 rows 5 and 7): every bad config value, YAML file or
override is one line naming the key or file (exit code 2 for train_DDP.py, 1 for eval.py and the
tools), a resume checkpoint beyond the run's steps is refused, and loader workers are sized to
the machine and shut down cleanly after a data error (stderr holds the one line alone)."""
import os
import subprocess
import sys

import pytest
import torch

import eval as eval_script
import train_DDP
from datasets.infos import entry_path, infos_filename, load_infos
from utils.config import ConfigError, load_config
from conftest import REPO
from tiny_world import linked_world, overrides, replace_file, tiny_world

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return tiny_world(tmp_path_factory.getbasetemp())


def _one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# ---- row 5: config values, one line naming the key, nothing written ----
BAD_VALUES = [
    ("train.lr_cosine=1e400", "train.lr_cosine", "finite"),
    ("train.lr_base=.nan", "train.lr_base", "finite"),
    ("data.max_depth_m=.inf", "data.max_depth_m", "finite"),
    ("loss.smooth_l1_beta_m=.nan", "loss.smooth_l1_beta_m", "finite"),
    ("train.weight_decay=-.inf", "train.weight_decay", "finite"),
    ("eval.ranges_m=[-10]", "eval.ranges_m", "at least 1"),
    ("eval.ranges_m=[]", "eval.ranges_m", "empty"),
    ("loss.stage_scales=[-1]", "loss.stage_scales", "1, 2, 4"),
    ("loss.stage_scales=[]", "loss.stage_scales", "empty"),
    ("loss.stage_scales=[4,3]", "loss.stage_scales", "1, 2, 4"),
    ("train.out_dir=", "train.out_dir", "empty"),
    ("data.disruption=bogus", "data.disruption", "released"),
    ("data.label_kind=bogus", "data.label_kind", "depth_png"),
    ("data.label_dir=x", "data.label_dir", "label_kind"),
    ("train.seed=-1", "train.seed", "at least 0"),
    ("train.lr_base=[", "train.lr_base", "YAML"),
    ("train.out_dir=!!python/object/apply:os.system [echo pwned]", "train.out_dir", "YAML"),
    ("train.lr_base=1 train.lr_base.x=2", "train.lr_base", "section"),
]


@pytest.mark.parametrize("override,key,says", BAD_VALUES, ids=[c[0] for c in BAD_VALUES])
def test_bad_config_value_is_one_line_exit_2(override, key, says, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)               # an empty out_dir would write here
    out = tmp_path / "run"
    argv = [f"data.train_infos={tmp_path / 'missing.pkl'}", f"train.out_dir={out}", *override.split(" ")]
    with pytest.raises(SystemExit) as exc:
        train_DDP.main(argv)
    line = _one_line(capsys.readouterr().err)
    assert exc.value.code == 2 and key in line and says in line, line
    assert sorted(os.listdir(tmp_path)) == [], "nothing may be written"


def _yaml_files(tmp_path):
    (tmp_path / "tag.yaml").write_text("train:\n  out_dir: !!python/object/apply:os.system [echo pwned]\n")
    (tmp_path / "self.yaml").write_text("base: self.yaml\ntrain:\n  epochs: 2\n")
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    (tmp_path / "latin1.yaml").write_bytes("train:\n  out_dir: r\xe9sultats\n".encode("latin-1"))
    (tmp_path / "broken.yaml").write_text("train: [\n")
    (tmp_path / "base_list.yaml").write_text("base: [a.yaml]\n")


BAD_FILES = [("tag.yaml", "python/object"), ("self.yaml", "cycle"), ("a.yaml", "cycle"),
             ("latin1.yaml", "UTF-8"), ("broken.yaml", "YAML"), ("base_list.yaml", "base")]


@pytest.mark.parametrize("name,says", BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_bad_config_file_is_one_line(name, says, tmp_path, capsys):
    _yaml_files(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / name)
    assert name in str(err.value) and says in str(err.value) and "\n" not in str(err.value), err.value
    with pytest.raises(SystemExit) as exc:
        train_DDP.main(["--config", str(tmp_path / name), f"train.out_dir={tmp_path / 'run'}"])
    line = _one_line(capsys.readouterr().err)
    assert exc.value.code == 2 and name in line, line


def test_config_choices_match_the_code():
    """The enums the config checks are the ones the data code accepts."""
    from datasets.augment import DISRUPTIONS
    from datasets.label_maps import LABEL_KINDS
    from utils.config import CHOICES, STAGE_SCALES
    assert CHOICES["data.disruption"] == DISRUPTIONS and CHOICES["data.label_kind"] == LABEL_KINDS
    assert STAGE_SCALES == (1, 2, 4)


@pytest.fixture(scope="module")
def weights_only(tmp_path_factory):
    """A released-format file without weights: enough for eval.py to reach its config."""
    path = tmp_path_factory.mktemp("weights") / "w.pth"
    torch.save({"network": {}}, path)
    return path


@pytest.mark.parametrize("override", ["eval.ranges_m=[-10]", "eval.ranges_m=[]", "train.lr_base=[",
                                      "eval.ranges_m=[.nan]", "data.disruption=bogus"])
def test_eval_refuses_bad_values_in_one_line(override, weights_only, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        eval_script.main(["-m", str(weights_only), "--quiet", override])
    assert exc.value.code not in (0, None) and override.split("=")[0] in str(exc.value.code), exc.value.code


@pytest.mark.parametrize("tool,argv", [
    ("benchmark", ["data", "--data-root", "x", "--infos", "y", "train.lr_base=["]),
    ("benchmark", ["train", "loss.stage_scales=[]"]),
    ("occlusion_radius", ["--data-root", "x", "--infos", "y", "eval.ranges_m=[0]"]),
    ("demo", ["--config", "CONFIG"]),
    ("ablation", ["train.lr_base=[", "--only", "full"]),
    ("science", ["--base", "CONFIG"]),
])
def test_tools_turn_config_errors_into_one_line(tool, argv, tmp_path):
    """Each tool that loads a Config: a bad value or file is `error: ...` and exit code 1."""
    import importlib
    (tmp_path / "c.yaml").write_text("base: c.yaml\n")
    argv = [str(tmp_path / "c.yaml") if a == "CONFIG" else a for a in argv]
    module = importlib.import_module(f"tools.{tool}")
    with pytest.raises(SystemExit) as exc:
        module.main(argv)
    assert isinstance(exc.value.code, str) and exc.value.code.startswith("error: "), exc.value.code
    assert "\n" not in exc.value.code


# ---- row 5: training settings that fail only at the first step or the resume ----
def test_batch_size_1_is_refused_before_training(world, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        train_DDP.main(overrides(world, tmp_path / "run") + ["train.batch_size=1"])
    line = _one_line(capsys.readouterr().err)
    assert exc.value.code == 2 and "train.batch_size" in line and "BatchNorm" in line, line


def test_resume_beyond_the_runs_steps_is_refused(world, tmp_path, capsys):
    from models import SpaDe
    from utils.checkpoint import save_checkpoint
    from utils.config import config_to_dict
    cfg = load_config(None, overrides(world, tmp_path / "run"))
    model = SpaDe()
    ckpt = tmp_path / "far.ckpt"
    save_checkpoint(ckpt, model, config=config_to_dict(cfg), optimizer=torch.optim.AdamW(model.parameters()),
                    epoch=0, step=10 ** 9, extra={})
    del model
    with pytest.raises(SystemExit) as exc:
        train_DDP.main(overrides(world, tmp_path / "run") + ["train.max_steps=2", "--resume", str(ckpt)])
    line = _one_line(capsys.readouterr().err)
    assert exc.value.code == 2 and "1000000000" in line and "train.max_steps" in line, line


# ---- row 7: loader workers ----
def test_workers_are_capped_at_the_usable_cores(monkeypatch, caplog):
    import warnings
    from torch.utils.data import DataLoader
    import datasets.workers as workers
    monkeypatch.setattr(workers, "usable_cpus", lambda: 2)
    options = workers.worker_options(4)
    assert options["num_workers"] == 2
    assert workers.worker_options(1)["num_workers"] == 1 and workers.worker_options(0) == {"num_workers": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
        DataLoader(list(range(4)), **workers.worker_options(4)).check_worker_number_rationality()


def test_data_error_in_a_worker_is_one_line_without_worker_tracebacks(world, tmp_path):
    """eval.py with the default loader workers on a copy of the tiny world whose second val
    image is garbage: the one error line, no 'Exception ignored' or worker traceback, and (on
    any machine) no warning that there are more workers than cores."""
    root = linked_world(world, tmp_path / "root")
    record = load_infos(world / infos_filename("val"))[1]
    image = entry_path(record["cam_infos"]["CAM_FRONT"])
    replace_file(root / image, b"\xff\xd8 not a jpeg at all" * 10)
    ckpt = tmp_path / "w.pth"
    from models import SpaDe
    torch.manual_seed(0)
    torch.save({"network": SpaDe().state_dict()}, ckpt)
    cmd = [sys.executable, str(REPO / "eval.py"), "-m", str(ckpt), "--data-root", str(root), "--infos",
           str(world / infos_filename("val")), "--quiet", "--batch-size", "1", "data.height=100",
           "data.width=180"]
    job = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONWARNINGS": "default"})
    err = "\n".join(line for line in job.stderr.splitlines() if not line.startswith(("INFO ", "WARNING ")))
    assert job.returncode == 1, job.stderr
    line = _one_line(err)
    assert line.startswith("error: ") and image.split("/")[-1] in line, line
    for bad in ("Exception ignored", "killed by signal", "suggested max"):
        assert bad not in job.stderr, job.stderr
