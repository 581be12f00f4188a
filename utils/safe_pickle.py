"""Read pickles of plain data without running code: info files (ours and released ones).

    with open(path, "rb") as f:
        records = safe_pickle.load(f, path)     # UnsafePickleError names the file and the global

A pickle calls whatever global it names; `RestrictedUnpickler.find_class` hands out only what
plain data needs: the builtin containers, numbers, strings and bytes, `collections.OrderedDict`,
and NumPy arrays, dtypes and scalars under the names both NumPy 1.x (`numpy.core.*`) and 2.x
(`numpy._core.*`) write (resolved to the installed NumPy's own). Any other global (`os.system`,
`builtins.eval`, a class with `__reduce__`, ...) is refused before it is called. Files written
with plain `pickle.dump` of such data load unchanged.
"""
from __future__ import annotations

import collections
import importlib
import pickle
from pathlib import Path
from typing import IO, Any, Callable, Dict, Tuple

import numpy as np

BUILTINS = ("dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray", "int",
            "float", "complex", "bool")
NUMPY_CORE = "numpy._core" if int(np.__version__.split(".")[0]) >= 2 else "numpy.core"
NUMPY_FUNCTIONS = {"multiarray": ("_reconstruct", "scalar"),   # arrays (protocol < 5), scalars
                   "numeric": ("_frombuffer",)}                # arrays (protocol 5)


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle names a global outside plain data."""


def _allowed() -> Dict[Tuple[str, str], Callable[..., Any]]:
    """(module, name) as written in a pickle -> the object it stands for."""
    import builtins
    allowed = {(module, name): getattr(builtins, name)
               for module in ("builtins", "__builtin__") for name in BUILTINS}
    allowed[("collections", "OrderedDict")] = collections.OrderedDict
    allowed[("_codecs", "encode")] = importlib.import_module("_codecs").encode  # bytes, protocol 2
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    for sub, names in NUMPY_FUNCTIONS.items():
        installed = importlib.import_module(f"{NUMPY_CORE}.{sub}")
        for era in ("numpy.core", "numpy._core"):
            allowed.update({(f"{era}.{sub}", name): getattr(installed, name) for name in names})
    return allowed


ALLOWED = _allowed()


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler of `file` (opened binary) that resolves only the ALLOWED globals; `source`
    names the file in the refusal."""

    def __init__(self, file: IO[bytes], source: str | Path):
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self.source} names the Python global {module}.{name}, which plain data never "
                "needs; refused without running it (loading it could run any code)") from None


def load(file: IO[bytes], source: str | Path) -> Any:
    """The object pickled in `file`, restricted to plain data (see the module docstring)."""
    return RestrictedUnpickler(file, source).load()
