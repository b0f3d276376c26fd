"""Training batches: crops of an epoch in an order drawn from ``(seed, epoch)``.

Step ``s`` of a run trains on batch ``s % per_epoch`` of epoch ``s // per_epoch``, so a resumed
run draws exactly the batches an uninterrupted one would (docs/method.md §3). A batch is built
in one call (:meth:`qfcn.data.GlasCrops.batch`, batched tensor augmentation), in the training
process (``num_workers`` 0) or in loader worker processes; see :func:`resolve_workers`.

>>> _epoch_seed(0, 1) == _epoch_seed(0, 1) != _epoch_seed(0, 2)
True
>>> resolve_workers(None, torch.device("cpu")), resolve_workers(2, torch.device("cpu"))
(0, 2)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from qfcn.train.config import TrainConfig


#: loader workers on CPU when TrainConfig.num_workers is None. Measured on the 2-core box with two
#: 1-thread runs in parallel (benchmarks/results/throughput.json): one worker each gives 0.94x the
#: steps/s of none (the worker competes with the other run's step for the same cores, and the
#: batched augmentation costs only ~6% of a step in-process).
CPU_WORKERS = 0
#: at most this many workers on CUDA (the loader must keep the device busy).
CUDA_MAX_WORKERS = 8


def resolve_workers(num_workers: int | None, device: torch.device) -> int:
    """Loader worker processes: ``num_workers`` when given; None: :data:`CPU_WORKERS` on CPU,
    ``min(CUDA_MAX_WORKERS, cpu_count - 1)`` (at least 1) on CUDA."""
    if num_workers is not None:
        return int(num_workers)
    if device.type == "cuda":
        return max(1, min(CUDA_MAX_WORKERS, (os.cpu_count() or 2) - 1))
    return CPU_WORKERS


def _whole_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """collate_fn for batches already stacked by ``__getitems__``."""
    return batch


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

    def __getitems__(self, keys: list[tuple[int, int]]) -> dict[str, torch.Tensor]:
        """One stacked batch (all keys of a batch share the epoch)."""
        self.ds.set_epoch(keys[0][0])
        return self.ds.batch([i for _, i in keys])


class _Batches:
    """Batches of step ``s`` onwards: epoch ``s // per_epoch``, order from ``(seed, epoch)``."""

    def __init__(self, dataset: Any, cfg: TrainConfig, device: torch.device = torch.device("cpu")) -> None:
        self.ds, self.cfg, self.device = dataset, cfg, device
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
        """Stacked batches from ``step`` on; workers and pinned memory from the device."""
        items = _EpochItems(self.ds)
        workers = resolve_workers(self.cfg.num_workers, self.device)
        if workers == 0:
            yield from (items.__getitems__(keys) for keys in self.keys(step))
            return
        yield from DataLoader(items, batch_sampler=self.keys(step), num_workers=workers, collate_fn=_whole_batch,
                              persistent_workers=False, pin_memory=self.device.type == "cuda", prefetch_factor=4)


def _n_crops(cfg: TrainConfig, n_samples: int) -> int:
    """Crops per epoch: cfg.n_crops, or one per sample rounded up to whole batches."""
    if cfg.n_crops is not None:
        return cfg.n_crops
    return -(-n_samples // cfg.batch_size) * cfg.batch_size

