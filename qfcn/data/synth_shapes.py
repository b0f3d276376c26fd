"""Drawing primitives of the synthetic GlaS generator (docs/method.md §2): smooth noise, soft
rod-shaped nuclei, gland outlines (an ellipse with a radial Fourier perturbation plus budding
lobes), random curves (cuts, clefts, folds) and the count of touching gland pairs. Every random draw comes from the ``np.random.Generator``
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

#: angular resolution of the outline table used by :func:`gland_field`
_N_ANGLES = 2048


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std float32 noise smoothed over ``sigma`` pixels (cheap: coarse grid)."""
    h, w = shape
    f = max(1.0, sigma / 3.0)
    ch, cw = max(2, math.ceil(h / f) + 2), max(2, math.ceil(w / f) + 2)
    coarse = ndimage.gaussian_filter(rng.standard_normal((ch, cw)).astype(np.float32), sigma / f)
    if f == 1.0:  # full resolution already: no resampling
        out = coarse[:h, :w]
    else:
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
    """Normalised radius f (< 1 inside, about 1 + distance / radius outside) of gland ``p`` on the
    window [y0:y0+h, x0:x0+w]: the perturbed ellipse united with its budding lobes."""
    yy, xx = np.mgrid[y0:y0 + h, x0:x0 + w].astype(np.float32)
    dy, dx = yy - p["cy"], xx - p["cx"]
    ca, sa = math.cos(p["angle"]), math.sin(p["angle"])
    u = (dx * ca + dy * sa) / p["ax"]
    v = (-dx * sa + dy * ca) / p["by"]
    rho = np.sqrt(u * u + v * v)
    idx = np.rint(np.arctan2(v, u) * np.float32(_N_ANGLES / (2 * np.pi))).astype(np.intp) % _N_ANGLES
    f = rho * _inverse_radial(p)[idx]
    for bu, bv, br in zip(p["bud_u"], p["bud_v"], p["bud_r"]):
        f = np.minimum(f, 1.0 + np.sqrt((u - bu) ** 2 + (v - bv) ** 2) - br)
    return f


def _inverse_radial(p: dict[str, Any]) -> np.ndarray:
    """1 / the outline's normalised radius (floored at 0.3) on a table of :data:`_N_ANGLES` angles."""
    if "_inv_radial" not in p:
        theta = np.arange(_N_ANGLES) * (2 * np.pi / _N_ANGLES)
        radial = 1.0 + (p["amp"][:, None] * np.cos(p["k"][:, None] * theta + p["phase"][:, None])).sum(0)
        p["_inv_radial"] = (1.0 / np.maximum(radial, 0.3)).astype(np.float32)
    return p["_inv_radial"]


def _radial_at(p: dict[str, Any], theta: float) -> float:
    """The outline's normalised radius at angle ``theta`` (no lobes)."""
    return max(0.3, 1.0 + float(np.sum(p["amp"] * np.cos(p["k"] * theta + p["phase"]))))


def draw_gland(rng: np.random.Generator, r_mean: float, irregular: float, n_buds: int = 0,
               spread: float = 0.35, max_aspect: float = 2.2) -> dict[str, Any]:
    """Outline parameters of one gland (no position yet): radius ``r0`` around ``r_mean`` px
    (log-uniform within +-``spread``), semi-axes ``ax``/``by`` (aspect up to ``max_aspect``),
    ``angle``, Fourier harmonics ``k``/``amp``/``phase``, ``n_buds`` budding lobes (``bud_u``,
    ``bud_v``, ``bud_r`` in normalised units; each overlaps the outline, so the gland stays one
    connected region), ``reach`` (px bound of the outline from its centre) and ``irregularity``
    (sum of amplitudes)."""
    r0 = r_mean * math.exp(rng.uniform(-spread, spread))
    aspect = rng.uniform(1.0, max_aspect)
    k = np.arange(2, 13)
    amp = irregular * rng.uniform(0.3, 1.0, k.size) / k ** 0.9
    p = {"r0": r0, "ax": r0 * math.sqrt(aspect), "by": r0 / math.sqrt(aspect),
         "angle": rng.uniform(0, np.pi), "k": k, "amp": amp, "phase": rng.uniform(0, 2 * np.pi, k.size)}
    ang = rng.uniform(0, 2 * np.pi, n_buds)
    p["bud_r"] = rng.uniform(0.15, 0.35, n_buds)
    out = np.array([_radial_at(p, a) for a in ang]) + p["bud_r"] * rng.uniform(0.2, 0.7, n_buds)
    p["bud_u"], p["bud_v"] = out * np.cos(ang), out * np.sin(ang)
    p["reach"] = p["ax"] * (1.0 + amp.sum() + 0.7 * (p["bud_r"].max() if n_buds else 0.0)) + 2.0
    p["irregularity"] = float(amp.sum())
    return p


def curve_distance(rng: np.random.Generator, box: tuple[int, int, int, int], cy: float, cx: float,
                   length: float, curl: float = 0.08) -> np.ndarray:
    """Distance (px, float32) on ``box`` = (y0, y1, x0, x1) to a random-walk curve of ``length``
    px centred near (cy, cx), turning by ``curl`` radians per half-pixel step (cuts, clefts, folds)."""
    y0, y1, x0, x1 = box
    steps = int(2 * length) + 2
    turn = np.cumsum(rng.normal(0, curl, steps)) + rng.uniform(0, 2 * np.pi)
    py, px = np.cumsum(0.5 * np.sin(turn)), np.cumsum(0.5 * np.cos(turn))
    py, px = py - py[steps // 2] + cy - y0, px - px[steps // 2] + cx - x0
    line = np.zeros((y1 - y0, x1 - x0), bool)
    ok = (py >= 0) & (py < y1 - y0 - 0.5) & (px >= 0) & (px < x1 - x0 - 0.5)
    if not ok.any():
        return np.full(line.shape, np.inf, np.float32)
    line[np.rint(py[ok]).astype(int), np.rint(px[ok]).astype(int)] = True
    return ndimage.distance_transform_edt(~line).astype(np.float32)
