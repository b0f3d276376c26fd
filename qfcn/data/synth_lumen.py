"""Lumen contents of the synthetic GlaS generator (docs/method.md §2): per gland, nothing, pink
secretion, pale wispy mucin or (malignant, more often as difficulty grows) "dirty" necrosis with
nuclear dust, each floating in the lumen with a retraction gap, so lumens are not all white.

>>> import numpy as np
>>> inst = np.zeros((60, 60), np.int32); inst[5:55, 5:55] = 1
>>> lumen = np.zeros((60, 60), bool); lumen[15:45, 15:45] = True
>>> c = lumen_contents(np.random.default_rng(0), inst, lumen, 1.0, True, 0.5)
>>> sorted(c), all(float(v[~lumen].max()) == 0.0 for v in c.values())
(['dust', 'mucin', 'necrosis', 'secretion'], True)
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from qfcn.data.synth_shapes import smooth_noise, splat_rods

KINDS = ("none", "secretion", "mucin", "necrosis")


def _kind_probs(d: float, mal: bool) -> list[float]:
    """Probabilities of :data:`KINDS` for one gland at difficulty ``d``."""
    if mal:
        p = [0.0, 0.2, 0.05, 0.1 + 0.4 * d]
    else:
        p = [0.0, 0.15 + 0.1 * d, 0.15 + 0.1 * d, 0.0]
    p[0] = 1.0 - sum(p)
    return p


def lumen_contents(rng: np.random.Generator, instances: np.ndarray, lumen: np.ndarray, d: float,
                   mal: bool, scale: float) -> dict[str, np.ndarray]:
    """Soft (H, W) float32 maps in [0, 1], zero outside ``lumen``: 'secretion', 'mucin', 'necrosis'
    (the filled part of each gland's lumen, by its drawn kind) and 'dust' (nuclear fragments)."""
    n = int(instances.max())
    kind = rng.choice(len(KINDS), size=n + 1, p=_kind_probs(d, mal))
    kind[0] = 0
    gap = scale * rng.uniform(1.0, 6.0, n + 1)
    fill = rng.uniform(-1.0, 0.6, n + 1)
    ldepth = ndimage.distance_transform_edt(lumen).astype(np.float32)
    blob = smooth_noise(rng, lumen.shape, 8 * scale)
    body = lumen & (ldepth > gap[instances]) & (blob > fill[instances])
    soft = ndimage.gaussian_filter(body.astype(np.float32), max(0.5, 1.2 * scale)) * lumen
    k_map = kind[instances]
    out = {name: np.where(k_map == i, soft, 0.0).astype(np.float32) for i, name in enumerate(KINDS) if i}
    wisp = 0.5 + 0.5 * np.clip(smooth_noise(rng, lumen.shape, 2.5 * scale), -1, 1)
    out["mucin"] *= wisp
    nec = out["necrosis"] > 0.5
    n_dust = int(nec.sum() / (6.0 * scale) ** 2) + 1
    ys, xs = rng.uniform(0, lumen.shape[0] - 1, n_dust), rng.uniform(0, lumen.shape[1] - 1, n_dust)
    ok = nec[ys.astype(np.intp), xs.astype(np.intp)]
    z = np.zeros(int(ok.sum()))
    out["dust"] = splat_rods(lumen.shape, ys[ok], xs[ok], z, z, max(0.5, 1.4 * scale),
                             rng.uniform(0.5, 1.2, z.size)) * lumen
    return out
