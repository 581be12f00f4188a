"""Samplers of the training loader: a distributed sampler that resumes mid-epoch exactly, and the
wrapper that hands each sample its epoch (so persistent loader workers draw the right
augmentation).
"""
from __future__ import annotations

from typing import Iterator, Tuple

from torch.utils.data import Dataset, DistributedSampler


class ResumableDistributedSampler(DistributedSampler):
    """DistributedSampler that yields `(epoch, index)` pairs and can start mid-epoch.

    The order of an epoch depends only on (seed, epoch), as in DistributedSampler; `set_start(n)`
    skips this rank's first n samples of the epoch without loading them, so a run resumed at
    step k of an epoch sees exactly the batches it would have seen. The epoch travels with each
    index to the dataset (see `EpochIndexed`), which keeps persistent workers in step.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int = 0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed,
                         drop_last=False)
        self.start = 0

    def set_start(self, start: int) -> None:
        self.start = int(start)

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        indices = list(super().__iter__())[self.start:]
        return iter([(self.epoch, i) for i in indices])

    def __len__(self) -> int:
        return self.num_samples - self.start


class EpochIndexed(Dataset):
    """Wraps a dataset with `set_epoch`: item `(epoch, index)` is `dataset[index]` in `epoch`."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Tuple[int, int]):
        epoch, index = key
        self.dataset.set_epoch(epoch)
        return self.dataset[index]
