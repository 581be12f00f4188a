"""Strict JSON: every JSON file and JSON line this project writes goes through `dumps`, so no
output holds the bare `NaN` / `Infinity` tokens that Python's json module writes by default
(they are not JSON: jq, JavaScript, Go, Rust and most strict parsers refuse the whole file).

    text = dumps(summary, indent=2, reasons=NULL_REASONS)     # a str of strict JSON
    write_json(path, summary, reasons=NULL_REASONS)           # the same, written atomically
    summary = restore(json.loads(text))                       # read back: its nulls NaN again

Convention for a value that is not a finite number (a float NaN, +inf or -inf):
- it is written as `null`;
- why is recorded in an object `"nulls"` added to the OUTERMOST JSON object holding the value:
  the document itself, or, when the document is an array, the array's element (one JSON line is
  one document). Its keys are the values' JSON Pointers (RFC 6901) relative to that object, its
  values the reasons ("undefined: ..."):

      {"baseline_row_median": {"ldl": {"stripe_index": null, ...}, ...},
       "nulls": {"/baseline_row_median/ldl/stripe_index": "undefined: ..."}}

- the reason is that of the first entry of `reasons` (glob pattern matched against the pointer
  with fnmatch, where `*` also crosses `/`, e.g. "*/ldl/stripe_index" -> text) that matches,
  else a generic one naming the value;
- an object without `"nulls"` holds no null made here. A document that already has a `"nulls"`
  key, or a non-finite value outside any object (e.g. `[NaN]`), raises ValueError.

The text is then made by json.dumps(..., allow_nan=False), so a non-finite value that escaped
the conversion raises ValueError instead of writing invalid JSON. Readers take null as "no
value" (utils/engine/tables.py shows it as n/a); the in-memory data is not changed.
"""
from __future__ import annotations

import json
import math
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from utils.files import atomic_write

NULLS_KEY = "nulls"


def _pointer_token(key: Any) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


def _reason(pointer: str, value: float, reasons: Mapping[str, str]) -> str:
    for pattern, text in reasons.items():
        if fnmatchcase(pointer, pattern):
            return text
    shown = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return f"undefined: the computed value was {shown}, which JSON cannot hold"


def _convert(node: Any, pointer: str, nulls: Optional[Dict[str, str]], reasons: Mapping[str, str]) -> Any:
    """A copy of `node` with non-finite floats as None, their reasons added to `nulls` (None:
    no enclosing object yet)."""
    if isinstance(node, float) and not math.isfinite(node):
        if nulls is None:
            raise ValueError(f"{node} at {pointer or '/'} has no enclosing object to record why it is "
                             "null in; wrap the array in an object")
        nulls[pointer] = _reason(pointer, node, reasons)
        return None
    if isinstance(node, dict):
        if nulls is None:                         # the outermost object: it hosts the reasons
            own: Dict[str, str] = {}
            out = {k: _convert(v, f"/{_pointer_token(k)}", own, reasons) for k, v in node.items()}
            if own:
                if NULLS_KEY in node:
                    raise ValueError(f"the object at {pointer or '/'} already has a {NULLS_KEY!r} key, "
                                     "where the reasons for its null values would go")
                out[NULLS_KEY] = own
            return out
        return {k: _convert(v, f"{pointer}/{_pointer_token(k)}", nulls, reasons) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_convert(v, f"{pointer}/{i}", nulls, reasons) for i, v in enumerate(node)]
    return node


def strict(obj: Any, reasons: Optional[Mapping[str, str]] = None) -> Any:
    """A copy of `obj` following the module's convention (non-finite floats -> None, their
    reasons under "nulls"); `obj` itself is not changed."""
    return _convert(obj, "", None, reasons or {})


def dumps(obj: Any, *, reasons: Optional[Mapping[str, str]] = None, indent: Optional[int] = None,
          **kwargs: Any) -> str:
    """Strict JSON text of `obj` (see the module docstring); other keyword arguments go to
    json.dumps. Raises ValueError for a value that cannot be written strictly."""
    return json.dumps(strict(obj, reasons), indent=indent, allow_nan=False, **kwargs)


def write_json(path: str | Path, obj: Any, *, reasons: Optional[Mapping[str, str]] = None,
               indent: Optional[int] = 2) -> Path:
    """`dumps(obj)` and a newline into `path`, atomically (utils/files.py)."""
    data = (dumps(obj, reasons=reasons, indent=indent) + "\n").encode()
    return atomic_write(path, lambda f: f.write(data))


def restore(doc: Any) -> Any:
    """The inverse for a document read back (json.loads): the values its "nulls" name become
    NaN again and "nulls" is dropped (in an object, or in each object of an array), so a cached
    summary is the same in memory as a fresh one. Changes and returns `doc`."""
    for obj in (doc if isinstance(doc, list) else [doc]):
        if not isinstance(obj, dict) or not isinstance(obj.get(NULLS_KEY), dict):
            continue
        for pointer in obj.pop(NULLS_KEY):
            *parents, last = [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]
            node = obj
            for token in parents:
                node = node[int(token)] if isinstance(node, list) else node[token]
            if isinstance(node, list):
                node[int(last)] = float("nan")
            else:
                node[last] = float("nan")
    return doc
