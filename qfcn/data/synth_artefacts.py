"""Gland-like decoys of the synthetic GlaS generator (docs/method.md §2): things that are NOT
glands (never labelled), drawn away from the glands at every difficulty and more of them as it
grows: vessels with a lumen-like centre (empty or full of red cells, a thin wall and flat
endothelial nuclei), fat cells (polygonal membranes), tears and thin stromal clefts, lymphoid
aggregates (dense clusters of small nuclei, some with a pale centre) and ring-like stroma (a
band of dense spindle nuclei around a pale centre).

>>> import numpy as np
>>> fg = np.zeros((80, 120), bool); fg[5:25, 5:25] = True
>>> dec = decoys(np.random.default_rng(0), fg, 1, 0.5, 0.25)
>>> dec["n"] >= 1, bool(dec["mask"][fg].any()), sorted(k for k in dec if k not in ("n", "mask"))
(True, False, ['dnuc', 'rbc', 'rim', 'ring', 'white'])
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage

from qfcn.data.synth_shapes import curve_distance, draw_gland, gland_field, splat_rods

#: decoy kinds, how often each is drawn, and their radius range (fraction of a gland's radius)
KINDS = ("vessel", "fat", "cleft", "tear", "lymphoid", "ring")
_P_KIND = (0.25, 0.15, 0.15, 0.1, 0.2, 0.15)
_RADIUS = {"vessel": (0.2, 0.7), "fat": (0.6, 1.2), "cleft": (0.6, 1.6), "tear": (0.3, 0.8),
           "lymphoid": (0.4, 1.0), "ring": (0.3, 0.7)}
_MAPS = ("white", "rim", "rbc", "dnuc", "ring")


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


def _nuclei_in(rng: np.random.Generator, where: np.ndarray, spacing: float, elong: float, sigma: float,
               tangential: bool) -> np.ndarray:
    """Soft nuclei scattered over ``where`` at ``spacing`` px, rods of half-length ``elong``,
    oriented along the region's outline when ``tangential`` (else at random)."""
    ys, xs = np.nonzero(where)
    k = int(ys.size / spacing ** 2) + 1
    pick = rng.integers(ys.size, size=k) if ys.size else np.zeros(0, int)
    ys, xs = ys[pick] + rng.uniform(-0.5, 0.5, k), xs[pick] + rng.uniform(-0.5, 0.5, k)
    ang = rng.uniform(0, 2 * np.pi, k)
    if tangential:
        gy, gx = np.gradient(ndimage.gaussian_filter(where.astype(np.float32), 3.0))
        iy, ix = np.rint(ys).astype(int).clip(0, where.shape[0] - 1), np.rint(xs).astype(int).clip(0, where.shape[1] - 1)
        ang = np.arctan2(gx[iy, ix], -gy[iy, ix]) + rng.normal(0, 0.2, k)
    return splat_rods(where.shape, ys, xs, elong * np.sin(ang), elong * np.cos(ang), sigma,
                      rng.uniform(0.8, 1.3, k))


def _draw_one(rng: np.random.Generator, kind: str, cy: float, cx: float, rad: float,
              box: tuple[int, int, int, int], d: float, scale: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Region mask of one decoy on ``box`` and its maps (keys of :data:`_MAPS`, float32)."""
    y0, y1, x0, x1 = box
    if kind == "cleft":
        region = curve_distance(rng, box, cy, cx, 2 * rad) <= max(0.6, scale * rng.uniform(1.0, 3.0))
        return region, {"white": region.astype(np.float32)}
    p = draw_gland(rng, rad, 0.1 + 0.2 * d)
    p["cy"], p["cx"] = cy, cx
    region = gland_field(p, y0, x0, y1 - y0, x1 - x0) < 1.0
    wall = region & ~ndimage.binary_erosion(region, iterations=max(1, round(1.5 * scale)))
    s = max(0.5, 1.6 * scale)
    if kind == "lymphoid":
        inner = ndimage.distance_transform_edt(region) > rad * rng.uniform(0.0, 0.6)
        dense = region & ~(inner & (rng.random() < 0.5))
        return region, {"dnuc": _nuclei_in(rng, dense, 4.5 * scale, 0.2 * scale, s, False)}
    if kind == "ring":
        band = region & ~ndimage.binary_erosion(region, iterations=max(1, round(rad * rng.uniform(0.25, 0.45))))
        return region, {"dnuc": _nuclei_in(rng, band, 7.0 * scale, 3.5 * scale, s, True),
                        "ring": band.astype(np.float32), "white": 0.55 * (region & ~band)}
    if kind == "vessel":
        inside = (region & ~wall).astype(np.float32)
        rbc = rng.random() < 0.5
        maps = {"rim": wall.astype(np.float32), "dnuc": _nuclei_in(rng, wall, 10.0 * scale, 3.0 * scale, s, True)}
        maps["rbc" if rbc else "white"] = inside
        return region, maps
    if kind == "fat":
        wall |= _fat_membranes(rng, region, scale)
    elif kind == "tear":
        wall[:] = False
    return region, {"white": (region & ~wall).astype(np.float32), "rim": wall.astype(np.float32)}


def decoys(rng: np.random.Generator, fg: np.ndarray, n: int, d: float, scale: float) -> dict[str, Any]:
    """1 + Poisson(1.5 + 5d) decoys kept clear of the ``n`` glands in ``fg`` (at least 3 * scale px).

    Returns (H, W) float32 maps 'white' (empty space), 'rim' (eosin walls), 'rbc' (red cells),
    'dnuc' (decoy nuclei), 'ring' (dense stroma band), bool 'mask' (every decoy's region,
    never on a gland) and 'n' (number drawn)."""
    shape = fg.shape
    dist_g = ndimage.distance_transform_edt(~fg).astype(np.float32) if n else np.full(shape, 1e4, np.float32)
    out: dict[str, Any] = {k: np.zeros(shape, np.float32) for k in _MAPS}
    out["mask"] = np.zeros(shape, bool)
    n_target, n_drawn = 1 + int(rng.poisson(1.5 + 5.0 * d)), 0
    for _ in range(8 * n_target):
        if n_drawn >= n_target:
            break
        kind = str(rng.choice(list(KINDS), p=list(_P_KIND)))
        rad = 66.0 * scale * rng.uniform(*_RADIUS[kind])
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        if dist_g[int(cy), int(cx)] < (rad if kind != "cleft" else 4 * scale) + 4 * scale:
            continue
        r = math.ceil(rad * 1.6) + 3
        box = (max(0, int(cy) - r), min(shape[0], int(cy) + r), max(0, int(cx) - r), min(shape[1], int(cx) + r))
        sl = np.s_[box[0]:box[1], box[2]:box[3]]
        free = dist_g[sl] > 3 * scale
        region, maps = _draw_one(rng, kind, cy, cx, rad, box, d, scale)
        if (region & free).sum() < 4:
            continue
        out["mask"][sl] |= region & free
        for k, v in maps.items():
            out[k][sl] = np.maximum(out[k][sl], v * free)
        n_drawn += 1
    out["n"] = n_drawn
    return out
