"""Stroma of the synthetic GlaS generator (docs/method.md §2): eosin-rich fibres (level sets of
a smooth field), fine texture, and stromal nuclei (fibroblasts and lymphocytes) whose density
varies in patches (cellular lamina propria next to loose stroma), more so as difficulty grows.

>>> import numpy as np
>>> fg = np.zeros((40, 60), bool); fg[10:20, 10:30] = True
>>> fibres, fine, snuc = stroma(np.random.default_rng(0), fg, 0.5, 0.25)
>>> fibres.shape, float(snuc[fg].max())
((40, 60), 0.0)
"""

from __future__ import annotations

import numpy as np

from qfcn.data.synth_shapes import smooth_noise, splat_rods


def stroma(rng: np.random.Generator, fg: np.ndarray, d: float,
           scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fibres in [0, 1], fine unit-std texture, stromal-nuclei soft mask 0 on glands), all (H, W),
    for gland mask ``fg``, difficulty ``d`` (denser, patchier nuclei) and pixel ``scale``."""
    shape = fg.shape
    phase = smooth_noise(rng, shape, 40 * scale) * 3.0 + smooth_noise(rng, shape, 10 * scale) * 0.4
    fibres = 0.5 + 0.5 * np.cos(2 * np.pi * phase * 2.5)
    fine = smooth_noise(rng, shape, max(0.7, 1.2 * scale))
    tissue = ~fg
    n_s = 3 * int(tissue.sum() / (scale * (34.0 - 10.0 * d)) ** 2) + 1
    sy, sx = rng.uniform(0, shape[0] - 1, n_s), rng.uniform(0, shape[1] - 1, n_s)
    cellular = np.clip(0.33 + (0.2 + 0.2 * d) * smooth_noise(rng, shape, 50 * scale), 0.03, 1.0)
    iy, ix = sy.astype(np.intp), sx.astype(np.intp)
    inside = tissue[iy, ix] & (rng.random(n_s) < cellular[iy, ix])
    sy, sx = sy[inside], sx[inside]
    sang = rng.uniform(0, 2 * np.pi, sy.size)
    elong = np.where(rng.random(sy.size) < 0.5, 3.5, 0.3) * scale  # fibroblasts vs lymphocytes
    snuc = splat_rods(shape, sy, sx, elong * np.sin(sang), elong * np.cos(sang), max(0.5, 1.8 * scale),
                      rng.uniform(0.8, 1.4, sy.size))
    snuc *= tissue
    return fibres, fine, snuc
