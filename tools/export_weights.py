"""Write a checkpoint's network weights alone (safetensors) and its config and provenance (JSON)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from utils.checkpoint import CheckpointError  # noqa: E402
from utils.cli import make_parser  # noqa: E402
from utils.config import ConfigError  # noqa: E402
from utils.jsonio import dumps  # noqa: E402

EXAMPLES = """
python tools/export_weights.py -m outputs/demo/run/checkpoints/latest.ckpt --out outputs/model.safetensors
    then: python eval.py -m outputs/model.safetensors --infos data/synthetic/nuscenes_radar_5sweeps_infos_val.pkl
          python tools/predict.py -m outputs/model.safetensors --image f.jpg --radar-points r.npy --intrinsics K.json --out outputs/pred/
python tools/export_weights.py -m released.ckpt --config configs/spade_nuscenes.yaml --out outputs/spade_released.safetensors
"""
EPILOG = """A training run's checkpoint holds weights, optimiser and RNG state (446 MB); the weights
alone are 148 MB.
--out X.safetensors gets X.json beside it: {"config": the full config the network runs with (the
checkpoint's own, or --config, or the defaults, then the overrides), "provenance": {source,
step, epoch (when the checkpoint has them), git_commit (of this code, when in a git checkout),
date, host and library versions (utils/provenance.py)}}. eval.py, tools/predict.py, tools/export_onnx.py and utils.checkpoint.load_network
read the pair; without the JSON they use --config or the built-in defaults and say so.
-m takes the released format ({"network": state_dict}) too. See docs/tools.md, "Weights only".
A checkpoint holding Python objects beyond tensors and plain values is refused here as everywhere
(unpickling can run any code); --trust-pickle, only for a file you trust, loads it with full
pickle (the only place this code does) and rewrites it as weights only, which loads safely."""


def parse_args(argv=None) -> argparse.Namespace:
    parser = make_parser(__doc__, EXAMPLES, EPILOG)
    parser.add_argument("-m", "--model", required=True, help="checkpoint (released or ours)")
    parser.add_argument("--out", required=True, type=Path, help="weights file, X.safetensors")
    parser.add_argument("--config", help="YAML config; default: the checkpoint's, else built-in defaults")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="only for a file you trust: load it with full pickle (runs any code it "
                             "holds) and rewrite it as weights-only safetensors")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    args = parser.parse_intermixed_args(argv)
    if args.out.suffix != ".safetensors":
        parser.error(f"--out must end in .safetensors (the loaders recognise the format by it), "
                     f"got {args.out}")
    return args


def read_trusted(path: str) -> dict:
    """--trust-pickle: the checkpoint at `path` loaded with full pickle, which runs whatever code
    the file holds (the only full unpickling in this code); raises CheckpointError naming it."""
    import torch
    from utils.checkpoint import as_checkpoint
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    print(f"--trust-pickle: loading {path} with full pickle", file=sys.stderr)
    try:
        return as_checkpoint(torch.load(path, map_location="cpu", weights_only=False), path)
    except CheckpointError:
        raise
    except Exception as exc:  # whatever the pickle's own code raises
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise CheckpointError(f"cannot load checkpoint {path} with full pickle ({type(exc).__name__}: "
                              f"{first})") from exc


def main(argv=None) -> dict:
    args = parse_args(argv)
    from safetensors.torch import save
    from utils.checkpoint import read_checkpoint
    from utils.files import atomic_write
    from utils.config import config_to_dict
    from utils.checkpoint import load_model
    from utils.provenance import provenance
    try:
        ckpt = read_trusted(args.model) if args.trust_pickle else read_checkpoint(args.model)
        model, cfg = load_model(args.model, args.config, args.overrides, ckpt=ckpt)  # checks the fit
    except (CheckpointError, ConfigError) as err:
        sys.exit(f"error: {err}")
    meta = {"config": config_to_dict(cfg),
            "provenance": {"source": str(Path(args.model).resolve()),
                           **{k: int(ckpt[k]) for k in ("step", "epoch") if k in ckpt}, **provenance()}}
    weights = {k: v.contiguous() for k, v in model.state_dict().items()}
    atomic_write(args.out, lambda f: f.write(save(weights)))
    meta_path = atomic_write(args.out.with_suffix(".json"),
                             lambda f: f.write(dumps(meta, indent=2).encode() + b"\n"))
    size_mb = args.out.stat().st_size / 1e6
    print(f"wrote {args.out} ({size_mb:.1f} MB, {len(weights)} tensors; {args.model}: "
          f"{Path(args.model).stat().st_size / 1e6:.1f} MB) and {meta_path}")
    return meta


if __name__ == "__main__":
    main()
