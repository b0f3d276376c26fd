"""Gland outlines of the synthetic GlaS generator (docs/method.md §2): placement with crowding
down to touching glands (distinct labels sharing a border), budding lobes, and fragmentation:
a malignant gland cut by stroma into pieces. Following the GlaS convention an annotated gland
is one connected region, so every piece that ends up a separate region gets its own label.
Random draws happen in a fixed order from the generator passed in.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> inst, glands = place_glands(rng, (130, 194), 0.5, False, 0.25)
>>> inst.dtype, int(inst.max()) == len(glands)
(dtype('int32'), True)
>>> cut, n_frag = fragment(rng, inst, 1.0, True, 0.25)
>>> int(cut.max()) >= int(inst.max()), n_frag >= 0
(True, True)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage

from qfcn.data.synth_shapes import curve_distance, draw_gland, gland_field


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
    r_mean = 66.0 * scale * ((1.1 + 0.3 * d) if malignant else 1.0)
    irregular = 0.05 + 0.22 * d + (0.08 + 0.15 * d if malignant else 0.0)
    bud_rate = (0.3 + 2.7 * d) if malignant else 0.6 * d
    spread, max_aspect = 0.3 + 0.3 * d, (2.2 if malignant else 3.2)
    p_touch = 0.03 + 0.45 * d ** 1.3 + (0.08 if malignant else 0.0)
    gap = scale * (4.0 + 14.0 * (1.0 - d))
    min_area = (14.0 * scale) ** 2
    n_target = int(rng.integers(8, 12))
    glands: list[dict[str, Any]] = []
    for _ in range(40 * n_target):
        if len(glands) >= n_target:
            break
        p = draw_gland(rng, r_mean, irregular, int(rng.poisson(bud_rate)), spread, max_aspect)
        touch, j = _position(rng, p, glands, p_touch, h, w)
        r = math.ceil(p["reach"] + gap)
        y0, y1 = max(0, int(p["cy"]) - r), min(h, int(p["cy"]) + r + 1)
        x0, x1 = max(0, int(p["cx"]) - r), min(w, int(p["cx"]) + r + 1)
        if y1 - y0 < 2 or x1 - x0 < 2:
            continue
        if not touch and labels[min(h - 1, max(0, int(p["cy"]))), min(w - 1, max(0, int(p["cx"])))]:
            continue  # centre already on a gland: cannot fit
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


# --------------------------------------------------------------------------- fragmentation
def _cut_gland(rng: np.random.Generator, mask: np.ndarray, d: float, scale: float) -> np.ndarray:
    """(h, w) bool stroma bands (1-2 random curves, 6-22 px wide at scale 1) through the gland
    ``mask``: wide enough that the gap stays visible at half resolution, as the stroma between
    fragments of a real malignant gland does (narrower cuts were hidden under the nuclei)."""
    r_eff = math.sqrt(mask.sum() / math.pi)
    band = np.zeros(mask.shape, bool)
    ys, xs = np.nonzero(mask)
    for _ in range(1 + int(rng.random() < 0.5 * d)):
        i = int(rng.integers(ys.size))
        dist = curve_distance(rng, (0, mask.shape[0], 0, mask.shape[1]), ys[i], xs[i], 3.0 * r_eff, 0.04)
        band |= dist <= max(2.0, scale * rng.uniform(3.0, 5.0 + 6.0 * d))
    return band


def fragment(rng: np.random.Generator, instances: np.ndarray, d: float, malignant: bool,
             scale: float) -> tuple[np.ndarray, int]:
    """Cut some glands into pieces by stroma bands (malignant ones, more often as ``d`` grows).

    Returns the new instance map (int32, labels 1..n in order of the old labels, each piece a
    separate connected region, slivers under (14 * scale)^2 px dropped) and the number of old
    glands that ended up as two or more pieces. Cuts only remove pixels, so no new contacts arise.
    """
    p_frag = (0.05 + 0.5 * d) if malignant else 0.08 * d
    min_area = (14.0 * scale) ** 2
    out = np.zeros_like(instances)
    n_out, n_frag = 0, 0
    for i, sl in enumerate(ndimage.find_objects(instances)):
        if sl is None:
            continue
        pad = tuple(slice(max(0, s.start - 1), s.stop + 1) for s in sl)
        mask = instances[pad] == i + 1
        if rng.random() < p_frag and mask.sum() > 8 * min_area:
            mask = mask & ~_cut_gland(rng, mask, d, scale)
        comp, n = ndimage.label(mask)
        sizes = np.bincount(comp.ravel(), minlength=n + 1)[1:]
        keep = [j + 1 for j in range(n) if sizes[j] >= min_area]
        n_frag += len(keep) >= 2
        for j in keep:
            n_out += 1
            out[pad][comp == j] = n_out
    return out, n_frag
