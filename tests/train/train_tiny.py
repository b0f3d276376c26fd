"""Tiny samples and configs shared by the tests of qfcn.train (imported as a module)."""

from __future__ import annotations

import numpy as np

from qfcn import data, train

TINY = {"width": 0.125, "n_stages": 3}


def make_samples(n: int = 3, h: int = 72, w: int = 80, seed: int = 0, split: str = "train") -> list:
    """Pink discs (glands) on a pale background, with an instance map."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    out = []
    for k in range(n):
        inst = np.zeros((h, w), np.int32)
        img = np.full((h, w, 3), 225, np.uint8)
        for g in range(1, 4):
            cy, cx, r = rng.integers(12, h - 12), rng.integers(12, w - 12), rng.integers(6, 11)
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
            inst[disc] = g
            img[disc] = (160, 70, 150)
        img = np.clip(img.astype(int) + rng.integers(-10, 10, img.shape), 0, 255).astype(np.uint8)
        out.append(data.Sample(name=f"{split}_{k + 1}", split=split, image=img, instances=inst, grade="benign"))
    return out


def tiny_cfg(**kw) -> train.TrainConfig:
    base = {"model": TINY, "crop_size": 32, "batch_size": 2, "n_crops": 8, "float_steps": 4, "retrain_steps": 2,
            "ckpt_every": 2, "device": "cpu", "lr": 3e-3, "retrain_lr": 1e-3, "augment": False}
    base.update(kw)
    return train.TrainConfig(**base)
