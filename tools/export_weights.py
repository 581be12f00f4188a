"""Write a checkpoint's network weights alone (safetensors) and its config and provenance (JSON).

    python tools/export_weights.py -m CKPT --out model.safetensors [--config C] [key=value ...]
"""
from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from utils.checkpoint import CheckpointError  # noqa: E402
from utils.config import ConfigError  # noqa: E402

EPILOG = """Example: from a training run's checkpoint (weights, optimiser and RNG state) to the
weights alone, then evaluation and prediction from them:
  python tools/export_weights.py -m outputs/demo/run/checkpoints/latest.ckpt --out model.safetensors
  python eval.py -m model.safetensors --infos data/synthetic/nuscenes_radar_5sweeps_infos_val.pkl
  python tools/predict.py -m model.safetensors --image f.jpg --radar-points r.npy --intrinsics K.json --out pred/

--out X.safetensors gets X.json beside it: {"config": the full config the network runs with (the
checkpoint's own, or --config, or the defaults, then the overrides), "provenance": {source,
step, epoch (when the checkpoint has them), git_commit (of this code, when in a git checkout),
torch, date}}. eval.py, tools/predict.py, tools/export_onnx.py and utils.checkpoint.load_network
read the pair; without the JSON they use --config or the built-in defaults and say so.
-m takes the released format ({"network": state_dict}) too. See docs/tools.md, "Weights only"."""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--model", required=True, help="checkpoint (released or ours)")
    parser.add_argument("--out", required=True, type=Path, help="weights file, X.safetensors")
    parser.add_argument("--config", help="YAML config; default: the checkpoint's, else built-in defaults")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    args = parser.parse_args(argv)
    if args.out.suffix != ".safetensors":
        parser.error(f"--out must end in .safetensors (the loaders recognise the format by it), "
                     f"got {args.out}")
    return args


def git_commit() -> str | None:
    """HEAD of the checkout this tool runs from, '+dirty' when it has local changes; None
    outside git."""
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "-uno"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def main(argv=None) -> dict:
    args = parse_args(argv)
    import torch
    from safetensors.torch import save
    from utils.checkpoint import atomic_write, read_checkpoint
    from utils.config import config_to_dict
    from utils.predict_io import load_model
    try:
        model, cfg = load_model(args.model, args.config, args.overrides)   # checks the weights fit
        ckpt = read_checkpoint(args.model)
    except (CheckpointError, ConfigError) as err:
        sys.exit(f"error: {err}")
    provenance = {"source": str(Path(args.model).resolve()),
                  **{k: ckpt[k] for k in ("step", "epoch") if k in ckpt},
                  "git_commit": git_commit(), "torch": torch.__version__,
                  "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    meta = {"config": config_to_dict(cfg), "provenance": provenance}
    weights = {k: v.contiguous() for k, v in model.state_dict().items()}
    atomic_write(args.out, lambda f: f.write(save(weights)))
    meta_path = atomic_write(args.out.with_suffix(".json"),
                             lambda f: f.write(json.dumps(meta, indent=2).encode() + b"\n"))
    size_mb = args.out.stat().st_size / 1e6
    print(f"wrote {args.out} ({size_mb:.1f} MB, {len(weights)} tensors; {args.model}: "
          f"{Path(args.model).stat().st_size / 1e6:.1f} MB) and {meta_path}")
    return meta


if __name__ == "__main__":
    main()
