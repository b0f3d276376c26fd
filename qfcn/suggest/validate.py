"""Argument checks shared by :mod:`qfcn.suggest.select`, :mod:`qfcn.suggest.settings` and
:mod:`qfcn.suggest.rounds`.

Each returns the value converted (float64 arrays, ints, floats) or raises ``ValueError``
naming the argument and what was expected.

>>> check_count(3, "k_pick"), check_floor(-1)
(3, -1.0)
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

__all__ = ["check_count", "check_floor", "check_member_stack", "check_pool_names", "check_predictions",
           "check_selected", "check_similarity"]


def check_member_stack(member_probs: Any) -> np.ndarray:
    """Validated float64 stack with the K members on axis 0: (K, ...)."""
    p = np.asarray(member_probs, dtype=np.float64)
    if p.ndim < 2:
        raise ValueError(f"member_probs: expected at least 2 dimensions ((K, H, W)), "
                         f"got shape {p.shape}")
    if p.shape[0] < 2:
        raise ValueError(f"member_probs: need K >= 2 ensemble members on axis 0, "
                         f"got shape {p.shape}")
    if p.size == 0:
        raise ValueError(f"member_probs: empty array of shape {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError("member_probs: contains NaN or inf")
    if p.min() < 0.0 or p.max() > 1.0:
        raise ValueError(f"member_probs: probabilities must lie in [0, 1], "
                         f"got range [{p.min():.4g}, {p.max():.4g}]")
    return p


def check_similarity(similarity: Any) -> np.ndarray:
    """A finite, non-empty 2-D float64 similarity (n_candidates, n_pool)."""
    s = np.asarray(similarity, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"similarity: expected a 2-D array (n_candidates, n_pool), "
                         f"got shape {s.shape}")
    if s.shape[0] == 0 or s.shape[1] == 0:
        raise ValueError(f"similarity: empty array of shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("similarity: contains NaN or inf")
    return s


def check_floor(floor: float) -> float:
    """``floor`` as a float; ValueError unless a finite number."""
    if not (isinstance(floor, (int, float, np.floating)) and math.isfinite(floor)):
        raise ValueError(f"floor: expected a finite number, got {floor!r}")
    return float(floor)


def check_count(value: Any, name: str, low: int = 1) -> int:
    """``value`` as an int; ValueError naming ``name`` unless an integer >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    if value < low:
        raise ValueError(f"{name}: expected >= {low}, got {value}")
    return int(value)


def check_selected(selected: Sequence[int], n: int) -> np.ndarray:
    """Distinct indices in [0, n) as an int64 array (may be empty)."""
    idx = np.asarray(selected, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"selected: indices must lie in [0, {n}), got {idx.tolist()}")
    if np.unique(idx).size != idx.size:
        raise ValueError(f"selected: repeated indices in {idx.tolist()}")
    return idx


def check_pool_names(pool_names: Sequence[str]) -> list[str]:
    """The pool's names as str; ValueError when empty or repeated."""
    names = [str(n) for n in pool_names]
    if not names:
        raise ValueError("pool_names: empty pool")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})[:5]
        raise ValueError(f"pool_names: repeated names {dup}")
    return names


def check_predictions(out: Any, n: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """``predict_fn``'s output for n images: (uncertainties (n,), descriptors (n, K, D)
    per member or (n, D), extras)."""
    try:
        u, desc, extras = out
    except (TypeError, ValueError) as exc:
        raise ValueError("predict_fn: expected (uncertainties, descriptors, extras)") from exc
    u = np.asarray(u, dtype=np.float64)
    desc = np.asarray(desc, dtype=np.float64)
    if u.shape != (n,):
        raise ValueError(f"predict_fn: uncertainties shape {u.shape}, expected ({n},)")
    if desc.ndim not in (2, 3) or desc.shape[0] != n or 0 in desc.shape:
        raise ValueError(f"predict_fn: descriptors shape {desc.shape}, expected ({n}, K, D) or ({n}, D)")
    if not (np.all(np.isfinite(u)) and np.all(np.isfinite(desc))):
        raise ValueError("predict_fn: uncertainties or descriptors contain NaN or inf")
    return u, desc, dict(extras or {})
