"""Figure helpers shared by the notebooks: reproducible PNGs and instance overlays.

PNGs are written with fixed metadata (no software/version stamp) and a fixed DPI, atomically,
so that a rerun with identical numbers gives byte-identical files. Images are (H, W, 3) uint8
RGB or float in [0, 1]; instance maps are (H, W) integer labels, 0 = background.

>>> inst = np.array([[0, 1, 1], [0, 1, 1]])
>>> outline(np.zeros((2, 3, 3), np.uint8), inst, color=(1, 0, 0))[..., 0].tolist()  # inner edge (not the image border)
[[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]
>>> label_colors(inst)[0, 0].tolist(), label_colors(inst).shape
([0.0, 0.0, 0.0], (2, 3, 3))
"""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from skimage.segmentation import find_boundaries

from qfcn.io import atomic_write_bytes

DPI = 72  # plots
PHOTO_DPI = 50  # grids of histology images (PNG compresses them poorly: keep them small)


def save(fig, path: str | Path, *, dpi: int = DPI) -> None:
    """Save a matplotlib figure as PNG at ``path`` (atomic, reproducible), close it, and, inside
    a Jupyter kernel, display the saved PNG itself, so that the notebook embeds the same bytes
    as ``figures/`` once (not a second, larger rendering)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())
    try:  # optional: only inside a Jupyter kernel is there anything to display
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:  # pragma: no cover - IPython comes with the notebook stack
        return
    if get_ipython() is not None:
        display(Image(data=buf.getvalue(), format="png"))


def outline(image: np.ndarray, instances: np.ndarray, color=(0.0, 1.0, 0.2), thick: bool = False) -> np.ndarray:
    """Image (H, W, 3) uint8 with the boundaries of every instance of ``instances`` (H, W) drawn
    in ``color`` (RGB in [0, 1]); touching instances keep the boundary between them.
    Returns float (H, W, 3) in [0, 1]."""
    out = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32).copy()
    edges = find_boundaries(instances, mode="thick" if thick else "inner")
    out[edges] = color
    return out


def label_colors(instances: np.ndarray, seed: int = 0) -> np.ndarray:
    """A random colour per instance (background black): (H, W, 3) float in [0, 1]."""
    rng = np.random.default_rng(seed)
    lut = rng.uniform(0.25, 1.0, size=(int(instances.max()) + 1, 3)).astype(np.float32)
    lut[0] = 0
    return lut[instances]
