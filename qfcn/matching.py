"""Object tables, largest-overlap matching and exact Hausdorff distances (the engine of
:mod:`qfcn.metrics`; definitions in docs/method.md §6).

Conventions:

- An instance map is an integer (H, W) array, 0 = background, any positive label per
  object (validated by :func:`qfcn.metrics.check_instance_map` before it gets here).
- :class:`Objects` compacts the labels of one map to indices 1..n in increasing label
  order (index 0 = background), so "smallest index" means "smallest label".
- Matching is by the largest overlap in pixels; the background is never a match and a tie
  goes to the smallest label (as MATLAB's ``mode`` in the official GlaS evaluation).
- Hausdorff distances are in pixels, exact and Euclidean over all pixels of both objects,
  computed with distance transforms on the cropped union bounding box of the pair (so an
  object lying in the hole of a ring-shaped one is handled exactly).
- An object that overlaps nothing is paired with the object of the other set with the
  smallest Hausdorff distance to it; candidates are visited in order of a bounding-box
  lower bound, so most exact distances are never computed.

Example:
    >>> import numpy as np
    >>> a = np.zeros((6, 8), np.int64); a[1:3, 1:3] = 7; a[4:6, 5:8] = 300
    >>> g = Objects(a)
    >>> g.labels.tolist(), g.areas.tolist()
    ([7, 300], [4, 6])
    >>> b = np.zeros_like(a); b[1:3, 2:4] = 5
    >>> s = Objects(b)
    >>> pair_hausdorff(g, 1, s, 1)
    1.0
    >>> g_match = match_maps(a, b)[2]
    >>> g_match.tolist()  # entry 0 unused; gt 7 -> pred index 1, gt 300 -> none
    [0, 1, 0]
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import ndimage

__all__ = [
    "Objects",
    "overlaps",
    "best_match",
    "match_maps",
    "pair_hausdorff",
    "box_bounds",
    "nearest_by_hausdorff",
    "object_hausdorffs",
]

_DENSE_TABLE_LIMIT = 1 << 22  # overlap-table cells above which a sparse table is used


# --------------------------------------------------------------------------- label tables
class Objects:
    """Compacted objects of one instance map (H, W).

    Attributes:
        index: int32 (H, W) map of object indices 0..n (0 = background).
        labels: int64 (n,) original labels, increasing.
        areas: int64 (n,) pixel counts.
        boxes: list of n ``(row slice, col slice)`` bounding boxes.
        box_array: float (n, 2, 2) the same boxes as ``[axis, (first, last)]`` pixel
            indices (inclusive), built once on first use (vectorised Hausdorff bounds).
    """

    __slots__ = ("index", "labels", "areas", "boxes", "_box_array")

    def __init__(self, labels_map: np.ndarray):
        flat = labels_map.ravel()
        top = int(flat.max()) if flat.size else 0
        if top <= max(4 * flat.size, 1 << 16):
            counts = np.bincount(flat.astype(np.intp, copy=False), minlength=top + 1)
            labels = np.flatnonzero(counts[1:]) + 1
            lut = np.zeros(top + 1, np.int32)
            lut[labels] = np.arange(1, labels.size + 1, dtype=np.int32)
            index = lut[labels_map]
            areas = counts[labels]
        else:  # huge label values: sort instead of a lookup table
            uniq, inv = np.unique(flat, return_inverse=True)
            has_bg = uniq[0] == 0
            labels = uniq[1:] if has_bg else uniq
            index = (inv if has_bg else inv + 1).astype(np.int32).reshape(labels_map.shape)
            areas = np.bincount(index.ravel(), minlength=labels.size + 1)[1:]
        self.index = index
        self.labels = labels.astype(np.int64)
        self.areas = areas.astype(np.int64)
        self.boxes = ndimage.find_objects(index, max_label=labels.size) if labels.size else []
        self._box_array: np.ndarray | None = None

    @property
    def box_array(self) -> np.ndarray:
        if self._box_array is None:
            flat = [v for box in self.boxes for sl in box for v in (sl.start, sl.stop - 1)]
            self._box_array = np.array(flat, float).reshape(-1, 2, 2)
        return self._box_array

    @property
    def n(self) -> int:
        """Number of objects."""
        return int(self.labels.size)


def overlaps(g: Objects, s: Objects) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse overlap table: (gt index, pred index, pixel count), all indices >= 1."""
    if g.n == 0 or s.n == 0:
        e = np.zeros(0, np.int64)
        return e, e, e
    cells = (g.n + 1) * (s.n + 1)
    kind = np.int32 if cells < 2**31 else np.int64
    key = g.index.astype(kind) * kind(s.n + 1) + s.index
    if cells <= max(_DENSE_TABLE_LIMIT, key.size):
        table = np.bincount(key.ravel(), minlength=cells).reshape(g.n + 1, s.n + 1)
        table[0, :] = 0
        table[:, 0] = 0
        gi, si = np.nonzero(table)
        return gi.astype(np.int64), si.astype(np.int64), table[gi, si].astype(np.int64)
    both = (g.index > 0) & (s.index > 0)
    keys, counts = np.unique(key[both], return_counts=True)
    return keys // (s.n + 1), keys % (s.n + 1), counts.astype(np.int64)


def best_match(a: np.ndarray, b: np.ndarray, c: np.ndarray, n_a: int) -> tuple[np.ndarray, np.ndarray]:
    """For each index of a (1..n_a): the b with the largest count c, ties to the smallest b.

    Returns (match, overlap), arrays of length n_a + 1 (entry 0 unused; match 0 = none).
    Compacted indices preserve label order, so the smallest index is the smallest label.
    """
    match = np.zeros(n_a + 1, np.int64)
    overlap = np.zeros(n_a + 1, np.int64)
    if a.size:
        order = np.lexsort((b, -c, a))
        first = np.unique(a[order], return_index=True)[1]
        pick = order[first]
        match[a[pick]] = b[pick]
        overlap[a[pick]] = c[pick]
    return match, overlap


def match_maps(gt: np.ndarray, pred: np.ndarray):
    """Objects of both maps, the largest-overlap match of each (index 0 = background) and the
    overlap counts of all object pairs: ``(g, s, g_match, g_overlap, s_match, s_overlap, cnt)``."""
    g, s = Objects(gt), Objects(pred)
    gi, si, cnt = overlaps(g, s)
    g_match, g_ov = best_match(gi, si, cnt, g.n)
    s_match, s_ov = best_match(si, gi, cnt, s.n)
    return g, s, g_match, g_ov, s_match, s_ov, cnt


# --------------------------------------------------------------------------- Hausdorff
def _union_box(b1: tuple[slice, slice], b2: tuple[slice, slice]) -> tuple[slice, slice]:
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(b1, b2))  # type: ignore[return-value]


def pair_hausdorff(g: Objects, i: int, s: Objects, j: int) -> float:
    """Exact Hausdorff distance (pixels) between object i of g and object j of s (indices)."""
    win = _union_box(g.boxes[i - 1], s.boxes[j - 1])
    a = g.index[win] == i
    b = s.index[win] == j
    d_to_a = ndimage.distance_transform_edt(~a)
    d_to_b = ndimage.distance_transform_edt(~b)
    return float(max(d_to_a[b].max(), d_to_b[a].max()))


def box_bounds(src: Objects, k: int, dst: Objects) -> np.ndarray:
    """Lower bounds on the Hausdorff distance between object k of src and each dst object.

    An object has a pixel on each side of its bounding box; that pixel is at least as far
    from the other object as from the other object's box, along one axis. The bound is the
    largest such gap over the four sides of both boxes (0 for nested boxes).
    """
    b = dst.box_array  # (m, axis, lo/hi), built once per object table
    a = src.box_array[k - 1]  # (axis, lo/hi)
    lo_b, hi_b = b[:, :, 0], b[:, :, 1]  # (m, axis)
    lo_a, hi_a = a[:, 0], a[:, 1]
    gaps = [
        np.maximum(lo_b - lo_a, 0), np.maximum(lo_a - hi_b, 0),  # a's low side vs b's box
        np.maximum(lo_b - hi_a, 0), np.maximum(hi_a - hi_b, 0),  # a's high side
        np.maximum(lo_a - lo_b, 0), np.maximum(lo_b - hi_a, 0),  # b's low side vs a's box
        np.maximum(lo_a - hi_b, 0), np.maximum(hi_b - hi_a, 0),  # b's high side
    ]
    return np.max(np.stack(gaps), axis=(0, 2))


def nearest_by_hausdorff(
    src: Objects, k: int, dst: Objects, cost: Callable[[int, int], float]
) -> tuple[int, float]:
    """Object of ``dst`` with the smallest Hausdorff distance to object k of ``src``.

    Candidates are visited in order of a bounding-box lower bound; exact distances
    (``cost(k, m)``) are computed until no remaining bound can beat the best. Ties go to
    the smallest label. Returns ``(index in dst, distance)``.
    """
    bound = box_bounds(src, k, dst)
    best, best_d = 0, math.inf
    for m in np.lexsort((np.arange(dst.n), bound)):
        if bound[m] > best_d:
            break
        d = cost(k, int(m) + 1)
        if d < best_d or (d == best_d and m + 1 < best):
            best, best_d = int(m) + 1, d
    return best, best_d


def object_hausdorffs(
    g: Objects, s: Objects, g_match: np.ndarray, s_match: np.ndarray, diag: float
) -> tuple[np.ndarray, np.ndarray]:
    """Hausdorff distance (pixels) of every gt object and every predicted object to its
    counterpart: the matched object, else the Hausdorff-nearest object of the other set,
    else (the other set is empty) ``diag``. Each distinct pair is computed once.

    Returns ``(hd_g, hd_s)``, float arrays of shapes (g.n,) and (s.n,).
    """
    cache: dict[tuple[int, int], float] = {}

    def hd(i: int, j: int) -> float:
        if (i, j) not in cache:
            cache[(i, j)] = pair_hausdorff(g, i, s, j)
        return cache[(i, j)]

    hd_g = np.full(g.n, diag)
    hd_s = np.full(s.n, diag)
    if g.n and s.n:
        for i in range(1, g.n + 1):
            j = int(g_match[i])
            hd_g[i - 1] = hd(i, j) if j else nearest_by_hausdorff(g, i, s, hd)[1]
        for j in range(1, s.n + 1):
            i = int(s_match[j])
            hd_s[j - 1] = hd(i, j) if i else nearest_by_hausdorff(s, j, g, lambda a, b: hd(b, a))[1]
    return hd_g, hd_s
