"""Train SpaDe: `torchrun --nproc_per_node N train_DDP.py --config C [key=value ...]`, or plainly
`python train_DDP.py --config C` for one process. See docs/training.md."""
from __future__ import annotations

import logging

from datasets.infos import InfoFileError
from datasets.io import DataFileError
from datasets.workers import error_message
from utils.checkpoint import CheckpointError
from utils.files import OutputWriteError
from utils.cli import make_parser
from utils.config import ConfigError, load_config
from utils.deps import MissingDependencyError
from utils.distributed import cleanup, user_error_exit
from utils.run_lock import RunLockedError
from utils.engine.train import NonFiniteLossError, ResumeMismatchError, train

# Errors of the settings, the data or the machine that a restart cannot mend: one line that names
# the file or key and the fix, and under torchrun the whole job stops (no --max-restarts retry).
USER_ERRORS = (ConfigError, CheckpointError, DataFileError, InfoFileError, FileNotFoundError,
               NonFiniteLossError, ResumeMismatchError, RunLockedError, OutputWriteError,
               MissingDependencyError)

EXAMPLES = """
python train_DDP.py --config configs/synthetic_demo.yaml
python train_DDP.py --config configs/spade_nuscenes.yaml data.root=/data/nuscenes   # the paper's run
torchrun --nproc_per_node 8 --max-restarts 3 train_DDP.py --config configs/spade_nuscenes.yaml
    (a restarted worker resumes from <train.out_dir>/checkpoints/latest.ckpt by itself)
python train_DDP.py --config configs/synthetic_demo.yaml --resume outputs/demo/run/checkpoints/latest.ckpt train.max_steps=800
"""
EPILOG = """Backend NCCL on GPUs, gloo on CPU. train.batch_size is per process. Checkpoints, TensorBoard
logs (tb/), train_log.jsonl, skips.jsonl, config.yaml and run_info.json go to train.out_dir.
An error of the settings or the data (unknown key, bad file, empty split, out_dir in use by
another run, ...) is one line, exit code 2; under torchrun it stops the whole job at once."""


def main(argv=None) -> None:
    parser = make_parser(__doc__, EXAMPLES, EPILOG)
    parser.add_argument("--config", help="YAML config (configs/*.yaml); defaults when omitted")
    parser.add_argument("--resume", help="checkpoint to continue from (same as train.resume=PATH), "
                        "also one trained with other settings; without it a run continues from "
                        "<out_dir>/checkpoints/latest.ckpt if present and of this run's settings")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. train.batch_size=4 data.root=/data/nuscenes")
    args = parser.parse_intermixed_args(argv)
    overrides = list(args.overrides) + ([f"train.resume={args.resume}"] if args.resume else [])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        train(load_config(args.config, overrides))
    except USER_ERRORS as error:
        user_error_exit(f"error: {error_message(error)}")      # the message names the file or key and the fix
    finally:
        cleanup()


if __name__ == "__main__":
    main()
