"""Checkpoint formats: the released one and ours.

Released: a dict whose key `network` holds the SpaDe state_dict (see
../shared/reference/official_state_dict.tsv). Ours adds, under the same `network` key so that
either format feeds `eval.py`: `format_version`, `config`, `optimizer`, `scheduler`, `scaler`,
`epoch`, `step`, `rng` and `extra`. Everything is stored as tensors and plain Python values, so
our files load with `torch.load(weights_only=True)`, and `read_checkpoint` loads nothing else:
a file holding other Python objects could run code when unpickled and is refused with
CheckpointError (convert a trusted one with `tools/export_weights.py --trust-pickle`, the only
full unpickling in this code), as is a `network` holding anything but tensors. Files are
written atomically (utils/files.py): a crash never leaves a half-written checkpoint behind, only
possibly an orphaned `.<name>.<id>.tmp` that `remove_orphaned_temp_files` deletes. New files get the
permissions the user's umask gives (0644 under the usual 022), as any file the user creates.
`load_model` builds the network and its config from any of the formats (eval.py, tools/predict.py,
tools/export_onnx.py); `link_latest` and `prune_epoch_checkpoints` keep a run's folder.

Weights only (tools/export_weights.py): `X.safetensors` holds the state_dict alone; `X.json` beside
it holds `config` and `provenance`. `read_checkpoint` reads that pair as {"network", "config",
"provenance"}, so every loader takes it too.
"""
from __future__ import annotations

import ast
import json
import logging
import pickle
import random
import re
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np
import torch

from models import SpaDe
from utils.config import apply_mapping, config_from_dict, load_config, parse_overrides
from utils.files import atomic_link, atomic_write

FORMAT_VERSION = 1
log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """The checkpoint is missing, unreadable, or does not match the network."""


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Dict[str, Any]:
    """Load a checkpoint dict of either format, weights only (see the module docstring);
    `network` (names -> tensors) is always present in the result."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    if path.suffix == ".safetensors":
        return _read_weights_file(path, map_location)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc):
            refused = re.search(r"GLOBAL ([\w.]+)", str(exc))
            raise CheckpointError(
                f"checkpoint {path} holds Python objects beyond tensors and plain values"
                f"{f' ({refused.group(1)})' if refused else ''}; refused: unpickling them could run "
                f"any code. Only for a file you trust: python tools/export_weights.py -m {path} "
                "--trust-pickle --out X.safetensors rewrites it as weights only") from None
        raise _unreadable(path, exc) from exc
    except Exception as exc:  # not a torch file, corrupt zip, truncated file, ...
        raise _unreadable(path, exc) from exc
    return as_checkpoint(ckpt, path)


def _unreadable(path: Path, exc: Exception) -> CheckpointError:
    first = str(exc).splitlines()[0] if str(exc) else ""
    return CheckpointError(f"cannot read checkpoint {path} ({type(exc).__name__}: {first}); is it "
                           "a file written by torch.save?")


def as_checkpoint(ckpt: Any, path: str | Path) -> Dict[str, Any]:
    """The loaded object of checkpoint file `path` as a checkpoint dict whose `network` maps
    names to tensors (a `state_dict` key is taken as `network`, a DDP `module.` prefix dropped);
    anything else raises CheckpointError naming the file."""
    if isinstance(ckpt, dict) and "network" not in ckpt and "state_dict" in ckpt:
        ckpt = {**ckpt, "network": ckpt["state_dict"]}
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("network"), Mapping):
        raise CheckpointError(f"{path} is not a SpaDe checkpoint: expected a dict with key "
                              f"'network' holding the state_dict")
    net = dict(ckpt["network"])
    for key, value in net.items():
        if not (isinstance(key, str) and isinstance(value, torch.Tensor)):
            raise CheckpointError(f"{path}: network[{key!r}] is of type {type(value).__name__}, not a "
                                  "tensor; 'network' must hold the state_dict (names -> tensors)")
    if net and all(k.startswith("module.") for k in net):  # saved from a DDP wrapper
        net = {k[len("module."):]: v for k, v in net.items()}
    ckpt["network"] = net
    return ckpt


def _read_weights_file(path: Path, map_location: str | torch.device) -> Dict[str, Any]:
    """X.safetensors (+ X.json when present) -> {"network", "config", "provenance"}."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    try:
        network = load_file(path, device=str(map_location))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot read weights file {path} ({exc}); is it a file written "
                              "by tools/export_weights.py?") from exc
    meta_path = path.with_suffix(".json")
    if not meta_path.is_file():
        log.warning("%s has no %s beside it: the config comes from --config or the built-in "
                    "defaults", path, meta_path.name)
        return {"network": network}
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {meta_path} ({exc}); delete it to load {path} with "
                              "--config or the built-in defaults") from exc
    return {"network": network, "config": meta.get("config") or {},
            "provenance": meta.get("provenance", {})}


def load_network_state(model: torch.nn.Module, state: Mapping[str, torch.Tensor],
                       source: str = "checkpoint") -> None:
    """Strict load with one error that lists every missing, unexpected and mis-shaped tensor."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                        for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or mismatched:
        lines = [f"{source} does not match the network "
                 f"({len(missing)} missing, {len(unexpected)} unexpected, "
                 f"{len(mismatched)} shape mismatches):"]
        for title, items in (("missing", missing), ("unexpected", unexpected),
                             ("shape mismatch", mismatched)):
            lines += [f"  {title}: {item}" for item in items]
        raise CheckpointError("\n".join(lines))
    model.load_state_dict(state, strict=True)


def load_network(model: torch.nn.Module, path: str | Path,
                 map_location: str | torch.device = "cpu") -> Dict[str, Any]:
    """Load the weights of a checkpoint of either format into `model`; returns the checkpoint."""
    ckpt = read_checkpoint(path, map_location)
    load_network_state(model, ckpt["network"], source=str(path))
    return ckpt


def capture_rng_state() -> Dict[str, Any]:
    """Python, NumPy, torch (and CUDA) generator states as tensors and plain values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: Dict[str, Any] = {
        "python": repr(random.getstate()),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(_tuplify(ast.literal_eval(state["python"])))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuplify(value: Any) -> Any:
    return tuple(_tuplify(v) for v in value) if isinstance(value, (list, tuple)) else value


def save_checkpoint(path: str | Path, model: torch.nn.Module, *, config: Optional[Dict] = None,
                    optimizer: Optional[torch.optim.Optimizer] = None, scheduler: Any = None,
                    scaler: Any = None, epoch: int = 0, step: int = 0,
                    extra: Optional[Dict[str, Any]] = None) -> Path:
    """Write our format atomically; `model` may be wrapped in DDP (the wrapper is dropped)."""
    net = model.module if hasattr(model, "module") else model
    ckpt = {
        "format_version": FORMAT_VERSION,
        "network": net.state_dict(),
        "config": config or {},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "epoch": int(epoch),
        "step": int(step),
        "rng": capture_rng_state(),
        "extra": extra or {},
    }
    return atomic_write(path, lambda f: torch.save(ckpt, f))


def link_latest(path: Optional[Path]) -> None:
    """Make checkpoints/latest.ckpt (beside `path`) the same file as `path`, atomically."""
    if path is not None:
        atomic_link(path, path.with_name("latest.ckpt"))


def prune_epoch_checkpoints(ckpt_dir: Path, keep: int) -> None:
    """Delete all but the newest `keep` epoch_N.ckpt files (keep <= 0: delete none); newest by
    epoch number (epoch_1000 after epoch_999)."""
    if keep > 0:
        numbered = [(int(m.group(1)), p) for p in Path(ckpt_dir).glob("epoch_*.ckpt")
                    if (m := re.fullmatch(r"epoch_(\d+)\.ckpt", p.name))]
        for _, old in sorted(numbered)[:-keep]:
            old.unlink(missing_ok=True)


def load_model(checkpoint: str | Path, config_path: Optional[str | Path] = None,
               overrides: Sequence[str] = (), device: str | torch.device = "cpu",
               ckpt: Optional[Dict[str, Any]] = None):
    """(eval-mode SpaDe, Config) for a released checkpoint, ours, or exported weights
    (`X.safetensors`, see utils/checkpoint.py), configured as eval.py does: the file's own config
    (ours and exported weights with their JSON carry it) unless `config_path` is given, else the
    defaults (a warning says so, with the data it points at); then the key=value `overrides`.
    `ckpt`: the checkpoint already read (tools/export_weights.py --trust-pickle), default
    read_checkpoint(checkpoint). Raises CheckpointError / ConfigError naming the file or key."""
    ckpt = read_checkpoint(checkpoint) if ckpt is None else ckpt
    cfg = load_config(config_path) if config_path or not ckpt.get("config") else config_from_dict(ckpt["config"])
    apply_mapping(cfg, parse_overrides(overrides))
    if not config_path and not ckpt.get("config"):
        log.warning("no config in %s: using the built-in defaults%s -> data.root=%s, data.val_infos=%s; "
                    "for nuScenes pass --config configs/spade_nuscenes.yaml --data-root DIR", checkpoint,
                    " and the overrides" if overrides else "", cfg.data.root, cfg.data.val_infos)
    model = SpaDe(radar_injection=cfg.model.radar_injection)
    load_network_state(model, ckpt["network"], source=str(checkpoint))
    return model.to(device).eval(), cfg
