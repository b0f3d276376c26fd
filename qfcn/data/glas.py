"""GlaS-layout loader, data manifest and gland object / contour targets (docs/method.md §2).

Layout (GlaS / Warwick-QU, also written by :func:`qfcn.data.make_glas`): one flat folder
with ``train_<i>.bmp``, ``testA_<i>.bmp``, ``testB_<i>.bmp`` (RGB), each paired with
``<name>_anno.bmp`` (instance map: 0 background, one integer per gland; a 3-channel map
with equal channels is accepted) and ``Grade.csv`` (columns ``name``, ``patient ID``,
``grade (GlaS)``, ...; headers and values stripped). Other files are ignored. Sizes vary.

Conventions: images are (H, W, 3) uint8 RGB; instance maps (H, W) int32, relabelled
1..n with :func:`skimage.segmentation.relabel_sequential` and NEVER connected-component
relabelled (touching glands stay distinct). Split names: 'train', 'test_a', 'test_b'.
File names are matched case-insensitively and without zero-padding (``Train_01.bmp`` is
``train_1``); two files that name the same image that way are refused, naming both.
Loading at a working scale, label options and the validation set: :mod:`qfcn.data.load`.

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
GRADE_FILE = "Grade.csv"
UNKNOWN_GRADE = "unknown"


class GlasFormatError(ValueError):
    """A GlaS-layout folder or file is not what the loader expects (message names the file)."""


@dataclass
class Sample:
    """One GlaS image at the working scale (docs/method.md §2).

    ``image`` (H, W, 3) uint8 and ``instances`` (H, W) int32 (0 = background) are at the
    working scale; ``source_instances`` (H0, W0) int32 is the file's map at its ORIGINAL
    resolution (scores use it; the same array as ``instances`` at scale 1.0, and by default);
    ``scale`` = working / original side (each side is ``round(H0 * scale)``). Gland ids of
    ``instances`` are those of ``source_instances`` (nearest neighbour; a gland too small to
    survive resampling is missing there but still counted by :attr:`n_glands`).

    >>> inst = np.zeros((4, 6), np.int32); inst[1:3, 1:3] = 2
    >>> s = Sample("train_1", "train", np.zeros((4, 6, 3), np.uint8), inst)
    >>> s.source_shape, s.n_glands, s.scale, s.source_instances is s.instances
    ((4, 6), 2, 1.0, True)
    """

    name: str
    split: str
    image: np.ndarray = field(repr=False)
    instances: np.ndarray = field(repr=False)
    grade: str = UNKNOWN_GRADE
    source_instances: np.ndarray | None = field(default=None, repr=False)
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.source_instances is None:
            self.source_instances = self.instances

    @property
    def source_shape(self) -> tuple[int, int]:
        """(H0, W0): the image's size in its file."""
        return tuple(int(n) for n in self.source_instances.shape[:2])

    @property
    def n_glands(self) -> int:
        """Glands of the ORIGINAL-resolution map (the ones the scores count)."""
        return int(self.source_instances.max())


@dataclass
class GlasDataset:
    """The GlaS parts, each a naturally sorted list of :class:`Sample`.

    ``train`` is the annotation pool: the training images WITHOUT ``val``, the fixed validation
    images carved by the data step (never offered for annotation; their ``split`` stays 'train').
    ``scale`` is the working scale, ``label_source`` 'instances' or 'components'.
    """

    root: Path
    train: list[Sample]
    test_a: list[Sample]
    test_b: list[Sample]
    val: list[Sample] = field(default_factory=list)
    scale: float = 1.0
    label_source: str = "instances"

    @property
    def splits(self) -> dict[str, list[Sample]]:
        return {"train": self.train, "test_a": self.test_a, "test_b": self.test_b}


# --------------------------------------------------------------------------- files
def scan_glas(root: str | os.PathLike) -> dict[str, list[tuple[str, Path, Path]]]:
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
        known = annos.get(name) if m.group(3) else images.get(name, (None, None, None))[2]
        if known is not None:
            raise GlasFormatError(f"{root}: {known.name} and {fname} both name "
                                  f"{'annotation' if m.group(3) else 'image'} {name} (file names that differ "
                                  "only in case or zero-padding are one image): keep one of them")
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


def canonical_name(name: str) -> str:
    """The loader's name for a GlaS image name (case and zero-padding ignored); other names unchanged.

    >>> canonical_name("Train_01"), canonical_name("TESTA_7"), canonical_name("other")
    ('train_1', 'testA_7', 'other')
    """
    m = _FILE_RE.match(f"{name.strip()}.bmp")
    if not m or m.group(3):
        return name
    return f"{next(p for p in _PREFIX_SPLIT if p.lower() == m.group(1).lower())}_{int(m.group(2))}"


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
    """Name -> GlaS grade ('benign' / 'malignant', stripped) from ``root/Grade.csv``; GlaS image
    names are the loader's (:func:`canonical_name`: ``Train_01`` -> ``train_1``)."""
    path = Path(root) / GRADE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (GlaS grades; to load without it, set "
                                f"'data: {{require_grades: false}}' in the params file, or require_grades=False "
                                f"in Python; grades then become '{UNKNOWN_GRADE}')")
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
        name, grade = canonical_name(row[i_name]), row[i_grade].strip()
        if name in grades and grades[name] != grade:
            raise GlasFormatError(f"{path} line {k}: {name} listed twice with different grades")
        grades[name] = grade
    return grades


def glas_manifest(root: str | os.PathLike) -> dict:
    """Content record of a GlaS-layout folder.

    Returns ``{'files': [{'name', 'sha256', 'bytes'}, ...] (sorted by name; GlaS images,
    annotations and Grade.csv), 'counts': {split: {'images', 'glands'}}, 'hash'}``, where
    'hash' is the sha256 of the canonical JSON of 'files'. Later steps store the hash and
    refuse artifacts built from another manifest.
    """
    files = scan_glas(root)
    entries = file_entries(root)
    counts = {split: {"images": len(items), "glands": int(sum(read_instances(a).max() for _, _, a in items))}
              for split, items in files.items()}
    return {"files": entries, "counts": counts, "hash": json_hash(entries)}


def file_entries(root: str | os.PathLike) -> list[dict]:
    """``[{'name', 'sha256', 'bytes'}, ...]`` of the folder's GlaS images, annotations and
    Grade.csv, sorted by name (the 'files' of :func:`glas_manifest`; pixels are not decoded)."""
    files = scan_glas(root)
    paths = [p for items in files.values() for _, ip, ap in items for p in (ip, ap)]
    grade = Path(root) / GRADE_FILE
    if grade.is_file():
        paths.append(grade)
    entries = []
    for p in sorted(paths, key=lambda q: q.name):
        blob = p.read_bytes()
        entries.append({"name": p.name, "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)})
    return entries


def json_hash(obj: object) -> str:
    """sha256 (hex) of the canonical JSON of ``obj`` (sorted keys, no spaces).

    >>> json_hash({"b": 1, "a": [2]}) == json_hash({"a": [2], "b": 1})
    True
    """
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


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
    """One record per gland of every split and of the validation images (split 'val'):
    ``{'split', 'image', 'grade', 'area'}``, area in ORIGINAL-resolution pixels (of
    ``source_instances``), in split (train, val, test_a, test_b) then image then label order.

    >>> inst = np.zeros((4, 4), np.int32); inst[:2, :2] = 1; inst[3, 3] = 2
    >>> ds = GlasDataset(Path("."), [Sample("train_1", "train", np.zeros((4, 4, 3), np.uint8), inst)], [], [])
    >>> [r["area"] for r in gland_areas(ds)]
    [4, 1]
    """
    rows = []
    parts = {"train": dataset.train, "val": dataset.val, "test_a": dataset.test_a, "test_b": dataset.test_b}
    for split, samples in parts.items():
        for s in samples:
            areas = np.bincount(s.source_instances.ravel())[1:]
            for a in areas[areas > 0]:
                rows.append(dict(split=split, image=s.name, grade=s.grade, area=int(a)))
    return rows
