"""Gland-like decoys of the synthetic GlaS generator (docs/method.md §2): white spaces that are
NOT glands, drawn away from the glands at every difficulty: vessels and tears (no epithelial
ring), fat cells (polygonal membranes), thin stromal clefts.

>>> import numpy as np
>>> fg = np.zeros((80, 120), bool); fg[5:25, 5:25] = True
>>> white, rim, n = decoys(np.random.default_rng(0), fg, 1, 0.5, 0.25)
>>> white.shape, n >= 1, bool(white[fg].any())
((80, 120), True, False)
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from qfcn.data.synth_shapes import draw_gland, gland_field

#: decoy kinds and how often each is drawn
KINDS = ("vessel", "fat", "cleft", "tear")
_P_KIND = (0.3, 0.25, 0.25, 0.2)


def _cleft(rng: np.random.Generator, cy: float, cx: float, rad: float, box: tuple[int, int, int, int],
           scale: float) -> tuple[np.ndarray, np.ndarray]:
    """A thin random-walk cleft through (cy, cx), about 2 * ``rad`` px long, on ``box``; no membranes."""
    y0, y1, x0, x1 = box
    steps = int(2 * rad) + 2
    turn = np.cumsum(rng.normal(0, 0.08, steps)) + rng.uniform(0, 2 * np.pi)
    py = cy + np.cumsum(0.5 * np.sin(turn)) - y0
    px = cx + np.cumsum(0.5 * np.cos(turn)) - x0
    line = np.zeros((y1 - y0, x1 - x0), bool)
    ok = (py >= 0) & (py < y1 - y0 - 0.5) & (px >= 0) & (px < x1 - x0 - 0.5)
    line[np.rint(py[ok]).astype(int), np.rint(px[ok]).astype(int)] = True
    width_px = max(0.6, scale * rng.uniform(1.0, 3.0))
    shape_mask = ndimage.distance_transform_edt(~line) <= width_px
    return shape_mask, np.zeros_like(shape_mask)


def _fat_membranes(rng: np.random.Generator, shape_mask: np.ndarray, scale: float) -> np.ndarray:
    """Borders of 3-8 Voronoi cells inside ``shape_mask`` (fat cell membranes)."""
    hh, ww = shape_mask.shape
    k = int(rng.integers(3, 9))
    seeds = np.stack([rng.uniform(0, hh, k), rng.uniform(0, ww, k)], 1)
    yy, xx = np.mgrid[0:hh, 0:ww]
    d2 = (yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2
    cell = d2.argmin(-1)
    edge = np.zeros_like(shape_mask)
    edge[:, 1:] |= cell[:, 1:] != cell[:, :-1]
    edge[1:, :] |= cell[1:, :] != cell[:-1, :]
    return shape_mask & ndimage.binary_dilation(edge, iterations=max(0, int(scale)) or 1)


def _rounded(rng: np.random.Generator, kind: str, cy: float, cx: float, rad: float,
             box: tuple[int, int, int, int], d: float, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """A gland-shaped white space (vessel, fat, tear) on ``box`` and its membranes."""
    y0, y1, x0, x1 = box
    p = draw_gland(rng, rad, 0.1 + 0.2 * d)
    p["cy"], p["cx"] = cy, cx
    shape_mask = gland_field(p, y0, x0, y1 - y0, x1 - x0) < 1.0
    membranes = shape_mask & ~ndimage.binary_erosion(shape_mask, iterations=max(1, round(1.5 * scale)))
    if kind == "fat":
        membranes |= _fat_membranes(rng, shape_mask, scale)
    elif kind == "tear":
        membranes[:] = False
    return shape_mask, membranes


def decoys(rng: np.random.Generator, fg: np.ndarray, n: int, d: float,
           scale: float) -> tuple[np.ndarray, np.ndarray, int]:
    """White-space mask and membrane-rim mask (both (H, W) float32 in {0, 1}) of 1 + Poisson(1 + 4d)
    decoys kept clear of the ``n`` glands in ``fg``; returns (white, rim, number drawn)."""
    shape = fg.shape
    dist_g = ndimage.distance_transform_edt(~fg).astype(np.float32) if n else np.full(shape, 1e4, np.float32)
    white = np.zeros(shape, np.float32)
    rim = np.zeros(shape, np.float32)
    n_dec_target = 1 + int(rng.poisson(1.0 + 4.0 * d))
    n_decoys = 0
    r_g = 66.0 * scale
    for _ in range(8 * n_dec_target):
        if n_decoys >= n_dec_target:
            break
        kind = rng.choice(list(KINDS), p=list(_P_KIND))
        rad = r_g * {"vessel": rng.uniform(0.25, 0.7), "fat": rng.uniform(0.6, 1.2),  # all four drawn
                     "cleft": rng.uniform(0.6, 1.6), "tear": rng.uniform(0.3, 0.8)}[kind]
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        if dist_g[int(cy), int(cx)] < (rad if kind != "cleft" else 4 * scale) + 4 * scale:
            continue
        r = math.ceil(rad * 1.6) + 3
        box = (max(0, int(cy) - r), min(shape[0], int(cy) + r), max(0, int(cx) - r), min(shape[1], int(cx) + r))
        free = dist_g[box[0]:box[1], box[2]:box[3]] > 3 * scale
        if kind == "cleft":
            shape_mask, membranes = _cleft(rng, cy, cx, rad, box, scale)
        else:
            shape_mask, membranes = _rounded(rng, kind, cy, cx, rad, box, d, scale)
        shape_mask &= free
        membranes &= free
        if shape_mask.sum() < 4:
            continue
        sl = np.s_[box[0]:box[1], box[2]:box[3]]
        white[sl] = np.maximum(white[sl], shape_mask & ~membranes)
        rim[sl] = np.maximum(rim[sl], membranes)
        n_decoys += 1
    return white, rim, n_decoys
