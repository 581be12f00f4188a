"""Imports of packages that a part of the project needs and an install may lack.

    transformers = require("transformers", 'pip install -e ".[masks]"')
"""
from __future__ import annotations

import importlib
from types import ModuleType


class MissingDependencyError(ImportError):
    """A package needed for the requested work is not installed."""


def require(module: str, install: str) -> ModuleType:
    """Import `module`, or raise MissingDependencyError naming it and the `install` command."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingDependencyError(f"{module} is needed here but cannot be imported ({err}); "
                                     f"install it with {install}") from None
