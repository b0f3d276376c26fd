"""Slide and scanner artefacts of the synthetic GlaS generator (docs/method.md §2), all growing
with difficulty: tissue folds (bands of doubled tissue thickness, darker), global and local
(out-of-focus) blur, uneven illumination with a colour cast, sensor noise and JPEG-like 8x8
block-DCT compression (YCbCr, 4:2:0 chroma). Everything is numpy / scipy arithmetic, so the
output is the same bit for bit for the same random draws.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> fold = fold_thickness(rng, (40, 60), 1.0, 0.25)
>>> fold.shape, bool(fold.min() >= 1.0)
((40, 60), True)
>>> rgb = np.full((40, 60, 3), 0.8, np.float32)
>>> out = optics(rng, rgb, 1.0, 0.25)
>>> out.shape, out.dtype
((40, 60, 3), dtype('uint8'))
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.fft import dctn, idctn

from qfcn.data.synth_shapes import curve_distance, smooth_noise

#: JPEG Annex K quantisation tables (luminance, chrominance), quality 50
_Q_LUMA = np.array([16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
                    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
                    92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], np.float32).reshape(8, 8)
_FOLD_STEP = 4
_Q_CHROMA = np.full((8, 8), 99.0, np.float32)
_Q_CHROMA[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]


def fold_thickness(rng: np.random.Generator, shape: tuple[int, int], d: float, scale: float) -> np.ndarray:
    """(H, W) float32 tissue thickness: 1, and 1.6-2.3 inside 0-2 folds (probability 0.1 + 0.5 d;
    a second one at 0.3 d), bands 16-80 px wide at scale 1 with a darker crease along each edge."""
    thick = np.ones(shape, np.float32)
    n_folds = int(rng.random() < 0.1 + 0.5 * d) + int(rng.random() < 0.3 * d)
    small = (-(-shape[0] // _FOLD_STEP), -(-shape[1] // _FOLD_STEP))  # distances on a coarse grid, then bilinear
    for _ in range(n_folds):
        cy, cx = rng.uniform(0, small[0]), rng.uniform(0, small[1])
        coarse = curve_distance(rng, (0, small[0], 0, small[1]), cy, cx, 2.0 * max(small), 0.04) * _FOLD_STEP
        dist = ndimage.zoom(coarse, _FOLD_STEP, order=1, grid_mode=True, mode="nearest")[:shape[0], :shape[1]]
        half = scale * rng.uniform(8.0, 40.0)
        soft = max(0.7, 1.5 * scale)
        inside = np.clip((half - dist) / soft + 0.5, 0.0, 1.0)
        crease = np.exp(-(((dist - half) / soft) ** 2))
        thick += rng.uniform(0.6, 1.3) * inside + 0.4 * crease
    return thick


def _local_blur(rng: np.random.Generator, rgb: np.ndarray, d: float, scale: float) -> np.ndarray:
    """Out-of-focus patches (probability 0.2 + 0.6 d) blended into ``rgb`` by a smooth mask."""
    if rng.random() >= 0.2 + 0.6 * d:
        return rgb
    sigma = scale * rng.uniform(1.5, 2.5 + 3.0 * d)
    blurred = ndimage.gaussian_filter(rgb, (sigma, sigma, 0))
    mask = np.clip(0.5 + 1.5 * (smooth_noise(rng, rgb.shape[:2], 120 * scale) - rng.uniform(0.0, 1.0)), 0, 1)
    return rgb + (blurred - rgb) * mask[..., None]


def _illumination(rng: np.random.Generator, shape: tuple[int, int], d: float, scale: float) -> np.ndarray:
    """(H, W, 3) float32 gain: level, a linear gradient, a vignette, smooth patches and a colour cast."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy, xx = yy / h - 0.5, xx / w - 0.5
    ang = rng.uniform(0, 2 * np.pi)
    gain = (rng.uniform(0.94, 1.02) + rng.uniform(0, 0.03 + 0.1 * d) * (yy * np.sin(ang) + xx * np.cos(ang))
            - rng.uniform(0, 0.02 + 0.12 * d) * (yy ** 2 + xx ** 2)
            + rng.uniform(0, 0.01 + 0.04 * d) * smooth_noise(rng, shape, 150 * scale))
    cast = np.exp(rng.normal(0, 0.01 + 0.02 * d, 3)).astype(np.float32)
    return gain[..., None] * cast


def _block_dct_quantise(plane: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``plane`` (0-255 float) through 8x8 DCT, rounding to multiples of ``table``, inverse DCT."""
    h, w = plane.shape
    ph, pw = -h % 8, -w % 8
    p = np.pad(plane, ((0, ph), (0, pw)), mode="edge") - 128.0
    blocks = p.reshape(p.shape[0] // 8, 8, p.shape[1] // 8, 8)
    coef = dctn(blocks, type=2, norm="ortho", axes=(1, 3))
    coef = np.rint(coef / table[None, :, None, :]) * table[None, :, None, :]
    out = idctn(coef, type=2, norm="ortho", axes=(1, 3)).reshape(p.shape) + 128.0
    return out[:h, :w]


def jpeg_like(rgb: np.ndarray, quality: int) -> np.ndarray:
    """(H, W, 3) float RGB in [0, 255] through a JPEG-like codec at ``quality`` (1-100): YCbCr,
    chroma averaged over 2x2, 8x8 block DCT with the Annex K tables scaled as libjpeg does."""
    s = 5000.0 / quality if quality < 50 else 200.0 - 2.0 * quality
    ql, qc = (np.maximum(1.0, np.floor((q * s + 50.0) / 100.0)) for q in (_Q_LUMA, _Q_CHROMA))
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = _block_dct_quantise(0.299 * r + 0.587 * g + 0.114 * b, ql)
    h, w = y.shape
    chroma = []
    for c in (-0.168736 * r - 0.331264 * g + 0.5 * b, 0.5 * r - 0.418688 * g - 0.081312 * b):
        c = np.pad(c, ((0, h % 2), (0, w % 2)), mode="edge")
        half = c.reshape(c.shape[0] // 2, 2, c.shape[1] // 2, 2).mean(axis=(1, 3)) + 128.0
        q = _block_dct_quantise(half, qc) - 128.0
        chroma.append(np.repeat(np.repeat(q, 2, 0), 2, 1)[:h, :w])
    cb, cr = chroma
    return np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], -1)


def optics(rng: np.random.Generator, rgb: np.ndarray, d: float, scale: float) -> np.ndarray:
    """(H, W, 3) uint8 from float RGB in [0, 1]: global blur, local blur, illumination, noise and
    JPEG-like compression (quality 95 down to 95 - 40 d .. 95 - 55 d)."""
    sigma = scale * rng.uniform(0.3, 0.5 + 1.3 * d)
    rgb = ndimage.gaussian_filter(rgb, (sigma, sigma, 0))
    rgb = _local_blur(rng, rgb, d, scale)
    rgb = rgb * _illumination(rng, rgb.shape[:2], d, scale)
    rgb = rgb + rng.normal(0, rng.uniform(1.0, 2.0 + 4.0 * d) / 255.0, rgb.shape).astype(np.float32)
    quality = int(round(95 - rng.uniform(0, 55) * d))
    out = jpeg_like(np.clip(rgb, 0, 1) * 255.0, quality)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
