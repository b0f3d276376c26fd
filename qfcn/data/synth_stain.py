"""H&E colour of the synthetic GlaS generator (docs/method.md §2): haematoxylin / eosin / DAB
optical-density maps in skimage HED units (real H&E: H median ~0.03, 99th percentile ~0.14,
E ~0.02-0.05), per-image stain variation, :func:`skimage.color.hed2rgb`, blur and noise.

>>> import numpy as np
>>> z = np.zeros((16, 16), np.float32)
>>> tissue = dict(fg=z > 0, sep=z > 0, lumen=z > 0, fibres=z, wobble=z, goblet=z, nuc=z, snuc=z,
...               white=z, rim=z, fine=z)
>>> rng = np.random.default_rng(0)
>>> image = to_rgb(rng, *optical_densities(rng, tissue, 0.5, False), 0.5, 0.25)
>>> image.shape, image.dtype
((16, 16, 3), dtype('uint8'))
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from scipy import ndimage
from skimage.color import hed2rgb


def optical_densities(rng: np.random.Generator, t: Mapping[str, np.ndarray], d: float,
                      mal: bool) -> tuple[np.ndarray, np.ndarray]:
    """Haematoxylin and eosin optical densities (H, W) from the tissue maps ``t``: 'fg', 'sep',
    'lumen' (bool); 'fibres', 'wobble', 'goblet', 'nuc', 'snuc', 'white', 'rim', 'fine' (float).
    At low difficulty ``d`` a faint stromal line shows between touching glands."""
    fg, lumen, goblet, nuc, white = t["fg"], t["lumen"], t["goblet"], t["nuc"], t["white"]
    h_od = np.where(fg, 0.036 + (0.008 if mal else 0.0), 0.02).astype(np.float32)
    e_od = np.where(fg, 0.028, 0.040 * (0.75 + 0.35 * t["fibres"])).astype(np.float32)
    line_vis = t["sep"] & (rng.random() > d)  # faint stromal line between touching glands at low difficulty
    e_od = np.where(line_vis, 0.06, e_od)
    h_od = np.where(line_vis, 0.012, h_od)
    h_od = np.where(lumen, 0.004, h_od)
    e_od = np.where(lumen, 0.006 + 0.01 * np.clip(t["wobble"], 0, None), e_od)
    h_od = h_od * (1 - goblet) + 0.012 * goblet
    e_od = e_od * (1 - goblet) + 0.006 * goblet
    h_nuc = 0.12 + (0.03 * d if mal else 0.0)
    h_od = h_od + h_nuc * nuc + 0.1 * t["snuc"]
    e_od = e_od * (1 - 0.4 * nuc)
    h_od = h_od * (1 - white) + 0.002 * white
    e_od = e_od * (1 - white) + 0.003 * white + 0.05 * t["rim"]
    h_od = h_od * (1 + 0.15 * t["fine"])
    e_od = e_od * (1 + 0.12 * t["fine"])
    return h_od, e_od


def to_rgb(rng: np.random.Generator, h_od: np.ndarray, e_od: np.ndarray, d: float, scale: float) -> np.ndarray:
    """(H, W, 3) uint8 RGB: per-image H and E strength, a little DAB, hed2rgb, blur, noise
    (stain variation, blur and noise all grow with difficulty ``d``)."""
    h_scale = math.exp(rng.normal(0, 0.06 + 0.14 * d))
    e_scale = math.exp(rng.normal(0, 0.08 + 0.14 * d))
    dab = rng.uniform(0, 0.002 + 0.008 * d)
    hed = np.stack([h_od * h_scale, e_od * e_scale, np.full(h_od.shape, dab, np.float32)], -1)
    rgb = hed2rgb(np.clip(hed, 0, None)).astype(np.float32)
    blur = scale * rng.uniform(0.4, 0.6 + 1.2 * d)
    rgb = ndimage.gaussian_filter(rgb, (blur, blur, 0))
    rgb += rng.normal(0, rng.uniform(1.0, 2.0 + 5.0 * d) / 255.0, rgb.shape).astype(np.float32)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
