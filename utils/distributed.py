"""Process-group set-up for `torchrun` and for a plain single process, and the collectives the
training loop uses (the samplers are in datasets/samplers.py).

torchrun exports RANK, WORLD_SIZE and LOCAL_RANK; without them the job is one process and no
process group is created. Backend: NCCL when CUDA is available, gloo otherwise.
"""
from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, List

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(timeout_min: float = 30.0) -> DistInfo:
    """Join the torchrun process group (if any) and pick this rank's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} "
                               "GPUs are visible; lower --nproc_per_node")
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        if not cuda:
            # gloo connects its pairs on first use instead of all at start-up. With the eager
            # full mesh, workers restarted by `torchrun --max-restarts` failed to connect
            # ("connectFullMesh failed ... Connection refused") in most tries on torch 2.13.
            os.environ.setdefault("TORCH_GLOO_LAZY_INIT", "1")
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(minutes=timeout_min),
                                device_id=device if cuda else None)
    return DistInfo(rank, world_size, local_rank, device)


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_reduce(t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce ('sum', 'min', 'max', 'mean') of `t` on any device; identity in a
    single process. NCCL reduces only CUDA tensors: a CPU tensor goes through a CUDA copy."""
    if dist.is_initialized():
        work = t
        if dist.get_backend() == "nccl" and not t.is_cuda:
            work = t.to(torch.device("cuda", torch.cuda.current_device()))
        if op == "mean":
            dist.all_reduce(work, dist.ReduceOp.SUM)
            work /= dist.get_world_size()
        else:
            dist.all_reduce(work, {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN,
                                   "max": dist.ReduceOp.MAX}[op])
        if work is not t:
            t.copy_(work)
    return t


def all_gather_objects(obj: Any) -> List[Any]:
    """Every rank's `obj` (picklable), in rank order; [obj] in a single process. A collective:
    every rank must call it."""
    if not dist.is_initialized():
        return [obj]
    gathered: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def user_error_exit(message: str, code: int = 2) -> None:
    """Print `message` (one line, naming the file or key and the fix) and exit with `code`.
    Under torchrun the worker first asks its agent to stop the job (SIGTERM to the parent):
    the agent stops every worker and does not restart them, as retrying cannot mend a wrong
    setting or a bad file (the agent then logs that signal and its own stack trace)."""
    print(message, file=sys.stderr, flush=True)
    if "TORCHELASTIC_RUN_ID" in os.environ and os.getppid() > 1:
        os.kill(os.getppid(), signal.SIGTERM)
    sys.exit(code)
