"""Procedural GlaS-like H&E images written in the GlaS (Warwick-QU) layout.

GlaS is research-only and cannot be shipped, so the study's default data set is drawn
here: glands (epithelial rings of nuclei around pale lumens) in textured, eosin-rich
stroma, with the things that make GlaS hard, more of them as ``difficulty`` grows:

* irregular gland outlines (radial Fourier perturbation of an ellipse);
* crowding down to TOUCHING glands: distinct instance labels sharing a border;
* gland-like DECOYS that are not glands, at every difficulty: vessels and tears (white
  spaces without an epithelial ring), fat cells, thin stromal clefts;
* malignant solid nests with little or no lumen (still glands), stratified nuclei;
* stain variation between images, blur and noise.

Colour is built as haematoxylin / eosin / DAB optical-density maps (skimage units, real
H&E: H median ~0.03, 99th percentile ~0.14, E ~0.02-0.05) and converted with
:func:`skimage.color.hed2rgb`.

Layout written by :func:`make_glas` (see ``qfcn.data``): ``train_<i>.bmp`` /
``testA_<i>.bmp`` / ``testB_<i>.bmp`` (RGB, uint8), ``<name>_anno.bmp`` (8-bit instance
map, 0 = background), ``Grade.csv`` and ``synth.json`` (arguments, generator version and
per-image grade / difficulty / counts). Everything is deterministic: each image is drawn
from ``np.random.SeedSequence([seed, split_id, index])`` alone.

Example::

    >>> import numpy as np
    >>> from qfcn import synth
    >>> rng = np.random.default_rng(0)
    >>> image, instances, info = synth.render_image(rng, 0.5, 130, 194, scale=0.25)
    >>> image.shape, image.dtype, instances.dtype
    ((130, 194, 3), dtype('uint8'), dtype('int32'))
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.color import hed2rgb

GENERATOR_VERSION = "1.0"

#: (file prefix, split id used in the seed, GlaS-like benign fraction)
SPLITS: tuple[tuple[str, int, float], ...] = (("train", 0, 0.45), ("testA", 1, 0.55), ("testB", 2, 0.20))

#: per-image base difficulty range by (split prefix, grade); Test B sits higher than Test A
_BASE_RANGE = {
    ("train", "benign"): (0.05, 0.50), ("train", "malignant"): (0.45, 0.95),
    ("testA", "benign"): (0.05, 0.50), ("testA", "malignant"): (0.45, 0.95),
    ("testB", "benign"): (0.20, 0.65), ("testB", "malignant"): (0.60, 1.00),
}
#: GlaS image sizes (H, W) at scale 1 and how often they are drawn
_SIZES = (((522, 775), 0.85), ((453, 589), 0.10), ((433, 574), 0.05))


# --------------------------------------------------------------------------- helpers
def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std float32 noise smoothed over ``sigma`` pixels (cheap: coarse grid)."""
    h, w = shape
    f = max(1.0, sigma / 3.0)
    ch, cw = max(2, math.ceil(h / f) + 2), max(2, math.ceil(w / f) + 2)
    coarse = ndimage.gaussian_filter(rng.standard_normal((ch, cw)).astype(np.float32), sigma / f)
    out = ndimage.zoom(coarse, (h / (ch - 2), w / (cw - 2)), order=1, grid_mode=True, mode="nearest")[:h, :w]
    out = out - out.mean()
    return out / (out.std() + 1e-8)


def _splat_rods(shape: tuple[int, int], ys: np.ndarray, xs: np.ndarray, dy: np.ndarray, dx: np.ndarray,
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


# --------------------------------------------------------------------------- glands
def _gland_field(p: dict[str, Any], y0: int, x0: int, h: int, w: int) -> np.ndarray:
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


def _draw_gland(rng: np.random.Generator, r_mean: float, irregular: float) -> dict[str, Any]:
    r0 = r_mean * rng.uniform(0.65, 1.35)
    aspect = rng.uniform(1.0, 2.2)
    k = np.arange(2, 9)
    amp = irregular * rng.uniform(0.3, 1.0, k.size) / k ** 0.8
    p = {"r0": r0, "ax": r0 * math.sqrt(aspect), "by": r0 / math.sqrt(aspect),
         "angle": rng.uniform(0, np.pi), "k": k, "amp": amp, "phase": rng.uniform(0, 2 * np.pi, k.size)}
    p["reach"] = p["ax"] * (1.0 + amp.sum()) + 2.0
    p["irregularity"] = float(amp.sum())
    return p


def _place_glands(rng: np.random.Generator, shape: tuple[int, int], d: float, malignant: bool,
                  scale: float) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Instance map (int32) and gland parameters; touching glands split by the smaller f."""
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
        p = _draw_gland(rng, r_mean, irregular)
        touch = bool(glands) and rng.random() < p_touch
        if touch:
            j = int(rng.integers(len(glands)))
            q = glands[j]
            ang = rng.uniform(0, 2 * np.pi)
            dist = (q["r0"] + p["r0"]) * rng.uniform(0.75, 0.95)
            p["cy"], p["cx"] = q["cy"] + dist * math.sin(ang), q["cx"] + dist * math.cos(ang)
        else:
            p["cy"] = rng.uniform(-0.3 * p["r0"], h + 0.3 * p["r0"])
            p["cx"] = rng.uniform(-0.3 * p["r0"], w + 0.3 * p["r0"])
        r = math.ceil(p["reach"] + gap)
        y0, y1 = max(0, int(p["cy"]) - r), min(h, int(p["cy"]) + r + 1)
        x0, x1 = max(0, int(p["cx"]) - r), min(w, int(p["cx"]) + r + 1)
        if y1 - y0 < 2 or x1 - x0 < 2:
            continue
        f = _gland_field(p, y0, x0, y1 - y0, x1 - x0)
        mask = f < 1.0
        if mask.sum() < min_area:
            continue
        existing = labels[y0:y1, x0:x1]
        near = (f < 1.0 + gap / p["r0"]) & (existing > 0)
        if touch:
            own = existing == j + 1
            overlap = int((mask & own).sum())
            if (near & ~own).any() or overlap == 0 or overlap > 0.3 * min(mask.sum(), (labels == j + 1).sum()):
                continue
        elif near.any():
            continue
        upd = mask & (f < fbest[y0:y1, x0:x1])
        existing[upd] = len(glands) + 1
        fbest[y0:y1, x0:x1][upd] = f[upd]
        p["touch"] = touch
        glands.append(p)
    # keep the largest connected piece of each gland and drop slivers
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


# --------------------------------------------------------------------------- rendering
def render_image(rng: np.random.Generator, difficulty: float, height: int, width: int, *,
                 grade: str = "benign", scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Draw one GlaS-like H&E image.

    Args:
        rng: the only source of randomness (same state -> identical output).
        difficulty: in [0, 1]; more irregular outlines, touching glands, decoys, solid
            nests, stain variation, blur and noise as it grows.
        height, width: image size in pixels (any size >= 16).
        grade: 'benign' or 'malignant' (malignant: larger irregular glands, stratified dark
            nuclei, solid nests without lumen).
        scale: pixel scale relative to GlaS at 20x (glands have a mean radius ~66 * scale px).

    Returns:
        image (H, W, 3) uint8 RGB; instances (H, W) int32, 0 = background, glands 1..n;
        info dict: grade, difficulty, n_glands, n_touching_pairs, n_decoys, n_solid,
        irregularity (mean radial perturbation amplitude).
    """
    if grade not in ("benign", "malignant"):
        raise ValueError(f"grade must be 'benign' or 'malignant', got {grade!r}")
    if not 0.0 <= difficulty <= 1.0:
        raise ValueError(f"difficulty must be in [0, 1], got {difficulty}")
    if height < 16 or width < 16:
        raise ValueError(f"height and width must be >= 16 pixels, got {height}x{width}")
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    d, mal, shape = float(difficulty), grade == "malignant", (int(height), int(width))
    instances, glands = _place_glands(rng, shape, d, mal, scale)
    n = len(glands)
    fg = instances > 0

    # depth inside each gland (touching glands separated by their shared border)
    sep = np.zeros(shape, bool)
    for a, b, sa, sb in ((instances[:, :-1], instances[:, 1:], np.s_[:, :-1], np.s_[:, 1:]),
                         (instances[:-1, :], instances[1:, :], np.s_[:-1, :], np.s_[1:, :])):
        m = (a > 0) & (b > 0) & (a != b)
        sep[sa] |= m
        sep[sb] |= m
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
    wobble = _smooth_noise(rng, shape, 12 * scale)
    lumen = fg & (depth > t_map * (1.0 + 0.25 * wobble))
    if mal:  # cribriform holes in thick / solid epithelium
        holes = _smooth_noise(rng, shape, 5 * scale) > 2.0 - 0.6 * d
        lumen |= fg & holes & (depth > 6 * scale)
    epi = fg & ~lumen
    rel = np.where(epi, depth / np.minimum(t_map, 3.0 * r_eff[instances] + 1), 0)

    # epithelial nuclei: elongated along the depth gradient (benign) or random (malignant)
    spacing = scale * (6.5 if not mal else 8.0 - 1.5 * d)
    n_cand = int(epi.sum() / spacing ** 2 * 1.6) + 1
    ys, xs = rng.uniform(0, shape[0] - 1, n_cand), rng.uniform(0, shape[1] - 1, n_cand)
    iy, ix = ys.astype(np.intp), xs.astype(np.intp)
    r_at = rel[iy, ix]
    lo, hi = (0.05, 0.45) if not mal else (0.03, 0.75 + 0.2 * d)
    keep = epi[iy, ix] & (r_at > lo) & (r_at < hi)
    ys, xs, iy, ix = ys[keep], xs[keep], iy[keep], ix[keep]
    gy, gx = np.gradient(ndimage.gaussian_filter(depth, 2.0))
    ny, nx = gy[iy, ix], gx[iy, ix]
    norm = np.hypot(ny, nx) + 1e-6
    ang = rng.uniform(0, 2 * np.pi, ys.size)
    jitter = 0.3 if not mal else 0.9
    ny = (1 - jitter) * ny / norm + jitter * np.sin(ang)
    nx = (1 - jitter) * nx / norm + jitter * np.cos(ang)
    half = scale * (3.0 if not mal else 2.2 + 1.5 * d)
    sig_n = max(0.6, scale * (2.6 if not mal else 3.0 + 0.6 * d))
    nuc = _splat_rods(shape, ys, xs, half * ny, half * nx, sig_n, rng.uniform(0.8, 1.3, ys.size))

    goblet = np.zeros(shape, np.float32)
    if not mal or d < 0.5:  # mucin vacuoles between nuclei and lumen
        m = rng.random(iy.size) < (0.5 if not mal else 0.15)
        gsel = (r_at[keep] > 0.2) & m
        goblet = _splat_rods(shape, ys[gsel] + 2 * half * ny[gsel], xs[gsel] + 2 * half * nx[gsel],
                             0 * ys[gsel], 0 * xs[gsel], max(0.7, 3.2 * scale), 1.0)
        goblet *= epi & (nuc < 0.3)

    # stroma: fibres (level sets of a smooth field) and scattered elongated nuclei
    phase = _smooth_noise(rng, shape, 40 * scale) * 3.0 + _smooth_noise(rng, shape, 10 * scale) * 0.4
    fibres = 0.5 + 0.5 * np.cos(2 * np.pi * phase * 2.5)
    fine = _smooth_noise(rng, shape, max(0.7, 1.2 * scale))
    stroma = ~fg
    n_s = int(stroma.sum() / (scale * (34.0 - 10.0 * d)) ** 2) + 1
    sy, sx = rng.uniform(0, shape[0] - 1, n_s), rng.uniform(0, shape[1] - 1, n_s)
    inside = stroma[sy.astype(np.intp), sx.astype(np.intp)]
    sy, sx = sy[inside], sx[inside]
    sang = rng.uniform(0, 2 * np.pi, sy.size)
    elong = np.where(rng.random(sy.size) < 0.5, 3.5, 0.3) * scale  # fibroblasts vs lymphocytes
    snuc = _splat_rods(shape, sy, sx, elong * np.sin(sang), elong * np.cos(sang), max(0.5, 1.8 * scale),
                       rng.uniform(0.8, 1.4, sy.size))
    snuc *= stroma

    # decoys: white spaces without an epithelial ring, away from glands
    dist_g = ndimage.distance_transform_edt(~fg).astype(np.float32) if n else np.full(shape, 1e4, np.float32)
    white = np.zeros(shape, np.float32)
    rim = np.zeros(shape, np.float32)
    n_dec_target = 1 + int(rng.poisson(1.0 + 4.0 * d))
    n_decoys = 0
    r_g = 66.0 * scale
    for _ in range(8 * n_dec_target):
        if n_decoys >= n_dec_target:
            break
        kind = rng.choice(["vessel", "fat", "cleft", "tear"], p=[0.3, 0.25, 0.25, 0.2])
        rad = r_g * {"vessel": rng.uniform(0.25, 0.7), "fat": rng.uniform(0.6, 1.2),
                     "cleft": rng.uniform(0.6, 1.6), "tear": rng.uniform(0.3, 0.8)}[kind]
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        if dist_g[int(cy), int(cx)] < (rad if kind != "cleft" else 4 * scale) + 4 * scale:
            continue
        r = math.ceil(rad * 1.6) + 3
        y0, y1, x0, x1 = max(0, int(cy) - r), min(shape[0], int(cy) + r), max(0, int(cx) - r), min(shape[1], int(cx) + r)
        free = dist_g[y0:y1, x0:x1] > 3 * scale
        if kind == "cleft":
            steps = int(2 * rad) + 2
            turn = np.cumsum(rng.normal(0, 0.08, steps)) + rng.uniform(0, 2 * np.pi)
            py = cy + np.cumsum(0.5 * np.sin(turn)) - y0
            px = cx + np.cumsum(0.5 * np.cos(turn)) - x0
            line = np.zeros((y1 - y0, x1 - x0), bool)
            ok = (py >= 0) & (py < y1 - y0 - 0.5) & (px >= 0) & (px < x1 - x0 - 0.5)
            line[np.rint(py[ok]).astype(int), np.rint(px[ok]).astype(int)] = True
            width_px = max(0.6, scale * rng.uniform(1.0, 3.0))
            shape_mask = ndimage.distance_transform_edt(~line) <= width_px
            membranes = np.zeros_like(shape_mask)
        else:
            p = _draw_gland(rng, rad, 0.1 + 0.2 * d)
            p["cy"], p["cx"] = cy, cx
            shape_mask = _gland_field(p, y0, x0, y1 - y0, x1 - x0) < 1.0
            membranes = shape_mask & ~ndimage.binary_erosion(shape_mask, iterations=max(1, round(1.5 * scale)))
            if kind == "fat":
                k = int(rng.integers(3, 9))
                seeds = np.stack([rng.uniform(0, y1 - y0, k), rng.uniform(0, x1 - x0, k)], 1)
                yy, xx = np.mgrid[0:y1 - y0, 0:x1 - x0]
                d2 = (yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2
                cell = d2.argmin(-1)
                edge = np.zeros_like(shape_mask)
                edge[:, 1:] |= cell[:, 1:] != cell[:, :-1]
                edge[1:, :] |= cell[1:, :] != cell[:-1, :]
                membranes |= shape_mask & ndimage.binary_dilation(edge, iterations=max(0, int(scale)) or 1)
            elif kind == "tear":
                membranes[:] = False
        shape_mask &= free
        membranes &= free
        if shape_mask.sum() < 4:
            continue
        white[y0:y1, x0:x1] = np.maximum(white[y0:y1, x0:x1], shape_mask & ~membranes)
        rim[y0:y1, x0:x1] = np.maximum(rim[y0:y1, x0:x1], membranes)
        n_decoys += 1

    # optical densities (skimage HED units)
    h_od = np.where(fg, 0.036 + (0.008 if mal else 0.0), 0.02).astype(np.float32)
    e_od = np.where(fg, 0.028, 0.040 * (0.75 + 0.35 * fibres)).astype(np.float32)
    line_vis = sep & (rng.random() > d)  # faint stromal line between touching glands at low difficulty
    e_od = np.where(line_vis, 0.06, e_od)
    h_od = np.where(line_vis, 0.012, h_od)
    h_od = np.where(lumen, 0.004, h_od)
    e_od = np.where(lumen, 0.006 + 0.01 * np.clip(wobble, 0, None), e_od)
    h_od = h_od * (1 - goblet) + 0.012 * goblet
    e_od = e_od * (1 - goblet) + 0.006 * goblet
    h_nuc = 0.12 + (0.03 * d if mal else 0.0)
    h_od = h_od + h_nuc * nuc + 0.1 * snuc
    e_od = e_od * (1 - 0.4 * nuc)
    h_od = h_od * (1 - white) + 0.002 * white
    e_od = e_od * (1 - white) + 0.003 * white + 0.05 * rim
    h_od = h_od * (1 + 0.15 * fine)
    e_od = e_od * (1 + 0.12 * fine)
    h_scale = math.exp(rng.normal(0, 0.06 + 0.14 * d))
    e_scale = math.exp(rng.normal(0, 0.08 + 0.14 * d))
    dab = rng.uniform(0, 0.002 + 0.008 * d)
    hed = np.stack([h_od * h_scale, e_od * e_scale, np.full(shape, dab, np.float32)], -1)
    rgb = hed2rgb(np.clip(hed, 0, None)).astype(np.float32)
    blur = scale * rng.uniform(0.4, 0.6 + 1.2 * d)
    rgb = ndimage.gaussian_filter(rgb, (blur, blur, 0))
    rgb += rng.normal(0, rng.uniform(1.0, 2.0 + 5.0 * d) / 255.0, rgb.shape).astype(np.float32)
    image = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
    info = {"grade": grade, "difficulty": round(d, 6), "n_glands": n,
            "n_touching_pairs": count_touching_pairs(instances), "n_decoys": n_decoys,
            "n_solid": int(solid[1:].sum()),
            "irregularity": round(float(np.mean([g["irregularity"] for g in glands])) if glands else 0.0, 6)}
    return image, instances, info


# --------------------------------------------------------------------------- data set
def _image_difficulty(base: float, knob: float) -> float:
    """Monotone shift of a base difficulty by the global knob: base ** 4 ** (0.5 - knob).

    knob 0.5 keeps base; knob 1 gives sqrt(base) (harder); knob 0 gives base**2 (easier).
    Order between images is kept at every knob value.
    """
    return float(min(1.0, max(0.0, base)) ** (4.0 ** (0.5 - knob)))


def _split_grades(seed: int, split_id: int, n: int, benign_fraction: float) -> list[str]:
    n_benign = round(benign_fraction * n)
    grades = np.array(["benign"] * n_benign + ["malignant"] * (n - n_benign))
    return list(np.random.default_rng(np.random.SeedSequence([seed, split_id, 10 ** 6])).permutation(grades))


def draw_split_image(seed: int, prefix: str, index: int, *, grade: str, difficulty: float = 0.5,
                     scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Image ``<prefix>_<index>`` of a set (index from 1) exactly as :func:`make_glas` draws it."""
    split_id = {p: i for p, i, _ in SPLITS}[prefix]
    rng = np.random.default_rng(np.random.SeedSequence([seed, split_id, index]))
    sizes, probs = zip(*_SIZES)
    h, w = sizes[int(rng.choice(len(sizes), p=probs))]
    lo, hi = _BASE_RANGE[(prefix, grade)]
    d = _image_difficulty(rng.uniform(lo, hi), difficulty)
    h, w = max(16, round(h * scale)), max(16, round(w * scale))
    return render_image(rng, d, h, w, grade=grade, scale=scale)


_SIRINUKUNWATTANA = {"benign": ("healthy", "adenomatous"),
                     "malignant": ("moderately differentiated", "moderately-to-poorly differentated",
                                   "poorly differentiated")}


def _is_glas_like(folder: Path) -> bool:
    """True when ``folder`` holds only files this generator writes (safe to replace)."""
    pat = re.compile(r"^(train|testA|testB)_\d+(_anno)?\.bmp$|^Grade\.csv$|^synth\.json$")
    return all(p.is_file() and pat.match(p.name) for p in folder.iterdir())


def make_glas(root: str | os.PathLike, *, seed: int = 0, n_train: int = 85, n_test_a: int = 60,
              n_test_b: int = 20, scale: float = 1.0, difficulty: float = 0.5,
              overwrite: bool = False) -> Path:
    """Write a synthetic GlaS set at ``root`` and return its path.

    Files: ``train_1.bmp`` ... ``testB_<n>.bmp`` (RGB uint8), ``<name>_anno.bmp`` (8-bit
    instance maps), ``Grade.csv`` (GlaS columns, values with leading spaces as in GlaS),
    ``synth.json`` (arguments, ``generator_version``, per-image grade / difficulty / counts).

    Grades follow GlaS-like mixes (benign: train 45%, Test A 55%, Test B 20%); each image's
    difficulty is drawn from a grade- and split-dependent range (Test B higher) and shifted
    monotonically by ``difficulty`` in [0, 1]. Same arguments -> byte-identical files.

    The set is written to a temporary sibling folder and renamed into place, so a failed run
    leaves nothing at ``root``. A finished set with the same arguments at ``root`` is returned
    at once. A different set or any other non-empty folder raises ``FileExistsError`` unless
    ``overwrite=True``; even then only a folder holding nothing but GlaS-layout files is
    replaced (a safety guard against deleting unrelated data).
    """
    for name, v in (("n_train", n_train), ("n_test_a", n_test_a), ("n_test_b", n_test_b)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    if not 0.0 <= float(difficulty) <= 1.0:
        raise ValueError(f"difficulty must be in [0, 1], got {difficulty}")
    if not 0.05 <= float(scale) <= 4.0:
        raise ValueError(f"scale must be in [0.05, 4], got {scale}")
    root = Path(root)
    args = {"seed": int(seed), "n_train": int(n_train), "n_test_a": int(n_test_a), "n_test_b": int(n_test_b),
            "scale": float(scale), "difficulty": float(difficulty), "generator_version": GENERATOR_VERSION}
    if root.exists():
        if not root.is_dir():
            raise FileExistsError(f"{root} exists and is not a folder")
        meta_path = root / "synth.json"
        if meta_path.is_file():
            try:
                old = json.loads(meta_path.read_text())
            except (OSError, ValueError):
                old = {}
            if old.get("args") == args and old.get("complete"):
                return root
        if any(root.iterdir()):
            what = "a synthetic set with other arguments" if meta_path.is_file() else "other files"
            if not overwrite:
                raise FileExistsError(f"{root} already holds {what}; pass overwrite=True to replace it "
                                      f"(wanted {args})")
            if not _is_glas_like(root):
                raise FileExistsError(f"{root} holds files that are not GlaS-layout files; refusing to "
                                      "delete it even with overwrite=True: choose another folder")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        images: dict[str, Any] = {}
        rows = []
        counts = {"train": n_train, "testA": n_test_a, "testB": n_test_b}
        for prefix, split_id, frac in SPLITS:
            grades = _split_grades(int(seed), split_id, counts[prefix], frac)
            for i, grade in enumerate(grades, start=1):
                name = f"{prefix}_{i}"
                image, inst, info = draw_split_image(int(seed), prefix, i, grade=grade,
                                                     difficulty=float(difficulty), scale=float(scale))
                if inst.max() > 255:
                    raise RuntimeError(f"{name}: {inst.max()} glands do not fit an 8-bit annotation")
                Image.fromarray(image, "RGB").save(tmp / f"{name}.bmp", format="BMP")
                Image.fromarray(inst.astype(np.uint8), "L").save(tmp / f"{name}_anno.bmp", format="BMP")
                images[name] = info
                sub = _SIRINUKUNWATTANA[grade]
                sub_grade = sub[min(len(sub) - 1, int(info["difficulty"] * len(sub)))]
                rows.append([name, str(1 + (i - 1) // 4 + 100 * split_id), f" {grade}", f" {sub_grade}"])
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["name", " patient ID", " grade (GlaS)", " grade (Sirinukunwattana et al. 2015)"])
        writer.writerows(rows)
        (tmp / "Grade.csv").write_text(buf.getvalue())
        meta = {"args": args, "complete": True, "images": images}
        (tmp / "synth.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        old_dir = None
        if root.exists():
            old_dir = root.parent / f".{root.name}.old-{uuid.uuid4().hex[:8]}"
            root.rename(old_dir)
        tmp.rename(root)
        if old_dir is not None:
            shutil.rmtree(old_dir, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root
