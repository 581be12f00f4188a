"""Benchmarks, one sub-command each; every one prints a human table, then a final JSON line.
Figures and the machines they were measured on: docs/benchmarks.md."""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.cli import HelpFormatter, make_parser  # noqa: E402   (no numpy: threads are set in main)

EXAMPLES = {
    "data": """
        python tools/benchmark.py data --data-root ../shared/nuscenes-real \\
            --infos /tmp/infos/nuscenes_radar_5sweeps_infos_val.pkl --mode train --samples 40 --repeats 5 \\
            --reference --stand-in-masks
        """,
    "model": """
        python tools/benchmark.py model --device cpu --height 900 --width 1600 --batch 1 --iters 7 --threads 2
        python tools/benchmark.py model --device cuda --iters 20 --warmup 3 --bf16 --compile max-autotune-no-cudagraphs
        """,
    "surround": """
        python tools/benchmark.py surround --device cpu --height 900 --width 1600 --iters 3 --threads 2
        """,
    "train": """
        python tools/benchmark.py train --device cpu --height 225 --width 400 --batch 4 --iters 4 --channels-last
        python tools/benchmark.py train --device cuda --height 900 --width 1600 --batch 10 --workers 4 \\
            --infos data/nuscenes_radar_5sweeps_infos_train.pkl --data-root data/nuscenes
        """,
    "wall": """
        git clone . /tmp/fresh && python tools/benchmark.py wall --cwd /tmp/fresh \\
            --record docs/figures/make_test_cpu.json -- make test
        """,
    "figures": """
        python tools/benchmark.py figures            # do the docs quote exactly what docs/figures holds?
        python tools/benchmark.py figures --write    # rewrite their tables from the records
        """,
}


def add_command(sub, name: str, summary: str, description: str):
    """A sub-command parser with the shared --help layout and its examples."""
    examples = EXAMPLES[name]
    parser = sub.add_parser(name, help=summary, description=description, formatter_class=HelpFormatter,
                            epilog=make_parser("", examples).epilog)
    if name != "figures":
        parser.add_argument("--record", metavar="PATH", default=None,
                            help="also write the result with its command, machine, load and commit "
                                 "to PATH (docs/figures/<name>.json: the figures the docs quote)")
    return parser


# ---- data: sample preparation (utils/bench/data.py) ---------------------------------------------
def add_data_command(sub) -> None:
    p = add_command(sub, "data", "time the preparation of dataset samples on one CPU thread",
                       "Time RadarCameraDataset samples (image, LiDAR, radar, mask and "
                                   "augmentation) in one process with one thread; --reference also "
                                   "times the released code's way (devkit point classes, per-point "
                                   "KD-tree loop, PIL augmentation) and prints the ratio. The last "
                                   'line is JSON: {"ms_per_sample": ...}.')
    p.add_argument("--data-root", required=True, help="nuScenes root holding samples/")
    p.add_argument("--infos", required=True, help="info file made by tools/create_infos.py")
    p.add_argument("--mode", choices=("train", "eval"), default="train")
    p.add_argument("--samples", type=int, default=20, help="samples to time (cycling the file)")
    p.add_argument("--repeats", type=int, default=3,
                   help="calls per sample; its fastest counts (robust to other load on the machine)")
    p.add_argument("--reference", action="store_true", help="also time the released approach")
    p.add_argument("--config", default=None, help="YAML config (default: built-in defaults)")
    p.add_argument("--stand-in-masks", action="store_true",
                   help="train mode on a root without seg_mask/: time blocky stand-in masks "
                        "written to a temporary folder")
    p.add_argument("overrides", nargs="*", help="config overrides key=value, e.g. data.disruption=geometric")
    p.set_defaults(run=run_data)


def run_data(args) -> dict:
    from utils.bench.data import benchmark_data, format_data_table
    from utils.config import load_config
    cfg = load_config(args.config, args.overrides)
    result = benchmark_data(args.data_root, args.infos, args.mode, args.samples, args.reference,
                            cfg, args.stand_in_masks, args.repeats)
    print(format_data_table(result))
    summary = {"ms_per_sample": round(result["ours"]["ms_per_sample"], 2),
               "cpu_ms_per_sample": round(result["ours"]["cpu_ms_per_sample"], 2), "mode": args.mode}
    if "reference" in result:
        summary.update(reference_ms_per_sample=round(result["reference"]["ms_per_sample"], 2),
                       speedup=round(result["speedup"], 2), cpu_speedup=round(result["cpu_speedup"], 2))
    return summary


# ---- model: SpaDe.predict, reference against fused (utils/bench/model.py) -----------------------
def add_shape_args(p, height: int, width: int, batch: int, iters: int) -> None:
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--height", type=int, default=height, help="input height, px")
    p.add_argument("--width", type=int, default=width, help="input width, px")
    p.add_argument("--batch", type=int, default=batch, help="batch size")
    p.add_argument("--iters", type=int, default=iters, help="timed rounds")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")


def add_reuse_arg(p) -> None:
    p.add_argument("--reuse-freed-buffers", action="store_true",
                   help="glibc keeps freed tensors for reuse, as in a process that built a "
                        "RadarCameraDataset (eval.py, tools/predict.py --infos): fewer page faults on CPU")


def apply_reuse_arg(args) -> None:
    if args.reuse_freed_buffers:
        from datasets.workers import reuse_freed_buffers
        reuse_freed_buffers()


def add_model_command(sub) -> None:
    p = add_command(sub, "model", "time SpaDe.predict: the reference path against the fused one",
                       "Time SpaDe.predict with optimized=False (forward with BN, both "
                                   "decoders: the reference) and the fused depth-only copy of "
                                   "models/inference.py, interleaved in one process, on random "
                                   "weights with randomised BN and realistic random inputs. Prints "
                                   "medians, FPS, GFLOP, TFLOP/s, the speed-up and the largest "
                                   'output difference; the last line is JSON: {"fused_s": ...}.')
    add_shape_args(p, 900, 1600, 1, 5)
    p.add_argument("--no-reference", action="store_true", help="time the fused path only")
    p.add_argument("--checkpoint", default=None, help="weights to load instead of random ones")
    p.add_argument("--no-channels-last", action="store_true", help="fused: NCHW tensors")
    p.add_argument("--deconv-as-shuffle", action="store_true",
                   help="fused: transposed convs as 1x1 conv + pixel shuffle")
    p.add_argument("--no-fold-upsample", action="store_true",
                   help="fused: G2/G3 stems on the materialised upsampled feature")
    p.add_argument("--bf16", action="store_true", help="fused: bfloat16 autocast (for CUDA)")
    p.add_argument("--compile", default="", metavar="MODE",
                   help='fused: torch.compile mode, e.g. "default", "max-autotune-no-cudagraphs", '
                        '"reduce-overhead" (CUDA graphs); empty = eager')
    p.add_argument("--tf32", action="store_true", help="CUDA: allow TF32 in fp32 convs/matmuls")
    add_reuse_arg(p)
    p.set_defaults(run=run_model)


def run_model(args) -> dict:
    import torch
    from models.inference import InferenceOptions
    from utils.bench.model import benchmark_model, format_model_table, summary
    torch.set_num_threads(args.threads)
    apply_reuse_arg(args)
    options = InferenceOptions(channels_last=not args.no_channels_last,
                               deconv_as_shuffle=args.deconv_as_shuffle,
                               fold_upsample=not args.no_fold_upsample, bf16=args.bf16,
                               compile_mode=args.compile)
    result = benchmark_model(args.device, args.height, args.width, args.batch, args.iters,
                             args.warmup, options, not args.no_reference, args.checkpoint, args.tf32)
    print(format_model_table(result))
    return summary(result)


# ---- surround: one image against a surround key frame's batch (utils/bench/model.py) ------------
def add_surround_command(sub) -> None:
    p = add_command(sub, "surround", "time SpaDe.predict on one image against a key frame's six",
                    "Time SpaDe.predict's default fused path (as tools/predict.py runs it) on one "
                    "image and on one batch of --batch images (a surround key frame: 6), "
                    "interleaved in one process, on random weights with randomised BN and realistic "
                    "random inputs. Prints medians, seconds per image and the ratio (target: under "
                    '--batch); the last line is JSON: {"ratio": ...}.')
    add_shape_args(p, 900, 1600, 6, 3)
    add_reuse_arg(p)
    p.set_defaults(run=run_surround)


def run_surround(args) -> dict:
    import torch
    from utils.bench.model import benchmark_surround, format_surround_table, surround_summary
    torch.set_num_threads(args.threads)
    apply_reuse_arg(args)
    result = benchmark_surround(args.device, args.height, args.width, args.batch, args.iters,
                                args.warmup)
    print(format_surround_table(result))
    return surround_summary(result)


# ---- wall: a whole command's time, e.g. make test on a new clone (utils/bench/figures.py) --------
def add_wall_command(sub) -> None:
    p = add_command(sub, "wall", "time a whole command (make test, make demo) end to end",
                    "Run COMMAND in --cwd and report its wall time and exit status, and whether "
                    "--cwd was a new clone (no .venv, no data/synthetic) when it started. With "
                    "--result-file the JSON that COMMAND wrote (e.g. outputs/demo/metrics.json) is "
                    'kept in the record. The last line is JSON: {"wall_s": ...}.')
    p.add_argument("--cwd", default=".", help="folder to run COMMAND in (a new clone: a new user's wait)")
    p.add_argument("--result-file", default=None, help="JSON file COMMAND writes, relative to --cwd")
    p.add_argument("cmd", nargs="+", metavar="COMMAND", help="the command, after --")
    p.set_defaults(run=run_wall)


def run_wall(args) -> dict:
    import json
    import subprocess
    import time
    cwd = Path(args.cwd).resolve()
    new_clone = not (cwd / ".venv").exists() and not (cwd / "data" / "synthetic").exists()
    start = time.perf_counter()
    status = subprocess.run(args.cmd, cwd=cwd).returncode
    result = {"command": shlex.join(args.cmd), "wall_s": round(time.perf_counter() - start, 1),
              "exit_status": status, "new_clone": new_clone}
    if args.result_file:
        result["result_file"] = json.loads((cwd / args.result_file).read_text())
    args.commit_folder = cwd
    return result


# ---- figures: the docs' figure tables against docs/figures (utils/bench/figures.py) -------------
def add_figures_command(sub) -> None:
    p = add_command(sub, "figures", "check (or rewrite) the figure tables the docs quote",
                    "README.md and docs/*.md quote measured figures only between <!-- figures VIEW "
                    "NAME ... --> markers; each block is the rendering of records docs/figures/NAME.json "
                    "(written by --record). Lists every block that differs from its records and every "
                    "record no doc quotes, and exits 1 when there is one; --write rewrites the blocks.")
    p.add_argument("--write", action="store_true", help="rewrite the blocks from the records")
    p.set_defaults(run=run_figures)


def run_figures(args) -> dict:
    from utils.bench.figures import stale_docs
    problems = stale_docs(write=args.write)
    print("\n".join(problems) or "the docs quote exactly what docs/figures holds")
    if problems and not args.write:
        sys.exit(1)
    return {"problems": len(problems)}


# ---- train: training-step throughput (utils/bench/train.py) -------------------------------------
def add_train_command(sub) -> None:
    p = add_command(sub, "train", "time training steps: samples/s and data-time share",
                       "Time forward + spade_loss + backward + AdamW steps. With "
                                   "--infos and --data-root a DataLoader over the train-mode "
                                   "RadarCameraDataset feeds them and the time spent waiting for "
                                   "batches is reported; otherwise one random batch is reused. The "
                                   'last line is JSON: {"samples_per_s": ...}.')
    add_shape_args(p, 256, 448, 2, 5)
    p.add_argument("--infos", default=None, help="info file of the data (default: random tensors)")
    p.add_argument("--data-root", default=None, help="nuScenes root of --infos")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    p.add_argument("--stand-in-masks", action="store_true",
                   help="root without seg_mask/: train on blocky stand-in masks in a temp folder")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (for CUDA)")
    p.add_argument("--channels-last", action="store_true", help="NHWC model and inputs")
    p.add_argument("--config", default=None, help="YAML config (default: built-in defaults)")
    p.add_argument("overrides", nargs="*", help="config overrides key=value, e.g. loss.mask_weight=0")
    p.set_defaults(run=run_train)


def run_train(args) -> dict:
    import torch
    from utils.bench.train import benchmark_train, format_train_table, summary
    from utils.config import load_config
    if (args.infos is None) != (args.data_root is None):
        sys.exit("error: give --infos and --data-root together (or neither, for random tensors)")
    torch.set_num_threads(args.threads)
    from datasets.workers import reuse_freed_buffers
    reuse_freed_buffers()       # as in training, whose RadarCameraDataset sets it, also for tensors
    result = benchmark_train(args.device, args.height, args.width, args.batch, args.iters,
                             args.warmup, load_config(args.config, args.overrides), args.infos,
                             args.data_root, args.workers, args.bf16, args.channels_last,
                             args.stand_in_masks)
    print(format_train_table(result))
    return summary(result)


def main(argv=None) -> None:
    parser = make_parser(__doc__, "\n".join(EXAMPLES.values()))
    sub = parser.add_subparsers(dest="command", required=True)
    add_data_command(sub)
    add_model_command(sub)
    add_surround_command(sub)
    add_train_command(sub)
    add_wall_command(sub)
    add_figures_command(sub)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.command != "wall":                  # the timed command keeps the user's environment
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")     # before numpy / torch load: one thread
    load_before = os.getloadavg()[0]
    import torch
    from utils.config import ConfigError
    from utils.jsonio import dumps
    torch.set_num_threads(1)
    try:
        result = args.run(args)
    except ConfigError as err:                  # a bad config file, key or value: one line
        sys.exit(f"error: {err}")
    print(dumps(result))          # strict JSON: NaN -> null, why under "nulls"
    if getattr(args, "record", None):
        from utils.bench.figures import REPO, make_record
        from utils.jsonio import write_json
        command = ["python", "tools/benchmark.py", *argv]
        record = make_record(args.command, command, result, load_before, getattr(args, "threads", None),
                             getattr(args, "commit_folder", REPO))
        print(f"record: {write_json(args.record, record)}")
    if args.command == "wall" and result["exit_status"]:
        sys.exit(result["exit_status"])


if __name__ == "__main__":
    main()
