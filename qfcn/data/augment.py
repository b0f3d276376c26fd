"""Augmentation pieces for gland crops: HED stain jitter, smooth elastic fields, warping
(docs/method.md §2).

All functions take an explicit ``np.random.Generator`` (no global RNG) and work on
(H, W[, C]) numpy arrays; they are used by :class:`qfcn.data.GlasCrops`.

>>> rng = np.random.default_rng(0)
>>> elastic_field(rng, 16, 8.0, (1.0, 2.0)).shape
(2, 16, 16)
>>> window(np.arange(9).reshape(3, 3), -1, 1, 3, "constant").tolist()
[[0, 0, 0], [1, 2, 0], [4, 5, 0]]
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from scipy.interpolate import CubicSpline
from skimage.color import hed_from_rgb, rgb_from_hed

_LOG_ADJUST = np.float32(np.log(1e-6))
_HED_FROM_RGB = hed_from_rgb.astype(np.float32)
_RGB_FROM_HED = rgb_from_hed.astype(np.float32)


def stain_jitter_hed(image: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """H&E stain jitter on an (H, W, 3) float image in [0, 1] (float32 out).

    rgb2hed (skimage's colour deconvolution, in float32) -> per-channel optical-density
    scale in [1 - sigma, 1 + sigma] and shift in [-sigma, sigma] x 0.1 (skimage OD units;
    real H&E has H median ~0.03) -> hed2rgb.
    """
    alpha = rng.uniform(1 - sigma, 1 + sigma, 3).astype(np.float32)
    beta = (rng.uniform(-sigma, sigma, 3) * 0.1).astype(np.float32)
    od = np.log(np.maximum(image.astype(np.float32), 1e-6)) / _LOG_ADJUST
    hed = (od @ _HED_FROM_RGB) * alpha + beta
    return np.clip(np.exp((hed * _LOG_ADJUST) @ _RGB_FROM_HED), 0, 1)


@functools.lru_cache(maxsize=16)
def _cubic_weights(out_size: int, n: int) -> np.ndarray:
    """(out_size, n) natural cubic-spline weights from n control points spanning the window."""
    spline = CubicSpline(np.linspace(0, out_size - 1, n), np.eye(n), bc_type="natural")
    return spline(np.arange(out_size)).astype(np.float32)


def elastic_field(rng: np.random.Generator, out_size: int, spacing: float,
                  magnitude: tuple[float, float]) -> np.ndarray:
    """Smooth random displacement field (2, out, out) float32 in pixels (dy, dx).

    Control points every ``spacing`` px carry N(0, m^2) displacements, m drawn uniformly
    from ``magnitude``; a separable cubic spline interpolates them (max |d| ~ 3-4 m).
    """
    n = max(2, math.ceil(out_size / spacing) + 1)
    m = rng.uniform(*magnitude)
    ctrl = (rng.standard_normal((2, n, n)) * m).astype(np.float32)
    w = _cubic_weights(int(out_size), n)
    return np.ascontiguousarray(w @ ctrl @ w.T)


def warp(arrays: Sequence[np.ndarray], field_: np.ndarray, offset: float, orders: Sequence[int]) -> list[np.ndarray]:
    """Sample each (S, S[, C]) array at (i + offset + dy, j + offset + dx) for the (2, s, s)
    field (order 1 bilinear for images, 0 nearest for labels; edges replicated)."""
    s = field_.shape[1]
    base = np.arange(s, dtype=np.float32) + np.float32(offset)
    coords = np.stack([base[:, None] + field_[0], base[None, :] + field_[1]])
    out = []
    for arr, order in zip(arrays, orders):
        if arr.ndim == 3:
            out.append(np.stack([ndimage.map_coordinates(arr[..., k], coords, order=order, mode="nearest")
                                 for k in range(arr.shape[2])], -1))
        else:
            out.append(ndimage.map_coordinates(arr, coords, order=order, mode="nearest"))
    return out


def window(arr: np.ndarray, y0: int, x0: int, size: int, mode: str) -> np.ndarray:
    """arr[y0:y0+size, x0:x0+size] padded beyond the array (mode 'constant' zeros or 'edge')."""
    h, w = arr.shape[:2]
    ys, xs = max(0, y0), max(0, x0)
    ye, xe = min(h, y0 + size), min(w, x0 + size)
    part = arr[ys:ye, xs:xe]
    pad = [(ys - y0, y0 + size - ye), (xs - x0, x0 + size - xe)] + [(0, 0)] * (arr.ndim - 2)
    return np.pad(part, pad, mode=mode)
