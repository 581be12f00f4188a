"""Evaluate a SpaDe checkpoint with the released protocol (LiDAR ground truth, 0-50/70/80 m, mm)."""
from __future__ import annotations

import argparse
import logging
import sys
from contextlib import ExitStack
from pathlib import Path

import torch

from datasets.infos import InfoFileError
from datasets.io import DataFileError
from datasets.build import build_dataset
from datasets.workers import error_message
from utils.checkpoint import CheckpointError
from utils.files import OutputWriteError
from utils.cli import make_parser
from utils.config import ConfigError, check_config, config_to_dict
from utils.engine.evaluators import evaluators_for
from utils.engine.evaluate import (EvaluationError, csv_path_for, evaluate, format_table, model_predictor,
                            write_results)
from utils.checkpoint import load_model
from utils.run_lock import RunLock, RunLockedError

# Errors of the settings, the data or the outputs: one line naming the file or key, exit code 1.
USER_ERRORS = (CheckpointError, ConfigError, DataFileError, InfoFileError, EvaluationError,
               OutputWriteError, RunLockedError)

EXAMPLES = """
python eval.py -m outputs/demo/run/checkpoints/latest.ckpt --out outputs/demo/eval.json
python eval.py -m checkpoints/model.ckpt --config configs/spade_nuscenes.yaml --data-root data/nuscenes \\
    --infos data/nuscenes_radar_5sweeps_infos_val.pkl --out outputs/results.json
python eval.py -m outputs/model.safetensors --save-pred outputs/preds/ --save-vis outputs/vis/ --vis-every 10 eval.batch_size=8
python eval.py -m checkpoints/model.ckpt --config configs/spade_nuscenes.yaml --data-root data/nuscenes \\
    --infos data/nuscenes_radar_5sweeps_infos_val.pkl --out outputs/surround.json data.cameras=all data.radars=all
"""
EPILOG = """Configuration: defaults <- the checkpoint's own config (checkpoints written by
train_DDP.py carry it) or --config when given <- key=value overrides <- the flags below.
The released checkpoint format ({"network": state_dict}) is accepted too, and so are weights
exported by tools/export_weights.py (X.safetensors, config from X.json beside it).

--out X.json writes the summary JSON (num_samples, mae_mm / rmse_mm per range, dense / ldl
measures where the data has dense truth, the config, and the provenance: git commit and library
versions) and the per-image CSV X.csv beside it. Every (key frame, camera) image of
data.cameras counts once in the pooled numbers; per_camera holds the same summary for each
camera's images alone, the CSV names each image's camera, and the console shows a row per camera
when there are several. --save-pred writes <image basename>.png,
uint16 millimetres (saturating at 65.535 m). --save-vis writes coloured panels (image, radar,
prediction, LiDAR, error). Every file is written atomically; each output is locked for the run
(a second eval.py writing the same one is refused), and checked writable before the model runs."""


def parse_args(argv=None) -> argparse.Namespace:
    parser = make_parser(__doc__, EXAMPLES, EPILOG)
    parser.add_argument("-m", "--model", required=True,
                        help="checkpoint (released or ours), or X.safetensors from tools/export_weights.py")
    parser.add_argument("--config", help="YAML config; default: the checkpoint's, else built-in defaults")
    parser.add_argument("--data-root", help="nuScenes-format root (data.root)")
    parser.add_argument("--infos", help="info file to evaluate (data.val_infos)")
    parser.add_argument("--out", help="summary JSON path X.json; the per-image CSV X.csv goes beside it")
    parser.add_argument("--save-pred", metavar="DIR", help="write predictions as uint16 mm PNGs")
    parser.add_argument("--save-vis", metavar="DIR", help="write coloured panels")
    parser.add_argument("--vis-every", type=int, default=1, metavar="N",
                        help="--save-vis: a panel for every N-th image only (default: %(default)s)")
    parser.add_argument("--vis-scale", type=float, default=0.5, metavar="S",
                        help="--save-vis: resize panels by S (default: %(default)s; a 900x1600 "
                             "panel at 1.0 is about 4.5 MB)")
    parser.add_argument("--max-samples", type=int, help="evaluate the first N samples (eval.max_samples)")
    parser.add_argument("--batch-size", type=int, help="images per batch (eval.batch_size)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    args = parser.parse_intermixed_args(argv)
    if args.out:
        try:
            csv_path_for(args.out)
        except ValueError as err:
            parser.error(f"--out: {err}")
    return args


def flag_overrides(args: argparse.Namespace) -> list[str]:
    """The key=value overrides, then the flags that set config keys (flags win)."""
    flags = {"data.root": args.data_root, "data.val_infos": args.infos,
             "eval.max_samples": args.max_samples, "eval.batch_size": args.batch_size}
    return list(args.overrides) + [f"{k}={v}" for k, v in flags.items() if v is not None]


def claim_outputs(args: argparse.Namespace, stack: ExitStack) -> None:
    """Lock each output for this run (X.json.lock beside --out, DIR/.lock in the folders): a
    second eval.py on the same output is refused, and an output that cannot be written fails
    here, before the evaluation runs."""
    claims = [(f"--out {args.out}", Path(f"{args.out}.lock"))] if args.out else []
    claims += [(f"{flag} {folder}", Path(folder) / ".lock")
               for flag, folder in (("--save-pred", args.save_pred), ("--save-vis", args.save_vis)) if folder]
    if args.out and Path(args.out).is_dir():
        sys.exit(f"error: --out {args.out} is a folder; give the summary's file name (X.json)")
    for what, lock in claims:
        try:
            stack.enter_context(RunLock(lock, what, f"choose another {what.split()[0]}"))
        except (PermissionError, FileExistsError, NotADirectoryError, IsADirectoryError) as err:
            sys.exit(f"error: cannot write {what} ({err.strerror}: {err.filename}); choose a writable place")


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with ExitStack() as stack:
        try:
            claim_outputs(args, stack)
            return run(args, device)
        except USER_ERRORS as error:
            sys.exit(f"error: {error_message(error)}")


def run(args: argparse.Namespace, device: torch.device) -> dict:
    """Load, evaluate, print and write (the outputs are claimed)."""
    model, cfg = load_model(args.model, args.config, flag_overrides(args), device)
    check_config(cfg)                   # keys that must fit together, after the overrides
    if not Path(cfg.data.val_infos).is_file():
        raise InfoFileError(f"info file {cfg.data.val_infos} not found; pass --infos or build it with "
                            "tools/create_infos.py")
    dataset = build_dataset(cfg, "val")
    evaluators = evaluators_for(cfg.data.root, cfg.eval.ranges_m, args.save_pred, args.save_vis,
                                args.vis_every, args.vis_scale)
    result = evaluate(model_predictor(model, cfg.eval.optimized), dataset, evaluators,
                      batch_size=cfg.eval.batch_size, num_workers=cfg.data.num_workers,
                      max_samples=cfg.eval.max_samples, device=device, progress=not args.quiet)
    print(format_table(result["summary"], title=f"{args.model} on {cfg.data.val_infos}"))
    if args.out:
        csv_path = write_results(result, args.out, checkpoint=str(args.model), infos=cfg.data.val_infos,
                                 config=config_to_dict(cfg))
        print(f"wrote {args.out} and {csv_path}")
    return result["summary"]


if __name__ == "__main__":
    main()
