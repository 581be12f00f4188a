"""One typed configuration object, loaded from YAML and overridden by `key=value` arguments.

    cfg = load_config("configs/spade_nuscenes.yaml", ["train.batch_size=4", "data.root=/nu"])

Every section is a dataclass; an unknown key, a value of the wrong type or out of its range
(MINIMUM, MAXIMUM, CHOICES, non-finite floats, the list checks of LIST_CHECKS) raises
`ConfigError`, one line naming the key (or the YAML file). Values given on the command line are
parsed as YAML scalars (`true`, `3`, `1e-3`, `[1, 2]`), then checked against the field's declared
type. YAML is read with `yaml.safe_load` only (a `!!python/...` tag is an error), as UTF-8; a
`base:` chain that comes back to a file is an error.
"""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import yaml


class ConfigError(ValueError):
    """A configuration key is unknown or its value has the wrong type."""


# The nuScenes rig, clockwise from the front (data.cameras / data.radars; `all` means every one).
NUSCENES_CAMERAS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK", "CAM_BACK_LEFT",
                    "CAM_FRONT_LEFT")
NUSCENES_RADARS = ("RADAR_FRONT", "RADAR_FRONT_RIGHT", "RADAR_BACK_RIGHT", "RADAR_BACK_LEFT",
                   "RADAR_FRONT_LEFT")


@dataclass
class DataConfig:
    """Where the data lives and how a sample is made (docs/spade.md sections 1-2)."""
    root: str = "data/synthetic"                 # data root holding samples/, sweeps/, seg_mask/
    train_infos: str = "data/synthetic/nuscenes_radar_5sweeps_infos_train.pkl"
    val_infos: str = "data/synthetic/nuscenes_radar_5sweeps_infos_val.pkl"
    height: int = 900                            # training crop / network input size, pixels
    width: int = 1600
    max_radar_points: int = 200                  # radar point features, zero padded
    max_depth_m: float = 80.0                    # training LiDAR range filter (0 < z < max)
    # Occlusion filter radius (px at 1600 px width, scaled with image width). The released config
    # never defines it. Projected LiDAR neighbours along a ring are 8.5 px apart (median; p90
    # 10.3 px) and rings ~31 px apart whatever the distance, so at 4 px almost no point has a
    # neighbour and the filter drops 0.03% of points (real slice); 10 px reaches the next point of
    # the occluding surface and drops 1.3% (see-through points at object edges), while a flat wall
    # (neighbours at nearly the same depth) is kept. tools/occlusion_radius.py, docs/data.md.
    occlusion_radius_px: float = 10.0
    occlusion_rel_threshold: float = 0.1         # drop when (z - min z) / z exceeds this
    disruption: str = "released"                 # released | geometric | none
    radar_columns: bool = True                   # radar disruption: depth down the whole column
    mask_supervision: bool = True                # load seg_mask/ targets for the mask loss
    seg_mask_dir: str = ""                       # "" = <root>/seg_mask
    # Training label (datasets/label_maps.py): 'lidar' = the released single key-frame sweep;
    # 'depth_png' = <label_dir>/<image>.png uint16 mm maps (label_dir under root unless absolute):
    # depth_dense (the synthetic exact truth) or dense_labels/<preset> (tools/make_dense_labels.py).
    label_kind: str = "lidar"
    label_dir: str = ""
    radar_sweeps: int = 1                        # radar sweeps accumulated (1 = released; datasets/radar_sweeps.py)
    skip_bad_samples: bool = True                # train mode: report and skip corrupt files
    # One sample per (key frame, camera); a camera's radar input is every listed radar's points
    # through each radar's own pose (datasets/nuscenes_dataset.py). `all`: the six / the five.
    # The released pair is [CAM_FRONT] with [RADAR_FRONT]; any other choice also drops radar
    # points (and eval LiDAR points) at depth <= 0, which the released in-image test mirrors in.
    cameras: List[str] = field(default_factory=lambda: ["CAM_FRONT"])
    radars: List[str] = field(default_factory=lambda: ["RADAR_FRONT"])
    # Loader worker processes per DataLoader; lowered (one info line) to the CPU cores this
    # process may use (os.sched_getaffinity), as more workers than cores only compete for them.
    num_workers: int = 4


@dataclass
class ModelConfig:
    radar_injection: bool = True                 # radar-position MLP added to stage features


@dataclass
class LossConfig:
    smooth_l1_beta_m: float = 1.0
    mask_weight: float = 1.0                     # 0 turns the mask loss off
    stage_scales: List[int] = field(default_factory=lambda: [4, 2, 1])


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 10                         # per rank
    lr_base: float = 1e-3                        # lr = lr_cosine * 0.5 * (1 + cos(pi t/T)) + lr_base
    lr_cosine: float = 3e-3
    weight_decay: float = 4e-8
    seed: int = 0
    bf16: bool = False                           # autocast on CUDA only
    channels_last: bool = False                  # NHWC weights and inputs (same function; on
                                                 # 2 CPU cores 11-28 % less time per step)
    grad_clip: float = 0.0                       # 0 = off
    max_nonfinite_in_row: int = 5
    max_steps: int = 0                           # >0: train this many steps (and anneal the lr
                                                 # over them) instead of epochs x steps per epoch
    log_every: int = 20                          # TensorBoard scalars every N steps
    image_every: int = 500                       # TensorBoard pictures every N steps (0 = never)
    val_every: int = 0                           # released metrics on a fixed handful of
                                                 # data.val_infos frames every N steps (0 = never)
    val_samples: int = 8                         # that handful: evenly spaced over the val set
    ckpt_every: int = 0                          # also write latest.ckpt every N steps (0 = only
                                                 # at epoch ends and at the end of training)
    keep_epoch_ckpts: int = 0                    # keep the last N epoch_NNN.ckpt (0 = all)
    out_dir: str = "runs/spade"                  # must not be empty (not the current folder)
    resume: str = ""                             # path of a checkpoint to continue from


@dataclass
class EvalConfig:
    batch_size: int = 4
    max_samples: int = 0                         # 0 = all
    ranges_m: List[int] = field(default_factory=lambda: [50, 70, 80])
    optimized: bool = True                       # folded-BN inference path


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# Lower bounds of numeric keys; a value below raises ConfigError naming the key.
MINIMUM: Dict[str, float] = {
    **dict.fromkeys(("data.height", "data.width", "data.max_radar_points", "train.epochs",
                     "train.batch_size", "train.max_nonfinite_in_row", "train.log_every",
                     "train.val_samples", "eval.batch_size", "data.radar_sweeps"), 1),
    **dict.fromkeys(("data.num_workers", "data.max_depth_m", "data.occlusion_radius_px",
                     "train.lr_base", "train.lr_cosine", "train.weight_decay", "train.grad_clip",
                     "train.max_steps", "train.image_every", "train.val_every", "train.ckpt_every",
                     "train.keep_epoch_ckpts", "eval.max_samples", "train.seed",
                     "data.occlusion_rel_threshold", "loss.smooth_l1_beta_m", "loss.mask_weight"), 0),
}
# Upper bounds (train.seed: numpy and torch generators take seeds below 2**32 everywhere).
MAXIMUM: Dict[str, float] = {"train.seed": 2 ** 32 - 1}
# Keys of a fixed set of values (datasets/augment.py DISRUPTIONS, datasets/label_maps.py LABEL_KINDS).
CHOICES: Dict[str, tuple] = {"data.disruption": ("released", "geometric", "none"),
                             "data.label_kind": ("lidar", "depth_png")}
# The stages the network predicts depth at (models/spade.py: depth_s4, depth_s2, depth_s1).
STAGE_SCALES = (1, 2, 4)
NOT_EMPTY = ("train.out_dir",)               # "" would write into the current folder
# A number as YAML 1.1 leaves it a string: `1e-3` (no dot), `5E+2`.
FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _check_value(key: str, value: Any, tp: Any) -> Any:
    """Return `value` converted to `tp` where lossless (int -> float), else raise ConfigError."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_value(key, value, arg)
            except ConfigError:
                pass
        raise ConfigError(f"config key '{key}': {value!r} is not a {tp}")
    if origin in (list, List, Sequence):
        (item_tp,) = typing.get_args(tp) or (Any,)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        return [_check_value(f"{key}[{i}]", v, item_tp) for i, v in enumerate(value)]
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value) if abs(value) < 2 ** 1023 else math.inf
    elif tp is float and isinstance(value, str) and FLOAT_TEXT.fullmatch(value.strip()):
        value = float(value)
    if tp is float and isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"config key '{key}': must be a finite number, got {value!r}")
        return value
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if tp in (int, float) and isinstance(value, bool):
        raise ConfigError(f"config key '{key}': expected {tp.__name__}, got bool {value!r}")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"config key '{key}': expected {_type_name(tp)}, got "
                          f"{type(value).__name__} {value!r}")
    return value


def upgrade_legacy_keys(values: Dict[str, Any]) -> Dict[str, Any]:
    """A config mapping of older code (checkpoints, YAML) in today's keys: `data.dense_label`
    (true: train on depth_dense/) became data.label_kind=depth_png + data.label_dir=depth_dense."""
    data = values.get("data")
    if not (isinstance(data, dict) and "dense_label" in data):
        return values
    data = dict(data)
    if data.pop("dense_label"):
        data.setdefault("label_kind", "depth_png")
        data.setdefault("label_dir", "depth_dense")
    return {**values, "data": data}


def apply_mapping(obj: Any, values: Dict[str, Any], prefix: str = "") -> None:
    """Set the fields of dataclass `obj` from a nested mapping, checking names and types."""
    if isinstance(obj, Config):
        values = upgrade_legacy_keys(values)
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"unknown config key '{full}' (known in this section: "
                              f"{', '.join(sorted(names))})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{full}' is a section; give a mapping")
            apply_mapping(current, value, full + ".")
        else:
            if full in CHANNEL_KEYS:
                value = _channels(full, value)
            value = _check_value(full, value, hints[key])
            _check_range(full, value)
            setattr(obj, key, value)


# Keys naming channels: a list of them, or one name, or `all` (the whole rig, in rig order).
CHANNEL_KEYS = {"data.cameras": NUSCENES_CAMERAS, "data.radars": NUSCENES_RADARS}


def _channels(key: str, value: Any) -> Any:
    """`all` -> every channel of `key`; a single name -> [name]; lists unchanged."""
    if value == "all":
        return list(CHANNEL_KEYS[key])
    return [value] if isinstance(value, str) else value


def _check_list(key: str, value: List[Any], allowed: str, ok) -> None:
    if not value:
        raise ConfigError(f"config key '{key}': must not be empty; give {allowed}")
    if len(set(value)) != len(value) or not all(ok(v) for v in value):
        raise ConfigError(f"config key '{key}': {value!r}; give {allowed}, each once")


# Keys holding lists: (what is allowed, the check of one item).
LIST_CHECKS = {
    "eval.ranges_m": ("a list of ranges in metres, each at least 1 (e.g. [50, 70, 80])", lambda v: v >= 1),
    "loss.stage_scales": (f"a list of the network's stages {', '.join(map(str, STAGE_SCALES))} "
                          "(released: [4, 2, 1])", lambda v: v in STAGE_SCALES),
    **{key: (f"`all` or a list of {', '.join(names)}", names.__contains__)
       for key, names in CHANNEL_KEYS.items()},
}


def _check_range(key: str, value: Any) -> None:
    """ConfigError naming `key` when `value` is outside its MINIMUM / MAXIMUM / CHOICES /
    LIST_CHECKS / NOT_EMPTY."""
    if key in MINIMUM and value < MINIMUM[key]:
        raise ConfigError(f"config key '{key}': must be at least {MINIMUM[key]:g}, got {value!r}")
    if key in MAXIMUM and value > MAXIMUM[key]:
        raise ConfigError(f"config key '{key}': must be at most {MAXIMUM[key]:g}, got {value!r}")
    if key in CHOICES and value not in CHOICES[key]:
        raise ConfigError(f"config key '{key}': {value!r} is not one of {', '.join(CHOICES[key])}")
    if key in LIST_CHECKS:
        _check_list(key, value, *LIST_CHECKS[key])
    if key in NOT_EMPTY and not str(value).strip():
        raise ConfigError(f"config key '{key}': must not be empty (it would be the current folder); "
                          "give a folder")


def check_config(cfg: "Config") -> None:
    """The checks between keys (after all layers and overrides): data.label_kind and
    data.label_dir fit together. load_config and config_from_dict run it; run it again after
    applying overrides to a config by hand (apply_mapping)."""
    kind, folder = cfg.data.label_kind, cfg.data.label_dir
    if kind == "lidar" and folder:
        raise ConfigError(f"config key 'data.label_dir': {folder!r} is set but data.label_kind is "
                          "'lidar' (the released single-sweep label); set data.label_kind=depth_png to "
                          "train on that folder's maps, or data.label_dir= (empty)")
    if kind == "depth_png" and not folder:
        raise ConfigError("config key 'data.label_dir': data.label_kind=depth_png needs it (e.g. "
                          "depth_dense for the synthetic world's exact truth, dense_labels/<preset> "
                          "for tools/make_dense_labels.py)")


def parse_overrides(overrides: Sequence[str]) -> Dict[str, Any]:
    """['train.lr_base=1e-3', 'data.root=x'] -> nested dict with YAML-parsed values."""
    nested: Dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"config key '{key}': the value {raw!r} is not valid YAML "
                              f"({_yaml_problem(err)})") from None
        parts = key.split(".")
        node = nested
        for i, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"config key '{'.'.join(parts[:i + 1])}' is given a value and "
                                  f"is used as a section by '{item}'")
        if isinstance(node.get(parts[-1]), dict):
            raise ConfigError(f"config key '{key}' is used as a section and given the value {raw!r}")
        node[parts[-1]] = value
    return nested


def load_config(path: Optional[str | Path] = None, overrides: Sequence[str] = ()) -> Config:
    """Defaults <- YAML file at `path` (may name a `base:` file, resolved beside it) <- overrides."""
    cfg = Config()
    if path is not None:
        for file, layer in _yaml_layers(Path(path)):
            try:
                apply_mapping(cfg, layer)
            except ConfigError as err:
                raise ConfigError(f"config file {file}: {err}") from None
    apply_mapping(cfg, parse_overrides(overrides))
    check_config(cfg)
    return cfg


def _yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML error in one line: its problem and where."""
    problem = getattr(err, "problem", None) or str(err).strip().splitlines()[0]
    mark = getattr(err, "problem_mark", None)
    return " ".join(str(problem).split()) + (f" at line {mark.line + 1}, column {mark.column + 1}" if mark else "")


def _yaml_layers(path: Path, chain: tuple = ()) -> List[tuple]:
    """[(file, mapping)] of `path` and its `base:` files, the deepest base first."""
    if not path.is_file():
        raise ConfigError(f"config file {path} not found (see configs/ for the shipped ones)")
    resolved = path.resolve()
    if resolved in chain:
        names = " -> ".join(str(p) for p in chain + (resolved,))
        raise ConfigError(f"config file {path}: its base: files form a cycle ({names}); remove one base:")
    try:
        data = yaml.safe_load(path.read_bytes().decode("utf-8")) or {}
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML for this code ({_yaml_problem(err)}); "
                          "only plain YAML is read, no !!python tags") from None
    except OSError as err:
        raise ConfigError(f"config file {path} cannot be read ({err.strerror})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    base = data.pop("base", None)
    if base is not None and not (isinstance(base, str) and base.strip()):
        raise ConfigError(f"config file {path}: base: must name one YAML file beside it, got {base!r}")
    layers = _yaml_layers(path.parent / base, chain + (resolved,)) if base else []
    return layers + [(path, data)]


def config_to_dict(cfg: Config) -> Dict[str, Any]:
    return dataclasses.asdict(cfg)


def flatten_config(values: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """A nested config dict -> {"section.key": value}."""
    flat: Dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def changed_keys(values: Dict[str, Any], reference: Dict[str, Any]) -> Dict[str, tuple]:
    """{"section.key": (reference value, value)} for every key whose values differ (a key only
    one side has counts, with None on the other)."""
    a, b = flatten_config(reference), flatten_config(values)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def config_from_dict(values: Dict[str, Any]) -> Config:
    cfg = Config()
    apply_mapping(cfg, values)
    check_config(cfg)
    return cfg


def normalized_config_dict(values: Dict[str, Any]) -> Dict[str, Any]:
    """A config dict of any code version as today's full dict: legacy keys upgraded, keys added
    since filled with their defaults (which reproduce the older behaviour); returned unchanged
    when it does not load (keys of newer code)."""
    try:
        return config_to_dict(config_from_dict(values))
    except ConfigError:
        return values
