"""Training-image splits: the study's fixed validation images (carved by the data step), a
validation split carved from annotated training images, and the bootstrap resamples and seeds
of ensemble members (docs/method.md §2, §5). Test splits are refused: :func:`is_test` tells a
test sample by its ``split`` attribute.

>>> carve_validation([f"train_{i}" for i in range(1, 7)], ["benign"] * 3 + ["malignant"] * 3, 0.34, seed=0)
['train_3', 'train_6']

>>> from types import SimpleNamespace as S
>>> train = [S(name=f"train_{i}", split="train") for i in range(5)]
>>> fit, val = split_validation(train, 0.4, seed=0)
>>> len(fit), len(val)
(3, 2)
>>> len(bootstrap_resample(train, 0, 1)), is_test(S(split="test_a")), is_test(train[0])
(5, True, False)
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def is_test(sample: Any) -> bool:
    """True when ``sample.split`` starts with 'test' (any case): such samples never train or validate."""
    return str(getattr(sample, "split", "")).lower().startswith("test")


def split_validation(samples: Sequence[Any], fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    """Carve a validation split (``round(fraction * n)`` images, at least 1 when fraction > 0)
    from annotated TRAINING samples, drawn from ``seed``; both parts keep the input order.
    Samples whose split starts with 'test' are refused (ValueError)."""
    samples = list(samples)
    tests = [getattr(s, "name", "?") for s in samples if is_test(s)]
    if tests:
        raise ValueError(f"split_validation: test samples must never be used for validation, got {tests[:5]}")
    if not (isinstance(fraction, (int, float)) and 0.0 <= fraction < 1.0):
        raise ValueError(f"split_validation: fraction must be in [0, 1), got {fraction!r}")
    n = len(samples)
    n_val = 0 if fraction == 0 else min(n - 1, max(1, round(fraction * n)))
    if n_val < 0 or (fraction > 0 and n < 2):
        raise ValueError(f"split_validation: need at least 2 samples for a validation split, got {n}")
    pick = set(np.random.default_rng([seed, 7919]).permutation(n)[:n_val].tolist())
    return [s for i, s in enumerate(samples) if i not in pick], [s for i, s in enumerate(samples) if i in pick]


def _allocate(sizes: list[int], total: int) -> list[int]:
    """Split ``total`` over groups in proportion to ``sizes`` (largest remainder, ties to the first)."""
    quota = [total * n / sum(sizes) for n in sizes]
    out = [int(np.floor(q)) for q in quota]
    for i in sorted(range(len(sizes)), key=lambda i: -(quota[i] - out[i]))[: total - sum(out)]:
        out[i] += 1
    return out


def carve_validation(names: Sequence[str], grades: Sequence[str], fraction: float, seed: int) -> list[str]:
    """The study's fixed validation images: ``round(fraction * n)`` of the training images
    ``names`` (at least 1 when fraction > 0, at most n - 1), stratified by ``grades`` (each
    grade gets its share by largest remainder), drawn from ``seed``; returned in input order.
    Depends on names, grades and seed only, never on pixels (docs/method.md §2)."""
    names, grades = list(names), list(grades)
    if len(names) != len(grades) or len(set(names)) != len(names):
        raise ValueError(f"carve_validation: need one grade per distinct name, got {len(names)} names, {len(grades)} grades")
    if not (isinstance(fraction, (int, float)) and 0.0 <= fraction < 1.0):
        raise ValueError(f"carve_validation: fraction must be in [0, 1), got {fraction!r}")
    n = len(names)
    n_val = 0 if fraction == 0 else min(n - 1, max(1, round(fraction * n)))
    if fraction > 0 and n < 2:
        raise ValueError(f"carve_validation: need at least 2 training images for a validation set, got {n}")
    groups = sorted(set(grades))
    members = [[i for i, g in enumerate(grades) if g == grade] for grade in groups]
    rng = np.random.default_rng([seed, 7919, 2])
    pick: set[int] = set()
    for idx, k in zip(members, _allocate([len(m) for m in members], n_val)):
        pick.update(idx[j] for j in rng.permutation(len(idx))[:k])
    return [name for i, name in enumerate(names) if i in pick]


def member_seed(seed: int, member: int) -> int:
    """Training seed of ensemble member ``member`` (from ``(seed, member)``, < 2**31)."""
    return int(np.random.SeedSequence([seed, member, 1]).generate_state(1)[0] >> 1)


def bootstrap_resample(samples: Sequence[Any], seed: int, member: int) -> list[Any]:
    """A bootstrap resample (n draws with replacement, sorted by original index) for
    ensemble member ``member``, drawn from ``(seed, member)``."""
    samples = list(samples)
    if not samples:
        raise ValueError("bootstrap_resample: samples is empty")
    idx = np.sort(np.random.default_rng([seed, member, 0]).integers(0, len(samples), len(samples)))
    return [samples[i] for i in idx]
