"""H&E colour of the synthetic GlaS generator (docs/method.md §2): haematoxylin / eosin / DAB
optical-density maps in skimage HED units (real H&E: H median ~0.03, 99th percentile ~0.14,
E ~0.02-0.05) with texture and stain variation inside the glands (mottled cytoplasm, a stain
shift per gland), lumen contents, decoys and tissue folds, converted by
:func:`skimage.color.hed2rgb` with a per-image stain strength.

>>> import numpy as np
>>> z = np.zeros((16, 16), np.float32)
>>> keys = ("fibres", "wobble", "goblet", "nuc", "snuc", "fine", "secretion", "mucin", "necrosis",
...         "dust", "white", "rim", "rbc", "dnuc", "ring")
>>> tissue = dict(inst=z.astype(np.int32), sep=z > 0, lumen=z > 0, **{k: z for k in keys})
>>> rng = np.random.default_rng(0)
>>> rgb = stain_to_rgb(rng, *optical_densities(rng, tissue, 0.5, False, 0.25), 0.5, 1.0 + z)
>>> rgb.shape, rgb.dtype, bool(0.0 <= rgb.min() and rgb.max() <= 1.0)
((16, 16, 3), dtype('float32'), True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from skimage.color import hed2rgb

from qfcn.data.synth_shapes import smooth_noise


def _glands(rng: np.random.Generator, t: Mapping[str, np.ndarray], d: float, mal: bool,
            scale: float) -> tuple[np.ndarray, np.ndarray]:
    """H and E of glands (mottled cytoplasm, lumen, goblet mucin) on stroma (fibres), before nuclei."""
    fg, lumen, goblet = t["inst"] > 0, t["lumen"], t["goblet"]
    shape = fg.shape
    mottle = 0.8 * smooth_noise(rng, shape, max(0.8, 2.5 * scale)) + 0.6 * smooth_noise(rng, shape, 9 * scale)
    h_cyto = 0.034 + (0.008 + 0.01 * d if mal else 0.0)
    h_od = np.where(fg, h_cyto * (1 + 0.12 * mottle), 0.02).astype(np.float32)
    e_od = np.where(fg, 0.028 * (1 + (0.12 + 0.2 * d) * mottle), 0.040 * (0.75 + 0.35 * t["fibres"]))
    line_vis = t["sep"] & (rng.random() > d)  # faint stromal line between touching glands at low difficulty
    e_od = np.where(line_vis, 0.06, e_od)
    h_od = np.where(line_vis, 0.012, h_od)
    h_od = np.where(lumen, 0.004, h_od)
    e_od = np.where(lumen, 0.006 + 0.01 * np.clip(t["wobble"], 0, None), e_od)
    h_od = h_od * (1 - goblet) + 0.012 * goblet
    e_od = e_od * (1 - goblet) + 0.006 * goblet
    return h_od, e_od.astype(np.float32)


def _blend(od: np.ndarray, alpha: np.ndarray, value: float) -> np.ndarray:
    """``od`` moved towards ``value`` by the soft mask ``alpha`` in [0, 1]."""
    return od * (1 - alpha) + value * alpha


def optical_densities(rng: np.random.Generator, t: Mapping[str, np.ndarray], d: float, mal: bool,
                      scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Haematoxylin and eosin optical densities (H, W) float32 from the tissue maps ``t``: 'inst'
    (instance map), 'sep', 'lumen' (bool); soft maps 'fibres', 'wobble', 'goblet', 'nuc', 'snuc',
    'fine', lumen contents 'secretion', 'mucin', 'necrosis', 'dust' and decoys 'white', 'rim',
    'rbc', 'dnuc', 'ring'. Each gland gets its own H and E strength (log-sd 0.04 + 0.14 d)."""
    h_od, e_od = _glands(rng, t, d, mal, scale)
    h_od = _blend(_blend(_blend(h_od, t["secretion"], 0.008), t["mucin"], 0.024), t["necrosis"], 0.03)
    e_od = _blend(_blend(_blend(e_od, t["secretion"], 0.045), t["mucin"], 0.01), t["necrosis"], 0.06)
    h_od = h_od + (0.12 + (0.03 * d if mal else 0.0)) * t["nuc"] + 0.1 * t["dust"]
    e_od = e_od * (1 - 0.4 * t["nuc"])
    n_lab = int(t["inst"].max()) + 1
    h_gl = np.exp(rng.normal(0, 0.04 + 0.14 * d, n_lab)).astype(np.float32)
    e_gl = np.exp(rng.normal(0, 0.04 + 0.14 * d, n_lab)).astype(np.float32)
    h_gl[0] = e_gl[0] = 1.0
    h_od, e_od = h_od * h_gl[t["inst"]], e_od * e_gl[t["inst"]]
    h_od = h_od + 0.1 * t["snuc"] + 0.11 * t["dnuc"]
    e_od = e_od * (1 + 0.5 * t["ring"])
    h_od = _blend(_blend(h_od, t["white"], 0.002), t["rbc"], 0.006)
    e_od = _blend(_blend(e_od, t["white"], 0.003), t["rbc"], 0.10) + 0.05 * t["rim"]
    h_od = h_od * (1 + 0.15 * t["fine"])
    e_od = e_od * (1 + 0.12 * t["fine"])
    return h_od.astype(np.float32), e_od.astype(np.float32)


def stain_to_rgb(rng: np.random.Generator, h_od: np.ndarray, e_od: np.ndarray, d: float,
                 thickness: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 RGB in [0, 1]: per-image H and E strength (more variable as ``d`` grows),
    a little DAB, optical densities times the tissue ``thickness`` (1, or about 2 in a fold), hed2rgb."""
    h_scale = math.exp(rng.normal(0, 0.06 + 0.14 * d))
    e_scale = math.exp(rng.normal(0, 0.08 + 0.14 * d))
    dab = rng.uniform(0, 0.002 + 0.008 * d)
    hed = np.stack([h_od * h_scale, e_od * e_scale, np.full(h_od.shape, dab, np.float32)], -1)
    hed *= thickness[..., None]
    return np.clip(hed2rgb(np.clip(hed, 0, None)), 0.0, 1.0).astype(np.float32)
