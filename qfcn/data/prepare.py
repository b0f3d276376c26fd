"""The study's data step (notebook ``01-data``, docs/method.md §2): check its parameters, write
the synthetic GlaS (always at GlaS size, generator scale 1.0) or take the user's folder, carve
the fixed validation images, load it at the working ``scale`` and build the manifest record
that every later step checks (and :func:`qfcn.data.load_from_manifest` loads from).
Provenance stamping and the manifest's place in the study folder belong to the study layer
(``runs.stamp``, ``runs.manifest_path``).

A user's folder (here a small synthetic one, written at a quarter of GlaS size) at working
scale 0.5::

>>> import tempfile
>>> from qfcn import data
>>> root = data.make_glas(tempfile.mkdtemp() + "/glas", n_train=3, n_test_a=1, n_test_b=1, scale=0.25)
>>> params = dict(glas_dir=str(root), seed=0, n_train=3, n_test_a=1, n_test_b=1, scale=0.5, difficulty=0.5,
...               contour_width=3, val_fraction=0.15, labels="instances")
>>> check_data_params(root, **params)
>>> width = contour_width_px(3, 0.5)
>>> ds, record = prepare_glas(root, synthetic=False, params=params, contour_width_px=width)
>>> width, len(ds.train), record["val"], record["scale"], ds.test_b[0].source_shape, ds.test_b[0].image.shape
(2, 2, ['train_2'], 0.5, (130, 194), (65, 97, 3))
>>> data.load_from_manifest(record).val[0].name
'train_2'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qfcn.data.glas import GRADE_FILE, UNKNOWN_GRADE, GlasDataset, file_entries, json_hash, read_grades, scan_glas
from qfcn.data.load import LABEL_SOURCES, data_hash, load_glas
from qfcn.data.splits import carve_validation
from qfcn.data.synth import make_glas

#: the synthetic GlaS is always written at GlaS size; the working scale is applied on load
SYNTHETIC_WRITE_SCALE = 1.0
#: the data step's accepted working scales (closed interval) and largest validation share; the
#: params-file schema (:mod:`qfcn.study.schema`) applies the same bounds before any run starts
SCALE_RANGE = (0.05, 2.0)
VAL_FRACTION_MAX = 0.5


def check_data_params(root: str | os.PathLike, *, glas_dir: str, n_train: Any, n_test_a: Any, n_test_b: Any,
                      scale: Any, difficulty: Any, val_fraction: Any, labels: Any, **_: Any) -> None:
    """Parameters of ``01-data``: ``scale`` in [0.05, 2], ``val_fraction`` in (0, 0.5] and
    ``labels`` in :data:`qfcn.data.load.LABEL_SOURCES` for every data source; a given
    ``glas_dir`` (resolved to ``root``) must be a folder, otherwise the synthetic set's sizes must
    be positive integers and ``difficulty`` in [0, 1]. Raises ``FileNotFoundError`` /
    ``ValueError`` naming the parameter."""
    lo, hi = SCALE_RANGE
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not lo <= scale <= hi:
        raise ValueError(f"scale={scale!r}: expected a value in [{lo:g}, {hi:g}]")
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 < val_fraction <= VAL_FRACTION_MAX:
        raise ValueError(f"val_fraction={val_fraction!r}: expected a value in (0, {VAL_FRACTION_MAX:g}]")
    if labels not in LABEL_SOURCES:
        raise ValueError(f"labels={labels!r}: expected one of {list(LABEL_SOURCES)}")
    if glas_dir:
        if not Path(root).is_dir():
            raise FileNotFoundError(f"glas_dir={glas_dir!r}: {root} is not a folder (expected a folder in GlaS layout)")
        return
    for name, value in dict(n_train=n_train, n_test_a=n_test_a, n_test_b=n_test_b).items():
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{name}={value!r}: expected a positive integer")
    if not 0.0 <= difficulty <= 1.0:
        raise ValueError(f"difficulty={difficulty!r}: expected a value in [0, 1]")


def contour_width_px(contour_width: int, scale: float) -> int:
    """Contour-target width in pixels at the working scale: ``contour_width`` (px at GlaS size,
    scale 1.0) times ``scale``, for every data source. At least 1 px.

    >>> contour_width_px(3, 0.5), contour_width_px(3, 1.0), contour_width_px(3, 0.1)
    (2, 3, 1)
    """
    return max(1, round(contour_width * scale))


def prepare_glas(root: str | os.PathLike, *, synthetic: bool, params: Mapping[str, Any],
                 contour_width_px: int) -> tuple[GlasDataset, dict[str, Any]]:
    """Write the synthetic GlaS at ``root`` when ``synthetic`` (from ``params``' seed, n_train,
    n_test_a, n_test_b, difficulty, at GlaS size; a finished set is reused), carve the validation
    images (``val_fraction`` of the training images, by grade, from ``seed``), load the folder at
    the working ``scale`` with ``labels`` and return ``(dataset, record)``.

    The record is the data manifest before provenance stamping: ``{'glas_root', 'synthetic',
    'params', 'contour_width_px', 'scale', 'label_source', 'val', 'files', 'files_hash',
    'counts', 'hash'}``; 'counts' are per part (train = the pool, val, test_a, test_b) with
    glands of the original-resolution maps; 'hash' is :func:`qfcn.data.load.data_hash`."""
    if synthetic:
        make_glas(root, seed=params["seed"], n_train=params["n_train"], n_test_a=params["n_test_a"],
                  n_test_b=params["n_test_b"], scale=SYNTHETIC_WRITE_SCALE, difficulty=params["difficulty"])
    train = [name for name, _, _ in scan_glas(root)["train"]]
    grades = read_grades(root) if (Path(root) / GRADE_FILE).is_file() else {}
    val = carve_validation(train, [grades.get(n, UNKNOWN_GRADE) for n in train], params["val_fraction"],
                           params["seed"])
    dataset = load_glas(root, scale=params["scale"], labels=params["labels"], val_names=val,
                        require_grades=params.get("require_grades", True))
    files = file_entries(root)
    files_hash = json_hash(files)
    parts = {"train": dataset.train, "val": dataset.val, "test_a": dataset.test_a, "test_b": dataset.test_b}
    counts = {k: {"images": len(v), "glands": sum(s.n_glands for s in v)} for k, v in parts.items()}
    record = {"glas_root": str(root), "synthetic": synthetic, "params": dict(params),
              "require_grades": bool(params.get("require_grades", True)),
              "contour_width_px": contour_width_px, "scale": float(params["scale"]),
              "label_source": params["labels"], "val": val, "files": files, "files_hash": files_hash,
              "counts": counts, "hash": data_hash(files_hash, params["scale"], params["labels"], val)}
    return dataset, record
