"""The released learning-rate schedule (docs/spade.md section 4) as a pure function of the step.

    lr(step) = lr_cosine * 0.5 * (1 + cos(pi * step / total)) + lr_base

With the released values (3e-3, 1e-3) it falls from 4e-3 to 1e-3 over `total` optimiser steps.
The schedule has no state beyond the global step, which the checkpoint stores.
"""
from __future__ import annotations

import math

import torch


def total_steps(epochs: int, steps_per_epoch: int, max_steps: int = 0) -> int:
    """`max_steps` when positive, else epochs * steps_per_epoch."""
    total = max_steps if max_steps > 0 else epochs * steps_per_epoch
    if total <= 0:
        raise ValueError(f"training has no steps (epochs={epochs}, steps_per_epoch="
                         f"{steps_per_epoch}, max_steps={max_steps}); check train.epochs and "
                         "that the training info file is not empty")
    return total


def lr_at(step: int, total: int, lr_base: float, lr_cosine: float) -> float:
    """Learning rate for optimiser step `step` (0-based) of `total`."""
    progress = min(max(step, 0), total) / total
    return lr_cosine * 0.5 * (1.0 + math.cos(math.pi * progress)) + lr_base


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
