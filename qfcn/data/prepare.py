"""The study's data step (notebook ``01-data``, docs/method.md §2): check its parameters, write
the synthetic GlaS (or take the user's folder), load it and build the manifest record that
every later step checks. Provenance stamping and the manifest's place in the study folder
belong to the study layer (``runs.stamp``, ``runs.manifest_path``).

>>> import tempfile
>>> from pathlib import Path
>>> params = dict(glas_dir="", seed=0, n_train=2, n_test_a=1, n_test_b=1, scale=0.25, difficulty=0.5,
...               contour_width=3)
>>> root = Path(tempfile.mkdtemp()) / "glas"
>>> check_data_params(root, **params)
>>> width = contour_width_px(3, 0.25, synthetic=True)
>>> ds, record = prepare_glas(root, synthetic=True, params=params, contour_width_px=width)
>>> width, len(ds.train), record["counts"]["test_b"]["images"], record["hash"] == glas_manifest(root)["hash"]
(1, 2, 1, True)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qfcn.data.glas import GlasDataset, glas_manifest, load_glas
from qfcn.data.synth import make_glas


def check_data_params(root: str | os.PathLike, *, glas_dir: str, n_train: Any, n_test_a: Any, n_test_b: Any,
                      scale: Any, difficulty: Any, **_: Any) -> None:
    """Parameters of ``01-data``: a given ``glas_dir`` (resolved to ``root``) must be a folder;
    otherwise the synthetic set's sizes must be positive integers, ``scale`` in [0.05, 2] and
    ``difficulty`` in [0, 1]. Raises ``FileNotFoundError`` / ``ValueError`` naming the parameter."""
    if glas_dir:
        if not Path(root).is_dir():
            raise FileNotFoundError(f"glas_dir={glas_dir!r}: {root} is not a folder (expected a folder in GlaS layout)")
        return
    for name, value in dict(n_train=n_train, n_test_a=n_test_a, n_test_b=n_test_b).items():
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{name}={value!r}: expected a positive integer")
    if not 0.05 <= scale <= 2.0:
        raise ValueError(f"scale={scale!r}: expected a value in [0.05, 2]")
    if not 0.0 <= difficulty <= 1.0:
        raise ValueError(f"difficulty={difficulty!r}: expected a value in [0, 1]")


def contour_width_px(contour_width: int, scale: float, *, synthetic: bool) -> int:
    """Contour-target width in pixels: ``contour_width`` (px at GlaS scale 1) times the synthetic
    ``scale``; a given folder is taken at scale 1. At least 1 px.

    >>> contour_width_px(3, 0.5, synthetic=True), contour_width_px(3, 0.5, synthetic=False)
    (2, 3)
    """
    return max(1, round(contour_width * (scale if synthetic else 1.0)))


def prepare_glas(root: str | os.PathLike, *, synthetic: bool, params: Mapping[str, Any],
                 contour_width_px: int) -> tuple[GlasDataset, dict[str, Any]]:
    """Write the synthetic GlaS at ``root`` when ``synthetic`` (from ``params``' seed, n_train,
    n_test_a, n_test_b, scale, difficulty; a finished set is reused), load the folder and return
    ``(dataset, record)``. The record is the data manifest before provenance stamping:
    ``{'glas_root', 'synthetic', 'params', 'contour_width_px'}`` plus
    :func:`qfcn.data.glas_manifest`'s ``'files'``, ``'counts'`` and ``'hash'``."""
    if synthetic:
        make_glas(root, seed=params["seed"], n_train=params["n_train"], n_test_a=params["n_test_a"],
                  n_test_b=params["n_test_b"], scale=params["scale"], difficulty=params["difficulty"])
    dataset = load_glas(root)
    manifest = glas_manifest(root)
    record = {"glas_root": str(root), "synthetic": synthetic, "params": params,
              "contour_width_px": contour_width_px, **manifest}
    return dataset, record
