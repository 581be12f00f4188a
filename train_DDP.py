"""Train SpaDe: `torchrun --nproc_per_node N train_DDP.py --config C [key=value ...]`, or plainly
`python train_DDP.py --config C` for one process. See docs/training.md."""
from __future__ import annotations

import argparse
import logging
import sys

from datasets.io import DataFileError
from utils.checkpoint import CheckpointError
from utils.config import ConfigError, load_config
from utils.distributed import cleanup
from utils.train_loop import NonFiniteLossError, train

EPILOG = """examples:
  python train_DDP.py --config configs/synthetic_demo.yaml
  torchrun --nproc_per_node 8 train_DDP.py --config configs/spade_nuscenes.yaml data.root=/data/nuscenes
  torchrun --nproc_per_node 8 --max-restarts 3 train_DDP.py --config configs/spade_nuscenes.yaml
      (a restarted worker resumes from <train.out_dir>/checkpoints/latest.ckpt by itself)

Backend NCCL on GPUs, gloo on CPU. train.batch_size is per process. Checkpoints, TensorBoard
logs (tb/) and train_log.jsonl go to train.out_dir."""


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config (configs/*.yaml); defaults when omitted")
    parser.add_argument("--resume", help="checkpoint to continue from (same as train.resume=PATH); "
                        "without it a run continues from <out_dir>/checkpoints/latest.ckpt if present")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. train.batch_size=4 data.root=/data/nuscenes")
    args = parser.parse_args(argv)
    overrides = list(args.overrides) + ([f"train.resume={args.resume}"] if args.resume else [])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        train(load_config(args.config, overrides))
    except (ConfigError, CheckpointError, DataFileError, FileNotFoundError, NonFiniteLossError) as error:
        sys.exit(f"error: {error}")      # the message names the file or key and the fix
    finally:
        cleanup()


if __name__ == "__main__":
    main()
