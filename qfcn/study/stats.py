"""Seed-to-seed statistics for the ablations: means with 95% intervals and paired differences.

Conventions: ``values`` are one number per seed. Intervals are Student-t intervals of the mean
(two-sided, ``level`` = 0.95); with a single seed the interval is undefined (NaN) and every
comparison says so instead of claiming a difference (docs/method.md §7).

>>> mean_ci([0.5, 0.7])[0]
0.6
>>> paired_difference([0.9], [0.8])["verdict"]
'cannot tell: 1 seed(s), no seed-to-seed spread to compare against'
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats as st


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of the mean of ``values`` (NaN bounds for fewer than 2 finite values)."""
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if x.size == 0:
        return (math.nan, math.nan, math.nan)
    m = float(x.mean())
    if x.size < 2:
        return (m, math.nan, math.nan)
    half = float(st.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return (m, m - half, m + half)


def paired_difference(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> dict[str, float | int | str]:
    """Compare ``a`` against ``b``, paired by position (same seed). Returns the mean difference
    ``a - b`` with its interval, the number of pairs and a plain-language verdict."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired_difference: a has {a.shape} values and b has {b.shape}; expected one per seed each")
    ok = np.isfinite(a) & np.isfinite(b)
    d = a[ok] - b[ok]
    m, lo, hi = mean_ci(d, level)
    if d.size < 2:
        verdict = f"cannot tell: {d.size} seed(s), no seed-to-seed spread to compare against"
    elif lo > 0 or hi < 0:
        verdict = f"larger than the seed-to-seed spread ({int(level * 100)}% interval of the difference excludes 0)"
    else:
        verdict = f"within the seed-to-seed spread ({int(level * 100)}% interval of the difference includes 0)"
    return {"diff": m, "low": lo, "high": hi, "n": int(d.size), "verdict": verdict}
