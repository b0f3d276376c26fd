"""Tests of qfcn.train.batches: seeded whole batches, resume, workers from the device, timing."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from train_tiny import make_samples, tiny_cfg

from qfcn import data, train
from qfcn.train.batches import _Batches, resolve_workers

pytestmark = pytest.mark.usefixtures("one_thread")


def _batches(cfg, samples):
    ds = data.GlasCrops(samples, crop_size=cfg.crop_size, n_crops=cfg.n_crops, seed=cfg.seed, augment=True)
    return _Batches(ds, cfg)


def test_same_seed_same_batches_and_resume_draws_the_same():
    samples = make_samples(2)
    cfg = tiny_cfg(n_crops=6, batch_size=2, seed=4)
    first = list(itertools.islice(_batches(cfg, samples).from_step(0), 7))  # crosses two epoch boundaries
    again = list(itertools.islice(_batches(cfg, samples).from_step(0), 7))
    resumed = list(itertools.islice(_batches(cfg, samples).from_step(4), 3))
    for a, b in zip(first, again):
        assert all(torch.equal(a[k], b[k]) for k in a)
    for a, b in zip(first[4:], resumed):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert first[0]["image"].shape == (2, 3, 32, 32) and first[0]["valid"].shape == (2, 32, 32)
    other = next(_batches(tiny_cfg(n_crops=6, batch_size=2, seed=5), samples).from_step(0))
    assert not torch.equal(other["image"], first[0]["image"])


def test_workers_from_the_device_and_config():
    assert resolve_workers(None, torch.device("cpu")) == train.batches.CPU_WORKERS
    assert 1 <= resolve_workers(None, torch.device("cuda")) <= train.batches.CUDA_MAX_WORKERS
    assert resolve_workers(3, torch.device("cuda")) == 3
    assert train.TrainConfig().num_workers is None and "num_workers" not in train.TrainConfig().identity()
    with pytest.raises(ValueError, match="num_workers"):
        train.TrainConfig(num_workers=-1)


def test_run_writes_timing(tmp_path):
    res = train.train_model(make_samples(2), tiny_cfg(float_steps=3), out_dir=tmp_path / "r", progress=False)
    timing = json.loads((tmp_path / "r" / "timing.json").read_text())
    assert timing["steps"] == 3 and timing["data_s"] > 0 and timing["step_s"] > 0
    assert timing["device"] == "cpu" and timing["num_workers"] == train.batches.CPU_WORKERS
    assert res.history[-1]["step"] == 3
