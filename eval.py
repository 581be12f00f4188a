"""Evaluate a SpaDe checkpoint with the released protocol (LiDAR ground truth, 0-50/70/80 m, mm).

    python eval.py -m CKPT [--config C] [--data-root R] [--infos P] [--out results.json]
                   [--save-pred DIR] [--save-vis DIR] [--max-samples N] [--batch-size B] [key=value ...]
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

from datasets.nuscenes_dataset import RadarCameraDataset
from utils.checkpoint import CheckpointError
from utils.config import ConfigError
from utils.evaluate import evaluate, format_table, model_predictor, write_results
from utils.predict_io import load_model

EPILOG = """Configuration: defaults <- the checkpoint's own config (checkpoints written by
train_DDP.py carry it) or --config when given <- key=value overrides <- the flags below.
The released checkpoint format ({"network": state_dict}) is accepted too, and so are weights
exported by tools/export_weights.py (X.safetensors, config from X.json beside it).

--out writes the summary JSON (num_samples, mae_mm / rmse_mm per range, and dense / ldl
measures where the data has dense truth) and a per-image CSV beside it. --save-pred writes
<image basename>.png, uint16 millimetres (saturating at 65.535 m). --save-vis writes coloured
panels (image, radar, prediction, LiDAR, error)."""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--model", required=True,
                        help="checkpoint (released or ours), or X.safetensors from tools/export_weights.py")
    parser.add_argument("--config", help="YAML config; default: the checkpoint's, else built-in defaults")
    parser.add_argument("--data-root", help="nuScenes-format root (data.root)")
    parser.add_argument("--infos", help="info file to evaluate (data.val_infos)")
    parser.add_argument("--out", help="summary JSON path; the per-image CSV goes beside it")
    parser.add_argument("--save-pred", metavar="DIR", help="write predictions as uint16 mm PNGs")
    parser.add_argument("--save-vis", metavar="DIR", help="write coloured panels")
    parser.add_argument("--max-samples", type=int, help="evaluate the first N samples (eval.max_samples)")
    parser.add_argument("--batch-size", type=int, help="images per batch (eval.batch_size)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    return parser.parse_args(argv)


def flag_overrides(args: argparse.Namespace) -> list[str]:
    """The key=value overrides, then the flags that set config keys (flags win)."""
    flags = {"data.root": args.data_root, "data.val_infos": args.infos,
             "eval.max_samples": args.max_samples, "eval.batch_size": args.batch_size}
    return list(args.overrides) + [f"{k}={v}" for k, v in flags.items() if v is not None]


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        model, cfg = load_model(args.model, args.config, flag_overrides(args), device)
    except (CheckpointError, ConfigError) as error:
        sys.exit(f"error: {error}")
    if not Path(cfg.data.val_infos).is_file():
        sys.exit(f"error: info file {cfg.data.val_infos} not found; pass --infos or build it with "
                 "tools/create_infos.py")
    dataset = RadarCameraDataset(cfg, cfg.data.val_infos, mode="eval")
    result = evaluate(model_predictor(model, cfg.eval.optimized), dataset,
                      batch_size=cfg.eval.batch_size, num_workers=cfg.data.num_workers,
                      ranges_m=cfg.eval.ranges_m, max_samples=cfg.eval.max_samples, device=device,
                      save_pred_dir=args.save_pred, save_vis_dir=args.save_vis, progress=not args.quiet)
    print(format_table(result["summary"], title=f"{args.model} on {cfg.data.val_infos}"))
    if args.out:
        csv_path = write_results(result, args.out, checkpoint=str(args.model), infos=cfg.data.val_infos)
        print(f"wrote {args.out} and {csv_path}")
    return result["summary"]


if __name__ == "__main__":
    main()
