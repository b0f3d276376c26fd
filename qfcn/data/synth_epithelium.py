"""Gland interiors of the synthetic GlaS generator (docs/method.md §2): epithelium of varying
thickness, lumens of varying size and shape, solid nests without lumen and cribriform glands
(several lumina in one gland), and the epithelial nuclei (density varying between and within
glands) with goblet-cell mucin. Random draws happen in a fixed order from the generator passed in.

>>> import numpy as np
>>> inst = np.zeros((60, 80), np.int32); inst[10:50, 10:40] = 1; inst[10:50, 40:70] = 2
>>> inner = gland_interior(np.random.default_rng(0), inst, 2, 0.5, False, 0.5)
>>> bool((inner.lumen <= (inst > 0)).all()), int(inner.sep.sum())
(True, 80)
>>> nuc, goblet = epithelial_nuclei(np.random.default_rng(1), inner, inst, 0.5, False, 0.5)
>>> nuc.shape, float(nuc[inst == 0].max()) <= 1.0
((60, 80), True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from qfcn.data.synth_shapes import smooth_noise, splat_rods


@dataclass
class Interior:
    """Gland interior maps, all (H, W): ``sep`` borders between touching glands (bool),
    ``depth`` distance to the gland edge (px, float32), ``wobble`` smooth noise, ``lumen`` and
    ``epi`` (bool), ``rel`` relative depth in the epithelium; per label (n + 1,) bool ``solid``
    (no lumen) and ``cribriform`` (several small lumina)."""

    sep: np.ndarray
    depth: np.ndarray
    solid: np.ndarray
    cribriform: np.ndarray
    wobble: np.ndarray
    lumen: np.ndarray
    epi: np.ndarray
    rel: np.ndarray

    def restrict(self, fg: np.ndarray) -> None:
        """Drop everything outside the gland mask ``fg`` (after :func:`~qfcn.data.synth_glands.fragment`)."""
        self.sep &= fg
        self.lumen &= fg
        self.epi &= fg
        self.rel = np.where(fg, self.rel, 0.0)


def touching_borders(instances: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels on a 4-connected border between two distinct glands."""
    sep = np.zeros(instances.shape, bool)
    for a, b, sa, sb in ((instances[:, :-1], instances[:, 1:], np.s_[:, :-1], np.s_[:, 1:]),
                         (instances[:-1, :], instances[1:, :], np.s_[:-1, :], np.s_[1:, :])):
        m = (a > 0) & (b > 0) & (a != b)
        sep[sa] |= m
        sep[sb] |= m
    return sep


def _cribriform_lumina(rng: np.random.Generator, instances: np.ndarray, depth: np.ndarray,
                       labels: np.ndarray, scale: float) -> np.ndarray:
    """(H, W) bool: 3-12 small round lumina (radius 3-10 px at scale 1) inside each gland of ``labels``."""
    out = np.zeros(instances.shape, bool)
    objs = ndimage.find_objects(instances)
    for lab in labels:
        sl = objs[lab - 1]
        r = scale * rng.uniform(3.0, 10.0, int(rng.integers(3, 13)))
        ys, xs = np.nonzero((instances[sl] == lab) & (depth[sl] > 6.0 * scale + r.max()))
        if ys.size == 0:
            continue
        pick = rng.integers(ys.size, size=r.size)
        yy, xx = np.mgrid[0:out[sl].shape[0], 0:out[sl].shape[1]].astype(np.float32)
        for k, rk in zip(pick, r):
            out[sl] |= (yy - ys[k]) ** 2 + (xx - xs[k]) ** 2 < rk * rk
    return out


def gland_interior(rng: np.random.Generator, instances: np.ndarray, n: int, d: float, mal: bool,
                   scale: float) -> Interior:
    """Epithelium and lumen of the ``n`` glands. Per gland: epithelium thickness 20-75% of the
    gland's radius (dilated to pinpoint lumens), lumen outline wobble growing with ``d``; solid
    nests (malignant 10-60%, benign 3-15% as ``d`` goes 0 -> 1) and cribriform glands (malignant)."""
    shape, fg = instances.shape, instances > 0
    sep = touching_borders(instances)
    depth = ndimage.distance_transform_edt(fg & ~sep).astype(np.float32)
    area = np.bincount(instances.ravel(), minlength=n + 1).astype(np.float32)
    r_eff = np.sqrt(area / np.pi)
    solid = rng.random(n + 1) < ((0.10 + 0.5 * d) if mal else 0.03 + 0.12 * d)
    crib = ~solid & (rng.random(n + 1) < (0.05 + 0.45 * d if mal else 0.0)) & (r_eff > 35 * scale)
    solid[0] = crib[0] = False
    thick = r_eff * rng.uniform(0.2, 0.75, n + 1)
    thick = np.where(solid | crib, np.inf, np.maximum(thick, 2.0 * scale))
    thick[0] = np.inf
    t_map = thick[instances]
    wobble = smooth_noise(rng, shape, 12 * scale)
    amp = rng.uniform(0.1, 0.3 + 0.5 * d, n + 1)[instances]
    lumen = fg & (depth > t_map * (1.0 + amp * wobble))
    lumen |= _cribriform_lumina(rng, instances, depth, np.flatnonzero(crib), scale)
    epi = fg & ~lumen
    rel = np.where(epi, depth / np.minimum(t_map, 3.0 * r_eff[instances] + 1), 0)
    return Interior(sep, depth, solid, crib, wobble, lumen, epi, rel)


def epithelial_nuclei(rng: np.random.Generator, inner: Interior, instances: np.ndarray, d: float,
                      mal: bool, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Soft (H, W) maps of epithelial nuclei and goblet-cell mucin vacuoles. Nuclei sit along the
    base of the epithelium, elongated along the depth gradient when benign, stratified, larger
    and randomly oriented when malignant; their density varies per gland and in patches (more
    so as ``d`` grows). Mucin vacuoles sit between nuclei and lumen."""
    shape, epi = inner.epi.shape, inner.epi
    spacing = scale * (6.0 if not mal else 8.0 - 1.2 * d)
    gy, gx = np.mgrid[0:shape[0]:spacing, 0:shape[1]:spacing]  # jittered grid: crowded, not clumped
    n_cand = gy.size
    ys = np.clip(gy.ravel() + rng.uniform(-0.5, 0.5, n_cand) * spacing, 0, shape[0] - 1)
    xs = np.clip(gx.ravel() + rng.uniform(-0.5, 0.5, n_cand) * spacing, 0, shape[1] - 1)
    iy, ix = ys.astype(np.intp), xs.astype(np.intp)
    dens = rng.uniform((0.6 if mal else 0.85) - 0.35 * d, 1.0, int(instances.max()) + 1)[instances]
    dens = np.clip(dens * (1.0 + (0.1 + 0.25 * d) * smooth_noise(rng, shape, 20 * scale)), 0.1, 1.0)
    r_at = inner.rel[iy, ix]
    lo, hi = (0.05, 0.4) if not mal else (0.03, 0.75 + 0.2 * d)
    keep = epi[iy, ix] & (r_at > lo) & (r_at < hi) & (rng.random(n_cand) < dens[iy, ix])
    ys, xs, iy, ix = ys[keep], xs[keep], iy[keep], ix[keep]
    gy, gx = np.gradient(ndimage.gaussian_filter(inner.depth, 2.0))
    ny, nx = gy[iy, ix], gx[iy, ix]
    norm = np.hypot(ny, nx) + 1e-6
    ang = rng.uniform(0, 2 * np.pi, ys.size)
    jitter = 0.3 if not mal else 0.9
    ny = (1 - jitter) * ny / norm + jitter * np.sin(ang)
    nx = (1 - jitter) * nx / norm + jitter * np.cos(ang)
    half = scale * (2.6 if not mal else 2.5 + 1.5 * d)
    sig_n = max(0.6, scale * (1.6 if not mal else 2.0 + 0.4 * d))
    nuc = splat_rods(shape, ys, xs, half * ny, half * nx, sig_n,
                     rng.uniform(0.8, 1.25 + (0.5 * d if mal else 0.0), ys.size))
    goblet = np.zeros(shape, np.float32)
    if not mal or d < 0.5:  # mucin vacuoles between nuclei and lumen
        m = rng.random(iy.size) < (0.5 if not mal else 0.15)
        gsel = (r_at[keep] > 0.2) & m
        goblet = splat_rods(shape, ys[gsel] + 2 * half * ny[gsel], xs[gsel] + 2 * half * nx[gsel],
                            0 * ys[gsel], 0 * xs[gsel], max(0.7, 3.2 * scale), 1.0)
        goblet *= epi & (nuc < 0.3)
    return nuc, goblet
