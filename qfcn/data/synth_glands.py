"""Glands of the synthetic GlaS generator (docs/method.md §2): placement with crowding down to
touching glands, the interior (epithelium, lumen, solid nests, cribriform holes) and the
epithelial nuclei and goblet cells. Random draws happen in a fixed order from the generator
passed in; :func:`qfcn.data.synth.render_image` calls these in order.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> inst, glands = place_glands(rng, (130, 194), 0.5, False, 0.25)
>>> inst.dtype, int(inst.max()) == len(glands)
(dtype('int32'), True)
>>> inner = gland_interior(rng, inst, len(glands), 0.5, False, 0.25)
>>> bool((inner.lumen <= (inst > 0)).all())
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from qfcn.data.synth_shapes import draw_gland, gland_field, smooth_noise, splat_rods


# --------------------------------------------------------------------------- placement
def _position(rng: np.random.Generator, p: dict[str, Any], glands: list[dict[str, Any]], p_touch: float,
              h: int, w: int) -> tuple[bool, int]:
    """Set the centre of gland ``p``: beside gland ``j`` (returns True, j) or anywhere (False, -1)."""
    touch = bool(glands) and rng.random() < p_touch
    if touch:
        j = int(rng.integers(len(glands)))
        q = glands[j]
        ang = rng.uniform(0, 2 * np.pi)
        dist = (q["r0"] + p["r0"]) * rng.uniform(0.75, 0.95)
        p["cy"], p["cx"] = q["cy"] + dist * math.sin(ang), q["cx"] + dist * math.cos(ang)
        return True, j
    p["cy"] = rng.uniform(-0.3 * p["r0"], h + 0.3 * p["r0"])
    p["cx"] = rng.uniform(-0.3 * p["r0"], w + 0.3 * p["r0"])
    return False, -1


def _fits(labels: np.ndarray, box: tuple[slice, slice], f: np.ndarray, mask: np.ndarray, near_f: float,
          touch: bool, j: int) -> bool:
    """Whether a new gland (field ``f``, mask ``mask`` on ``box``) keeps its gap to the others;
    a touching one must overlap gland ``j`` a little and keep its gap to every other gland."""
    existing = labels[box]
    near = (f < near_f) & (existing > 0)
    if touch:
        own = existing == j + 1
        overlap = int((mask & own).sum())
        return not ((near & ~own).any() or overlap == 0
                    or overlap > 0.3 * min(mask.sum(), (labels == j + 1).sum()))
    return not near.any()


def _keep_largest(labels: np.ndarray, glands: list[dict[str, Any]],
                  min_area: float) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Keep the largest connected piece of each gland, drop slivers, relabel 1..n."""
    out = np.zeros_like(labels)
    kept: list[dict[str, Any]] = []
    for i, sl in enumerate(ndimage.find_objects(labels)):
        if sl is None:
            continue
        comp, n = ndimage.label(labels[sl] == i + 1)
        if n == 0:
            continue
        sizes = np.bincount(comp.ravel())[1:]
        if sizes.max() < min_area:
            continue
        out[sl][comp == 1 + int(sizes.argmax())] = len(kept) + 1
        kept.append(glands[i])
    return out, kept


def place_glands(rng: np.random.Generator, shape: tuple[int, int], d: float, malignant: bool,
                 scale: float) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Instance map (int32, glands 1..n) and gland parameters at difficulty ``d``; touching
    glands are split by the smaller normalised radius."""
    h, w = shape
    labels = np.zeros(shape, np.int32)
    fbest = np.full(shape, np.inf, np.float32)
    r_mean = 66.0 * scale * (1.1 if malignant else 1.0)
    irregular = 0.05 + 0.22 * d + (0.08 if malignant else 0.0)
    p_touch = 0.03 + 0.45 * d ** 1.3 + (0.08 if malignant else 0.0)
    gap = scale * (4.0 + 14.0 * (1.0 - d))
    min_area = (14.0 * scale) ** 2
    n_target = int(rng.integers(8, 12))
    glands: list[dict[str, Any]] = []
    for _ in range(40 * n_target):
        if len(glands) >= n_target:
            break
        p = draw_gland(rng, r_mean, irregular)
        touch, j = _position(rng, p, glands, p_touch, h, w)
        r = math.ceil(p["reach"] + gap)
        y0, y1 = max(0, int(p["cy"]) - r), min(h, int(p["cy"]) + r + 1)
        x0, x1 = max(0, int(p["cx"]) - r), min(w, int(p["cx"]) + r + 1)
        if y1 - y0 < 2 or x1 - x0 < 2:
            continue
        f = gland_field(p, y0, x0, y1 - y0, x1 - x0)
        mask = f < 1.0
        box = np.s_[y0:y1, x0:x1]
        if mask.sum() < min_area or not _fits(labels, box, f, mask, 1.0 + gap / p["r0"], touch, j):
            continue
        upd = mask & (f < fbest[box])
        labels[box][upd] = len(glands) + 1
        fbest[box][upd] = f[upd]
        p["touch"] = touch
        glands.append(p)
    return _keep_largest(labels, glands, min_area)


# --------------------------------------------------------------------------- interior
@dataclass
class Interior:
    """Gland interior maps, all (H, W): ``sep`` borders between touching glands (bool),
    ``depth`` distance to the gland edge (px, float32), ``wobble`` smooth noise, ``lumen`` and
    ``epi`` (bool), ``rel`` relative depth in the epithelium; ``solid`` (n + 1,) bool per label."""

    sep: np.ndarray
    depth: np.ndarray
    solid: np.ndarray
    wobble: np.ndarray
    lumen: np.ndarray
    epi: np.ndarray
    rel: np.ndarray


def touching_borders(instances: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels on a 4-connected border between two distinct glands."""
    sep = np.zeros(instances.shape, bool)
    for a, b, sa, sb in ((instances[:, :-1], instances[:, 1:], np.s_[:, :-1], np.s_[:, 1:]),
                         (instances[:-1, :], instances[1:, :], np.s_[:-1, :], np.s_[1:, :])):
        m = (a > 0) & (b > 0) & (a != b)
        sep[sa] |= m
        sep[sb] |= m
    return sep


def gland_interior(rng: np.random.Generator, instances: np.ndarray, n: int, d: float, mal: bool,
                   scale: float) -> Interior:
    """Epithelium and lumen of the ``n`` glands; malignant: solid nests and cribriform holes."""
    shape, fg = instances.shape, instances > 0
    sep = touching_borders(instances)
    depth = ndimage.distance_transform_edt(fg & ~sep).astype(np.float32)
    area = np.bincount(instances.ravel(), minlength=n + 1).astype(np.float32)
    r_eff = np.sqrt(area / np.pi)
    p_solid = (0.12 + 0.45 * d) if mal else 0.02 * d
    solid = rng.random(n + 1) < p_solid
    solid[0] = False
    thick = r_eff * np.where(mal, rng.uniform(0.25, 0.45, n + 1), rng.uniform(0.35, 0.55, n + 1))
    thick = np.where(solid, np.inf, np.maximum(thick, 2.0 * scale))
    thick[0] = np.inf
    t_map = thick[instances]
    wobble = smooth_noise(rng, shape, 12 * scale)
    lumen = fg & (depth > t_map * (1.0 + 0.25 * wobble))
    if mal:  # cribriform holes in thick / solid epithelium
        holes = smooth_noise(rng, shape, 5 * scale) > 2.0 - 0.6 * d
        lumen |= fg & holes & (depth > 6 * scale)
    epi = fg & ~lumen
    rel = np.where(epi, depth / np.minimum(t_map, 3.0 * r_eff[instances] + 1), 0)
    return Interior(sep, depth, solid, wobble, lumen, epi, rel)


def epithelial_nuclei(rng: np.random.Generator, inner: Interior, d: float, mal: bool,
                      scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Soft (H, W) maps of epithelial nuclei (elongated along the depth gradient when benign,
    random when malignant) and of goblet-cell mucin vacuoles between nuclei and lumen."""
    shape, epi = inner.epi.shape, inner.epi
    spacing = scale * (6.5 if not mal else 8.0 - 1.5 * d)
    n_cand = int(epi.sum() / spacing ** 2 * 1.6) + 1
    ys, xs = rng.uniform(0, shape[0] - 1, n_cand), rng.uniform(0, shape[1] - 1, n_cand)
    iy, ix = ys.astype(np.intp), xs.astype(np.intp)
    r_at = inner.rel[iy, ix]
    lo, hi = (0.05, 0.45) if not mal else (0.03, 0.75 + 0.2 * d)
    keep = epi[iy, ix] & (r_at > lo) & (r_at < hi)
    ys, xs, iy, ix = ys[keep], xs[keep], iy[keep], ix[keep]
    gy, gx = np.gradient(ndimage.gaussian_filter(inner.depth, 2.0))
    ny, nx = gy[iy, ix], gx[iy, ix]
    norm = np.hypot(ny, nx) + 1e-6
    ang = rng.uniform(0, 2 * np.pi, ys.size)
    jitter = 0.3 if not mal else 0.9
    ny = (1 - jitter) * ny / norm + jitter * np.sin(ang)
    nx = (1 - jitter) * nx / norm + jitter * np.cos(ang)
    half = scale * (3.0 if not mal else 2.2 + 1.5 * d)
    sig_n = max(0.6, scale * (2.6 if not mal else 3.0 + 0.6 * d))
    nuc = splat_rods(shape, ys, xs, half * ny, half * nx, sig_n, rng.uniform(0.8, 1.3, ys.size))

    goblet = np.zeros(shape, np.float32)
    if not mal or d < 0.5:  # mucin vacuoles between nuclei and lumen
        m = rng.random(iy.size) < (0.5 if not mal else 0.15)
        gsel = (r_at[keep] > 0.2) & m
        goblet = splat_rods(shape, ys[gsel] + 2 * half * ny[gsel], xs[gsel] + 2 * half * nx[gsel],
                            0 * ys[gsel], 0 * xs[gsel], max(0.7, 3.2 * scale), 1.0)
        goblet *= epi & (nuc < 0.3)
    return nuc, goblet
