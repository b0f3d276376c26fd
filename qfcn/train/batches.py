"""Training batches: crops of an epoch in an order drawn from ``(seed, epoch)``.

Step ``s`` of a run trains on batch ``s % per_epoch`` of epoch ``s // per_epoch``, so a resumed
run draws exactly the batches an uninterrupted one would (docs/method.md §3).

>>> _epoch_seed(0, 1) == _epoch_seed(0, 1) != _epoch_seed(0, 2)
True
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from qfcn.train.config import TrainConfig


def _epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, 2]).generate_state(1)[0])


class _EpochItems(torch.utils.data.Dataset):
    """``ds`` indexed by ``(epoch, i)``, so one (persistent-worker) loader spans epochs."""

    def __init__(self, ds: Any) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, i = key
        self.ds.set_epoch(epoch)
        return self.ds[i]


class _Batches:
    """Batches of step ``s`` onwards: epoch ``s // per_epoch``, order from ``(seed, epoch)``."""

    def __init__(self, dataset: Any, cfg: TrainConfig) -> None:
        self.ds, self.cfg = dataset, cfg
        self.n = len(dataset)
        self.per_epoch = self.n // cfg.batch_size
        if self.per_epoch == 0:
            raise ValueError(f"batch_size={cfg.batch_size} is larger than the {self.n} crops of an epoch (n_crops)")

    def keys(self, step: int) -> Iterator[list[tuple[int, int]]]:
        """``[(epoch, index), ...]`` of every batch from ``step`` on (endless)."""
        epoch, first = divmod(step, self.per_epoch)
        bs = self.cfg.batch_size
        while True:
            perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(_epoch_seed(self.cfg.seed, epoch)))
            for b in range(first, self.per_epoch):
                yield [(epoch, i) for i in perm[b * bs:(b + 1) * bs].tolist()]
            epoch, first = epoch + 1, 0

    def from_step(self, step: int) -> Iterator[dict[str, torch.Tensor]]:
        workers = self.cfg.num_workers
        yield from DataLoader(_EpochItems(self.ds), batch_sampler=self.keys(step), num_workers=workers,
                              persistent_workers=False, pin_memory=False,
                              prefetch_factor=4 if workers else None)


def _n_crops(cfg: TrainConfig, n_samples: int) -> int:
    """Crops per epoch: cfg.n_crops, or one per sample rounded up to whole batches."""
    if cfg.n_crops is not None:
        return cfg.n_crops
    return -(-n_samples // cfg.batch_size) * cfg.batch_size

