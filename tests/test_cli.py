"""Every entry point answers --help with its options and concrete examples (utils/cli.py shows
the defaults)."""
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENTRY_POINTS = ["eval", "train_DDP"] + sorted(f"tools.{p.stem}" for p in (REPO / "tools").glob("*.py")
                                              if p.stem != "__init__")


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_help_has_examples_and_defaults(module, capsys):
    with pytest.raises(SystemExit) as done:
        importlib.import_module(module).main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    examples = text.split("examples:\n", 1)
    assert len(examples) == 2, f"{module} --help has no examples"
    script = "train_DDP.py" if module == "train_DDP" else f"{module.replace('.', '/')}.py"
    assert f" {script}" in examples[1], f"{module}: the examples do not run {script}"
