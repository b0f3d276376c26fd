"""GlaS-layout loader, data manifest and gland object / contour targets (docs/method.md §2).

Layout (GlaS / Warwick-QU, also written by :func:`qfcn.data.make_glas`): one flat folder
with ``train_<i>.bmp``, ``testA_<i>.bmp``, ``testB_<i>.bmp`` (RGB), each paired with
``<name>_anno.bmp`` (instance map: 0 background, one integer per gland; a 3-channel map
with equal channels is accepted) and ``Grade.csv`` (columns ``name``, ``patient ID``,
``grade (GlaS)``, ...; headers and values stripped). Other files are ignored. Sizes vary.

Conventions: images are (H, W, 3) uint8 RGB; instance maps (H, W) int32, relabelled
1..n with :func:`skimage.segmentation.relabel_sequential` and NEVER connected-component
relabelled (touching glands stay distinct). Split names: 'train', 'test_a', 'test_b'.

Example::

    >>> import tempfile
    >>> from qfcn import data
    >>> root = data.make_glas(tempfile.mkdtemp() + "/glas", n_train=2, n_test_a=1, n_test_b=1, scale=0.25)
    >>> ds = data.load_glas(root)
    >>> ds.train[0].name, ds.train[0].image.dtype, ds.train[0].instances.dtype
    ('train_1', dtype('uint8'), dtype('int32'))
    >>> len(data.glas_manifest(root)["hash"])
    64
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from scipy import ndimage
from skimage.morphology import disk
from skimage.segmentation import relabel_sequential

#: split name -> file prefix, in GlaS order
SPLIT_PREFIXES: dict[str, str] = {"train": "train", "test_a": "testA", "test_b": "testB"}
_PREFIX_SPLIT = {v: k for k, v in SPLIT_PREFIXES.items()}
_FILE_RE = re.compile(r"^(train|testA|testB)_(\d+)(_anno)?\.bmp$", re.IGNORECASE)
_GRADE_FILE = "Grade.csv"
UNKNOWN_GRADE = "unknown"


class GlasFormatError(ValueError):
    """A GlaS-layout folder or file is not what the loader expects (message names the file)."""


@dataclass
class Sample:
    """One GlaS image: ``image`` (H, W, 3) uint8, ``instances`` (H, W) int32 (0 = background)."""

    name: str
    split: str
    image: np.ndarray = field(repr=False)
    instances: np.ndarray = field(repr=False)
    grade: str = UNKNOWN_GRADE

    @property
    def n_glands(self) -> int:
        return int(self.instances.max())


@dataclass
class GlasDataset:
    """The three GlaS parts, each a naturally sorted list of :class:`Sample`."""

    root: Path
    train: list[Sample]
    test_a: list[Sample]
    test_b: list[Sample]

    @property
    def splits(self) -> dict[str, list[Sample]]:
        return {"train": self.train, "test_a": self.test_a, "test_b": self.test_b}


# --------------------------------------------------------------------------- files
def _scan(root: str | os.PathLike) -> dict[str, list[tuple[str, Path, Path]]]:
    """Split -> naturally sorted [(name, image path, annotation path)]; checks pairing."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"GlaS folder {root} does not exist")
    if not root.is_dir():
        raise GlasFormatError(f"{root} is not a folder (expected a flat GlaS-layout folder)")
    entries = sorted(p.name for p in root.iterdir())
    if not entries:
        raise GlasFormatError(f"GlaS folder {root} is empty (expected train_<i>.bmp, testA_<i>.bmp, "
                              "testB_<i>.bmp with <name>_anno.bmp and Grade.csv)")
    images: dict[str, tuple[str, int, Path]] = {}
    annos: dict[str, Path] = {}
    for fname in entries:
        m = _FILE_RE.match(fname)
        if not m or not (root / fname).is_file():
            continue
        prefix = next(p for p in _PREFIX_SPLIT if p.lower() == m.group(1).lower())
        name = f"{prefix}_{int(m.group(2))}"
        if m.group(3):
            annos[name] = root / fname
        else:
            images[name] = (prefix, int(m.group(2)), root / fname)
    if not images and not annos:
        raise GlasFormatError(f"{root} holds no GlaS files (expected train_<i>.bmp, testA_<i>.bmp, "
                              f"testB_<i>.bmp with <name>_anno.bmp); found e.g. {entries[:3]}")
    for name, path in annos.items():
        if name not in images:
            raise GlasFormatError(f"annotation {path} has no image {name}.bmp beside it")
    out: dict[str, list[tuple[str, Path, Path]]] = {s: [] for s in SPLIT_PREFIXES}
    for name, (prefix, idx, path) in sorted(images.items(), key=lambda kv: (kv[1][0], kv[1][1])):
        if name not in annos:
            raise GlasFormatError(f"image {path} has no annotation {name}_anno.bmp")
        out[_PREFIX_SPLIT[prefix]].append((name, path, annos[name]))
    for split, items in out.items():
        if not items:
            raise GlasFormatError(f"{root}: split '{split}' has no images "
                                  f"(expected {SPLIT_PREFIXES[split]}_<i>.bmp files)")
    return out


def _open(path: Path) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise GlasFormatError(f"cannot read image file {path}: {exc}") from exc
    return img


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an RGB image as (H, W, 3) uint8; anything else (grey, RGBA, 16-bit) is an error."""
    path = Path(path)
    img = _open(path)
    if img.mode != "RGB":
        raise GlasFormatError(f"{path}: expected an RGB image, got PIL mode {img.mode!r}")
    return np.asarray(img, dtype=np.uint8).copy()


def read_instances(path: str | os.PathLike) -> np.ndarray:
    """Read an instance map as (H, W) int32, relabelled 1..n (order of label values kept).

    One channel ('L', 'P' indices, 'I', 'I;16') or three equal channels; three channels
    that differ mean a coloured picture, not a label map, and raise ``GlasFormatError``.
    """
    path = Path(path)
    img = _open(path)
    arr = np.asarray(img)
    if arr.ndim == 3:
        if arr.shape[2] not in (3, 4) or not (np.array_equal(arr[..., 0], arr[..., 1])
                                              and np.array_equal(arr[..., 0], arr[..., 2])):
            raise GlasFormatError(f"{path}: annotation has {arr.shape[2]} channels that differ "
                                  "(expected an instance map: one channel or three equal channels)")
        arr = arr[..., 0]
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer) and arr.dtype != bool:
        raise GlasFormatError(f"{path}: expected an integer instance map, got shape {arr.shape} {arr.dtype}")
    if arr.min() < 0:
        raise GlasFormatError(f"{path}: instance labels must be >= 0")
    lab = relabel_sequential(arr.astype(np.int32))[0]
    return np.ascontiguousarray(lab, dtype=np.int32)


def read_grades(root: str | os.PathLike) -> dict[str, str]:
    """Name -> GlaS grade ('benign' / 'malignant', stripped) from ``root/Grade.csv``."""
    path = Path(root) / _GRADE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (GlaS grades; pass require_grades=False to load "
                                f"without it, grades become '{UNKNOWN_GRADE}')")
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise GlasFormatError(f"cannot read {path}: {exc}") from exc
    if not rows:
        raise GlasFormatError(f"{path} is empty (expected columns 'name', 'grade (GlaS)')")
    header = [h.strip() for h in rows[0]]
    if "name" not in header or "grade (GlaS)" not in header:
        raise GlasFormatError(f"{path}: expected columns 'name' and 'grade (GlaS)', got {header}")
    i_name, i_grade = header.index("name"), header.index("grade (GlaS)")
    grades: dict[str, str] = {}
    for k, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) <= max(i_name, i_grade):
            raise GlasFormatError(f"{path} line {k}: expected {len(header)} columns, got {len(row)}")
        name, grade = row[i_name].strip(), row[i_grade].strip()
        if name in grades and grades[name] != grade:
            raise GlasFormatError(f"{path} line {k}: {name} listed twice with different grades")
        grades[name] = grade
    return grades


def load_glas(root: str | os.PathLike, *, require_grades: bool = True) -> GlasDataset:
    """Load every image, instance map and grade of a GlaS-layout folder.

    Grade.csv is required by default (a missing file or a missing row is an error, since
    the study reports results by grade); with ``require_grades=False`` images without a
    grade get ``'unknown'``. Rows for images that are not in the folder are ignored.
    """
    files = _scan(root)
    root = Path(root)
    if require_grades or (root / _GRADE_FILE).is_file():
        grades = read_grades(root)
    else:
        grades = {}
    parts: dict[str, list[Sample]] = {}
    for split, items in files.items():
        samples = []
        for name, img_path, anno_path in items:
            image = read_image(img_path)
            inst = read_instances(anno_path)
            if inst.shape != image.shape[:2]:
                raise GlasFormatError(f"{anno_path}: annotation size {inst.shape[0]}x{inst.shape[1]} differs "
                                      f"from its image {image.shape[0]}x{image.shape[1]} (H x W)")
            if name not in grades and require_grades:
                raise GlasFormatError(f"{root / _GRADE_FILE} has no row for {name}")
            samples.append(Sample(name, split, image, inst, grades.get(name, UNKNOWN_GRADE)))
        parts[split] = samples
    return GlasDataset(root=root, train=parts["train"], test_a=parts["test_a"], test_b=parts["test_b"])


def glas_manifest(root: str | os.PathLike) -> dict:
    """Content record of a GlaS-layout folder.

    Returns ``{'files': [{'name', 'sha256', 'bytes'}, ...] (sorted by name; GlaS images,
    annotations and Grade.csv), 'counts': {split: {'images', 'glands'}}, 'hash'}``, where
    'hash' is the sha256 of the canonical JSON of 'files'. Later steps store the hash and
    refuse artifacts built from another manifest.
    """
    files = _scan(root)
    paths = [p for items in files.values() for _, ip, ap in items for p in (ip, ap)]
    grade = Path(root) / _GRADE_FILE
    if grade.is_file():
        paths.append(grade)
    entries = []
    for p in sorted(paths, key=lambda q: q.name):
        blob = p.read_bytes()
        entries.append({"name": p.name, "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)})
    counts = {split: {"images": len(items), "glands": int(sum(read_instances(a).max() for _, _, a in items))}
              for split, items in files.items()}
    canon = json.dumps(entries, sort_keys=True, separators=(",", ":")).encode()
    return {"files": entries, "counts": counts, "hash": hashlib.sha256(canon).hexdigest()}


# --------------------------------------------------------------------------- targets
def object_contour_targets(instances: np.ndarray, contour_width: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Object and contour masks (both (H, W) bool) of an instance map.

    object = instances > 0. contour = gland pixels within ``contour_width`` pixels
    (Euclidean, disk footprint) of a pixel with another label (background or another
    gland), so each gland gets an inner band ``contour_width`` thick, also along borders
    shared by touching glands; the image edge is not a boundary. Hence
    ``object & ~contour`` labelled by connected components separates touching glands.

    >>> inst = np.zeros((5, 8), np.int32); inst[1:4, 1:4] = 1; inst[1:4, 4:7] = 2
    >>> obj, con = object_contour_targets(inst, 1)
    >>> int(obj.sum()), int(con.sum()), bool(con[2, 3] and con[2, 4]), bool(con[2, 2])
    (18, 16, True, False)
    """
    lab = np.asarray(instances)
    if lab.ndim != 2 or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"instances must be an (H, W) integer map, got shape {lab.shape} {lab.dtype}")
    if int(contour_width) < 1:
        raise ValueError(f"contour_width must be >= 1 pixel, got {contour_width}")
    fp = disk(int(contour_width)).astype(bool)
    hi = ndimage.maximum_filter(lab, footprint=fp, mode="nearest")
    lo = ndimage.minimum_filter(lab, footprint=fp, mode="nearest")
    obj = lab > 0
    return obj, obj & (hi != lo)


def gland_areas(dataset: GlasDataset) -> list[dict]:
    """One record per gland of every split: ``{'split', 'image', 'grade', 'area'}`` (area in
    pixels), in split then image then label order.

    >>> inst = np.zeros((4, 4), np.int32); inst[:2, :2] = 1; inst[3, 3] = 2
    >>> ds = GlasDataset(Path("."), [Sample("train_1", "train", np.zeros((4, 4, 3), np.uint8), inst)], [], [])
    >>> [r["area"] for r in gland_areas(ds)]
    [4, 1]
    """
    rows = []
    for split, samples in dataset.splits.items():
        for s in samples:
            areas = np.bincount(s.instances.ravel())[1:]
            for a in areas[areas > 0]:
                rows.append(dict(split=split, image=s.name, grade=s.grade, area=int(a)))
    return rows
