"""Augmentation pieces for gland crops: HED stain jitter, smooth elastic fields, warping
(docs/method.md §2).

The numpy functions take an explicit ``np.random.Generator`` (no global RNG) and work on one
(H, W[, C]) array: they are the reference definitions. The ``*_batch`` / :func:`spline_fields`
functions apply the same transforms to a whole batch of (B, C, H, W) tensors with given random
draws (one ``grid_sample`` per batch); :class:`qfcn.data.GlasCrops` uses those.

>>> rng = np.random.default_rng(0)
>>> elastic_field(rng, 16, 8.0, (1.0, 2.0)).shape
(2, 16, 16)
>>> tuple(spline_fields(torch.zeros(4, 2, 3, 3), 16).shape)
(4, 2, 16, 16)
>>> window(np.arange(9).reshape(3, 3), -1, 1, 3, "constant").tolist()
[[0, 0, 0], [1, 2, 0], [4, 5, 0]]
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F
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


def window(arr: np.ndarray, y0: int, x0: int, size: int, mode: str) -> np.ndarray:
    """arr[y0:y0+size, x0:x0+size] padded beyond the array (mode 'constant' zeros or 'edge')."""
    h, w = arr.shape[:2]
    ys, xs = max(0, y0), max(0, x0)
    ye, xe = min(h, y0 + size), min(w, x0 + size)
    part = arr[ys:ye, xs:xe]
    pad = [(ys - y0, y0 + size - ye), (xs - x0, x0 + size - xe)] + [(0, 0)] * (arr.ndim - 2)
    return np.pad(part, pad, mode=mode)


# ------------------------------------------------------------------ batched tensor versions
def spline_fields(ctrl: torch.Tensor, out_size: int) -> torch.Tensor:
    """Batched :func:`elastic_field`: control displacements (B, 2, n, n) -> (B, 2, s, s) float32
    through the same natural cubic spline (one matrix product per axis)."""
    w = torch.from_numpy(_cubic_weights(int(out_size), int(ctrl.shape[-1])))
    return torch.matmul(torch.matmul(w, ctrl.float()), w.T).contiguous()


def warp_batch(images: torch.Tensor, labels: torch.Tensor, fields: torch.Tensor, offset: int,
               image_margin: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample (B, C, S, S) images bilinearly and (B, L, S, S) label maps (float-coded ints) by
    nearest neighbour at (i + offset + dy, j + offset + dx) for the (B, 2, s, s) fields (pixels;
    edges replicated): one ``grid_sample`` per kind for the whole batch. Returns images
    (B, C, s - 2 m, s - 2 m) (``m = image_margin`` cut from every side) and labels (B, L, s, s)."""
    size, s, m = images.shape[-1], fields.shape[-1], int(image_margin)
    base = torch.arange(s, dtype=torch.float32) + float(offset)
    y = base[None, :, None] + fields[:, 0]
    x = base[None, None, :] + fields[:, 1]
    grid = torch.stack([x, y], -1).mul_(2.0 / (size - 1)).sub_(1.0)  # align_corners=True convention
    img = F.grid_sample(images, grid[:, m:s - m, m:s - m], mode="bilinear", padding_mode="border", align_corners=True)
    lab = F.grid_sample(labels, grid, mode="nearest", padding_mode="border", align_corners=True)
    return img, lab


def stain_jitter_hed_batch(images: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Batched :func:`stain_jitter_hed` with given per-item (B, 3) scales / shifts on
    (B, 3, H, W) float images in [0, 1]; float32 (B, 3, H, W) in [0, 1].

    rgb2hed, the affine jitter and hed2rgb are linear in log-space, so they fold into one
    per-item 3x3 matrix ``H diag(alpha) R`` and offset ``log(1e-6) * beta R``:
    ``exp(log(x) M + c)``, one batched matrix product between a log and an exp.
    """
    h, r = torch.from_numpy(_HED_FROM_RGB), torch.from_numpy(_RGB_FROM_HED)
    mix = (h[None] * alpha[:, None, :].float()) @ r  # (B, 3 in, 3 out)
    off = float(_LOG_ADJUST) * (beta[:, None, :].float() @ r)  # (B, 1, 3)
    b, _, hh, ww = images.shape
    logx = torch.log(images.clamp_min(1e-6)).reshape(b, 3, hh * ww)
    out = torch.baddbmm(off.transpose(1, 2), mix.transpose(1, 2), logx)
    return torch.exp_(out).clamp_(0.0, 1.0).reshape(b, 3, hh, ww)


def _disk_max(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Maximum of (B, H, W) over skimage's ``disk(radius)`` footprint, edges replicated (scipy
    mode 'nearest'): running row maxima of half-width ``isqrt(r^2 - dy^2)``, then their maximum
    over the rows dy = -r..r (shifted slices only, no pooling kernel)."""
    r = int(radius)
    h, w = x.shape[-2:]
    xp = F.pad(x[:, None], (r, r, r, r), mode="replicate")[:, 0]
    rows = [xp[..., r:r + w]]
    for k in range(1, r + 1):
        rows.append(torch.maximum(rows[-1], torch.maximum(xp[..., r - k:r - k + w], xp[..., r + k:r + k + w])))
    out = rows[r][:, r:r + h]
    for dy in range(1, r + 1):
        row = rows[math.isqrt(r * r - dy * dy)]
        out = torch.maximum(out, torch.maximum(row[:, r - dy:r - dy + h], row[:, r + dy:r + dy + h]))
    return out


def object_contour_batch(instances: torch.Tensor, contour_width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched :func:`qfcn.data.glas.object_contour_targets` on (B, H, W) float-coded instance
    maps: (object, contour) float32 (B, H, W) in {0, 1}, identical to the numpy version."""
    hi = _disk_max(instances, int(contour_width))
    lo = -_disk_max(-instances, int(contour_width))
    obj = instances > 0
    return obj.float(), (obj & (hi != lo)).float()
