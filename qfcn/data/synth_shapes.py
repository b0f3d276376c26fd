"""Drawing primitives of the synthetic GlaS generator (docs/method.md §2): smooth noise, soft
rod-shaped nuclei, gland outlines (an ellipse with a radial Fourier perturbation) and the
count of touching gland pairs. Every random draw comes from the ``np.random.Generator``
passed in, in a fixed order (the generator's images depend on it bit for bit).

>>> import numpy as np
>>> n = smooth_noise(np.random.default_rng(0), (20, 30), 4.0)
>>> n.shape, n.dtype, round(float(n.std()), 3)
((20, 30), dtype('float32'), 1.0)
>>> p = draw_gland(np.random.default_rng(1), 6.0, 0.1); p["cy"], p["cx"] = 10.0, 10.0
>>> bool(gland_field(p, 0, 0, 21, 21)[10, 10] < 1.0)
True
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std float32 noise smoothed over ``sigma`` pixels (cheap: coarse grid)."""
    h, w = shape
    f = max(1.0, sigma / 3.0)
    ch, cw = max(2, math.ceil(h / f) + 2), max(2, math.ceil(w / f) + 2)
    coarse = ndimage.gaussian_filter(rng.standard_normal((ch, cw)).astype(np.float32), sigma / f)
    out = ndimage.zoom(coarse, (h / (ch - 2), w / (cw - 2)), order=1, grid_mode=True, mode="nearest")[:h, :w]
    out = out - out.mean()
    return out / (out.std() + 1e-8)


def splat_rods(shape: tuple[int, int], ys: np.ndarray, xs: np.ndarray, dy: np.ndarray, dx: np.ndarray,
               sigma: float, weight: np.ndarray | float = 1.0) -> np.ndarray:
    """Soft masks in [0, 1] of short rods (nuclei): centres (ys, xs), half-axis (dy, dx), width ``sigma``."""
    acc = np.zeros(shape, np.float32)
    wts = np.broadcast_to(np.asarray(weight, np.float32), ys.shape)
    for t in (-1.0, 0.0, 1.0):
        yy = np.clip(np.rint(ys + t * dy), 0, shape[0] - 1).astype(np.intp)
        xx = np.clip(np.rint(xs + t * dx), 0, shape[1] - 1).astype(np.intp)
        np.add.at(acc, (yy, xx), wts)
    g = ndimage.gaussian_filter(acc, sigma) * np.float32(2 * np.pi * sigma * sigma)
    return np.clip((g - 0.3) / 0.4, 0.0, 1.0)


def count_touching_pairs(instances: np.ndarray) -> int:
    """Number of unordered pairs of distinct non-zero labels that share a 4-connected border.

    >>> count_touching_pairs(np.array([[1, 1, 2, 0, 3]]))
    1
    """
    lab = np.asarray(instances).astype(np.int64)
    pairs = []
    for a, b in ((lab[:, :-1], lab[:, 1:]), (lab[:-1, :], lab[1:, :])):
        m = (a > 0) & (b > 0) & (a != b)
        lo, hi = np.minimum(a[m], b[m]), np.maximum(a[m], b[m])
        pairs.append(lo * (int(lab.max()) + 1) + hi)
    return int(np.unique(np.concatenate(pairs)).size)


def gland_field(p: dict[str, Any], y0: int, x0: int, h: int, w: int) -> np.ndarray:
    """Normalised radius f (< 1 inside) of gland ``p`` on the window [y0:y0+h, x0:x0+w]."""
    yy, xx = np.mgrid[y0:y0 + h, x0:x0 + w].astype(np.float32)
    dy, dx = yy - p["cy"], xx - p["cx"]
    ca, sa = math.cos(p["angle"]), math.sin(p["angle"])
    u = (dx * ca + dy * sa) / p["ax"]
    v = (-dx * sa + dy * ca) / p["by"]
    rho = np.sqrt(u * u + v * v)
    theta = np.arctan2(v, u)
    radial = np.ones_like(rho)
    for k, a, ph in zip(p["k"], p["amp"], p["phase"]):
        radial += a * np.cos(k * theta + ph)
    return rho / np.maximum(radial, 0.3)


def draw_gland(rng: np.random.Generator, r_mean: float, irregular: float) -> dict[str, Any]:
    """Outline parameters of one gland (no position yet): radius ``r0`` around ``r_mean`` px,
    semi-axes ``ax``/``by``, ``angle``, Fourier harmonics ``k``/``amp``/``phase``, ``reach`` (px
    bound of the outline from its centre) and ``irregularity`` (sum of amplitudes)."""
    r0 = r_mean * rng.uniform(0.65, 1.35)
    aspect = rng.uniform(1.0, 2.2)
    k = np.arange(2, 9)
    amp = irregular * rng.uniform(0.3, 1.0, k.size) / k ** 0.8
    p = {"r0": r0, "ax": r0 * math.sqrt(aspect), "by": r0 / math.sqrt(aspect),
         "angle": rng.uniform(0, np.pi), "k": k, "amp": amp, "phase": rng.uniform(0, 2 * np.pi, k.size)}
    p["reach"] = p["ax"] * (1.0 + amp.sum()) + 2.0
    p["irregularity"] = float(amp.sum())
    return p
