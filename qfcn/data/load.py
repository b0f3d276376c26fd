"""Loading a GlaS-layout folder as the study sees it (docs/method.md §2): at one working scale,
with a stated label source, checked annotations and the fixed validation images.

- **Working scale.** Every data source (the synthetic set, written at GlaS size, or a user's
  folder) is resampled on load to ``round(H * scale) x round(W * scale)``: images with
  antialiasing (:func:`skimage.transform.resize`, Gaussian pre-filter, bilinear, uint8 out),
  instance maps by nearest neighbour (order 0, no antialiasing, gland ids kept). Each
  :class:`~qfcn.data.glas.Sample` keeps its original-resolution map (``source_instances``)
  for scoring in original pixels.
- **Labels.** ``labels="instances"`` reads the annotations as instance maps and refuses a
  binary mask (one non-zero value over two or more separate regions: several glands would
  count as one); ``labels="components"`` labels the connected components of ``anno > 0``
  with 8-connectivity (:data:`CONNECTIVITY`: a gland joined to itself only through a
  diagonal step stays one gland), so touching glands merge into one object. An
  annotation without any gland gets a warning naming the files; all of them empty is an error.
- **Validation.** ``val_names`` (carved by the data step, :func:`qfcn.data.carve_validation`)
  go to ``dataset.val`` and leave the pool ``dataset.train``; test images are refused.
- :func:`load_from_manifest` loads the data exactly as a data manifest says and checks that
  the folder's files are the ones it recorded.

>>> import tempfile
>>> from qfcn import data
>>> root = data.make_glas(tempfile.mkdtemp() + "/glas", n_train=3, n_test_a=1, n_test_b=1, scale=0.25)
>>> ds = load_glas(root, scale=0.5, val_names=["train_2"])
>>> s = ds.train[0]
>>> [x.name for x in ds.train], [x.name for x in ds.val], s.source_shape, s.instances.shape, s.scale
(['train_1', 'train_3'], ['train_2'], (130, 194), (65, 97), 0.5)
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from skimage.measure import label as label_components
from skimage.transform import resize

from qfcn.data.glas import (
    GRADE_FILE,
    UNKNOWN_GRADE,
    GlasDataset,
    GlasFormatError,
    Sample,
    file_entries,
    json_hash,
    read_grades,
    read_image,
    read_instances,
    scan_glas,
)

#: the values of ``labels``: annotations read as instance maps, or connected components of a mask
LABEL_SOURCES = ("instances", "components")
#: skimage connectivity of ``labels="components"`` (2 = 8-connectivity in 2-D)
CONNECTIVITY = 2
#: keys a data manifest needs for :func:`load_from_manifest`
MANIFEST_KEYS = ("glas_root", "scale", "label_source", "val", "files_hash", "hash")


def working_shape(shape: Sequence[int], scale: float) -> tuple[int, int]:
    """(h, w) at the working scale: ``round(H * scale)``, ``round(W * scale)``, at least 1.

    >>> working_shape((522, 775), 0.5), working_shape((3, 3), 0.1)
    ((261, 388), (1, 1))
    """
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


def resample(image: np.ndarray, instances: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Image (H, W, 3) uint8 and instance map (H, W) int to :func:`working_shape`: the image with
    antialiasing (uint8, rounded), the map by nearest neighbour (same dtype, ids kept). Scale
    1.0 returns the inputs themselves.

    >>> inst = np.zeros((8, 8), np.int32); inst[:4, :4] = 7; inst[4:, 4:] = 9
    >>> img, lab = resample(np.full((8, 8, 3), 200, np.uint8), inst, 0.5)
    >>> img.shape, img.dtype, int(img.max()), lab.dtype, np.unique(lab).tolist()
    ((4, 4, 3), dtype('uint8'), 200, dtype('int32'), [0, 7, 9])
    """
    if scale == 1.0:
        return image, instances
    h, w = working_shape(instances.shape, scale)
    img = resize(image.astype(np.float32), (h, w, image.shape[2]), order=1, anti_aliasing=True,
                 preserve_range=True)
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    lab = resize(instances, (h, w), order=0, anti_aliasing=False, preserve_range=True).astype(instances.dtype)
    return img, lab


def _mask_regions(lab: np.ndarray) -> int:
    """Separate regions (8-connected) of a map with a single non-zero value; 0 otherwise."""
    if lab.max() != 1:
        return 0
    return int(label_components(lab > 0, connectivity=CONNECTIVITY, return_num=True)[1])


def _read_annotations(root: Path, files: dict, labels: str) -> dict[str, np.ndarray]:
    """Name -> (H0, W0) int32 label map of every annotation, checked (binary masks, empty maps)."""
    maps, masks = {}, []
    for items in files.values():
        for name, _img, anno in items:
            lab = read_instances(anno)
            if labels == "components":
                lab = label_components(lab > 0, connectivity=CONNECTIVITY).astype(np.int32)
            elif (regions := _mask_regions(lab)) >= 2:
                masks.append((anno, regions))
            maps[name] = lab
    if masks:
        path, k = masks[0]
        more = f"; {len(masks) - 1} more annotations look the same" if len(masks) > 1 else ""
        raise GlasFormatError(f"{path}: a binary mask (one non-zero value over {k} separate regions), not an "
                              "instance map (0 background, one integer per gland); labels='components' (CLI "
                              f"--labels components) converts masks by connected components, merging touching "
                              f"glands{more}")
    empty = [name for name, lab in maps.items() if lab.max() == 0]
    if len(empty) == len(maps):
        raise GlasFormatError(f"{root}: every one of the {len(maps)} annotations is empty (no gland at all): "
                              "nothing to learn or score")
    if empty:
        warnings.warn(f"{root}: {len(empty)} annotation(s) without any gland: {', '.join(empty)}", stacklevel=3)
    return maps


def _check_val(root: Path, files: dict, val_names: Sequence[str] | None) -> set[str]:
    """The validation names as a set, after checking each is a training image of the folder."""
    names = list(val_names or [])
    split_of = {name: split for split, items in files.items() for name, _, _ in items}
    for name in names:
        if name not in split_of:
            raise GlasFormatError(f"val_names: {name!r} is not an image of {root}")
        if split_of[name] != "train":
            raise GlasFormatError(f"val_names: {name!r} is a test image ({split_of[name]}); validation images "
                                  "must be training images")
    if len(set(names)) != len(names):
        raise GlasFormatError(f"val_names: names listed twice in {names}")
    if names and len(names) >= len(files["train"]):
        raise GlasFormatError(f"val_names: all {len(files['train'])} training images of {root} are validation "
                              "images; the annotation pool would be empty")
    return set(names)


def load_glas(root: str | os.PathLike, *, scale: float = 1.0, labels: str = "instances",
              val_names: Sequence[str] | None = None, require_grades: bool = True) -> GlasDataset:
    """Load a GlaS-layout folder at working ``scale`` (see the module docstring).

    Grade.csv is required by default (a missing file or row is an error, since results are
    reported by grade); with ``require_grades=False`` images without a grade get 'unknown'.
    Every name, label and grade is checked before any image is read or resampled.
    """
    if labels not in LABEL_SOURCES:
        raise ValueError(f"labels={labels!r}: expected one of {list(LABEL_SOURCES)}")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0.0 < scale <= 4.0:
        raise ValueError(f"scale={scale!r}: expected a working scale in (0, 4]")
    files = scan_glas(root)
    root = Path(root)
    val = _check_val(root, files, val_names)
    grades = read_grades(root) if require_grades or (root / GRADE_FILE).is_file() else {}
    if require_grades:
        missing = [name for items in files.values() for name, _, _ in items if name not in grades]
        if missing:
            raise GlasFormatError(f"{root / GRADE_FILE} has no row for {missing[0]}"
                                  + (f" (nor {len(missing) - 1} more)" if len(missing) > 1 else ""))
    maps = _read_annotations(root, files, labels)
    parts: dict[str, list[Sample]] = {"train": [], "val": [], "test_a": [], "test_b": []}
    for split, items in files.items():
        for name, img_path, anno_path in items:
            image, source = read_image(img_path), maps.pop(name)
            if source.shape != image.shape[:2]:
                raise GlasFormatError(f"{anno_path}: annotation size {source.shape[0]}x{source.shape[1]} differs "
                                      f"from its image {image.shape[0]}x{image.shape[1]} (H x W)")
            image, inst = resample(image, source, float(scale))
            sample = Sample(name, split, image, inst, grades.get(name, UNKNOWN_GRADE), source, float(scale))
            parts["val" if name in val else split].append(sample)
    return GlasDataset(root=root, train=parts["train"], test_a=parts["test_a"], test_b=parts["test_b"],
                       val=parts["val"], scale=float(scale), label_source=labels)


def data_hash(files_hash: str, scale: float, label_source: str, val: Sequence[str]) -> str:
    """The data manifest's ``hash``: the folder's files hash plus how they are loaded (working
    scale, label source, validation names), so artifacts built at another scale, from other
    labels or with another validation set are refused like those of other files."""
    return json_hash({"files": files_hash, "scale": float(scale), "label_source": label_source, "val": list(val)})


def load_from_manifest(manifest: Mapping[str, Any]) -> GlasDataset:
    """The data set exactly as a data manifest (written by ``01-data``) says: its folder, working
    scale, label source and validation names. Raises when a key is missing (a manifest of an
    older qfcn), when the folder's files changed since, or when ``hash`` does not match."""
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    if missing:
        raise ValueError(f"data manifest: missing {missing} (written by an older qfcn?): rerun the data step 01-data")
    root = Path(manifest["glas_root"])
    got = json_hash(file_entries(root))
    if got != manifest["files_hash"]:
        raise GlasFormatError(f"{root}: the files differ from the data manifest's (files hash {got[:12]}, "
                              f"manifest {manifest['files_hash'][:12]}): rerun the data step 01-data")
    if data_hash(got, manifest["scale"], manifest["label_source"], manifest["val"]) != manifest["hash"]:
        raise ValueError("data manifest: 'hash' does not match its files, scale, label_source and val "
                         "(edited by hand?): rerun the data step 01-data")
    return load_glas(root, scale=manifest["scale"], labels=manifest["label_source"], val_names=manifest["val"],
                     require_grades=manifest.get("require_grades", True))
