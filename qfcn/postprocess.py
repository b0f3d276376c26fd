"""Post-processing: object and contour probabilities to a gland instance map.

Steps of ``instances_from_probs`` (DCAN-style, docs/method.md §6):

1. threshold: ``object = object_prob > object_threshold``,
   ``contour = contour_prob > contour_threshold``;
2. remove contour pixels: ``seeds = object & ~contour``;
3. label the seeds (``connectivity`` 1 = 4-neighbours, so a one-pixel diagonal contour
   still separates two glands);
4. drop seeds with fewer than ``min_area`` pixels (one ``bincount`` over the label map, so a
   poor network's thousands of fragments are rejected here, before growing or matching);
5. fill holes of at most ``hole_area`` pixels in the seeds and in the object mask
   (gland lumens are part of the gland in GlaS annotations; background touching the
   image border is never a hole);
6. grow the seeds back into the (hole-filled) object mask: ``"watershed"`` floods the
   contour probability from the seeds (boundaries between touching glands settle on
   the contour ridge), ``"dilation"`` expands labels by up to ``grow_distance`` pixels
   inside the mask, ``"none"`` keeps the hole-filled seeds. Object pixels not reached
   from any seed stay background.

Units: ``min_area``, ``hole_area`` (pixels) and ``grow_distance`` (pixels) are pixels of the
maps given. :func:`qfcn.score.evaluate_ensemble` resizes the probabilities to each image's
original (GlaS scale-1) resolution first, so there they are original-resolution pixels and
mean the same at any working scale. Nothing else here has a pixel unit (the contour enters
only through its threshold).

``tune_postprocess`` grid-searches the thresholds on a *validation* split only. Criterion:
the pooled object F1, ties broken by the pooled object Dice, then by evaluation order (the
given grid in order, then the extension points). A tuned value on the edge of its grid is
flagged (``edge``) and, with ``extend`` > 0, the grid is widened in that direction by its own
step (a bounded number of rounds, thresholds kept inside (0, 1)).

Example:
    >>> import numpy as np
    >>> obj = np.zeros((20, 40)); obj[5:15, 5:35] = 0.9
    >>> cnt = np.zeros((20, 40)); cnt[5:15, 19:21] = 0.8
    >>> lab = instances_from_probs(obj, cnt, min_area=10)
    >>> sorted(np.unique(lab).tolist())
    [0, 1, 2]
    >>> best, table, edge = tune_postprocess([obj], [cnt], [lab], grid={"object_threshold": (0.95, 0.5)}, min_area=10)
    >>> best["object_threshold"], table["f1"].tolist(), table["best"].tolist(), edge
    (0.5, [0.0, 1.0], [False, True], {'object_threshold': True})
    >>> tune_postprocess([obj], [cnt], [lab], grid={"object_threshold": (0.95, 0.5)}, min_area=10,
    ...                  extend=1).table["object_threshold"].tolist()  # 0.5 was an edge: 0.05 added
    [0.95, 0.5, 0.05]
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage import segmentation

from qfcn import metrics

__all__ = ["instances_from_probs", "tune_postprocess", "Tuning", "DEFAULT_GRID", "GROW_METHODS", "CRITERION"]

GROW_METHODS = ("watershed", "dilation", "none")
DEFAULT_GRID: dict[str, tuple[Any, ...]] = {
    "object_threshold": (0.3, 0.4, 0.5, 0.6, 0.7),
    "contour_threshold": (0.2, 0.35, 0.5, 0.65),
}
_TUNABLE = ("object_threshold", "contour_threshold", "min_area", "hole_area", "grow", "grow_distance",
            "connectivity")
_LOWER_IS_BETTER = {"object_hausdorff"}
_METRICS = ("f1", "object_dice", "object_hausdorff", "pixel_dice", "pixel_iou", "precision", "recall")
_TABLE_METRICS = ("f1", "object_dice", "precision", "recall", "pixel_dice", "n_pred")  # + the tuned metric
_THRESHOLDS = ("object_threshold", "contour_threshold")  # the keys an edge extension widens
_THRESHOLD_RANGE = (0.01, 0.99)  # extension points stay inside
#: Tuning criterion: the tuned metric first (default "f1"), then the pooled object Dice.
CRITERION = ("f1", "object_dice")


def _check_prob(x: Any, what: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{what}: expected a 2-D (H, W) probability map, got shape {arr.shape}")
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"{what}: expected real probabilities in [0, 1], got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if np.isnan(arr).any():
        raise ValueError(f"{what}: contains NaN; expected probabilities in [0, 1]")
    if arr.size and (arr.min() < 0 or arr.max() > 1):
        raise ValueError(
            f"{what}: values in [{arr.min():.4g}, {arr.max():.4g}]; expected probabilities in [0, 1] "
            "(apply a sigmoid/softmax to logits first)"
        )
    return arr


def _check_params(p: Mapping[str, Any]) -> None:
    for key in ("object_threshold", "contour_threshold"):
        if not 0.0 <= float(p[key]) <= 1.0:
            raise ValueError(f"{key}: expected a threshold in [0, 1], got {p[key]!r}")
    for key in ("min_area", "hole_area", "grow_distance"):
        if p[key] < 0:
            raise ValueError(f"{key}: expected a non-negative number of pixels, got {p[key]!r}")
    if p["grow"] not in GROW_METHODS:
        raise ValueError(f"grow: expected one of {GROW_METHODS}, got {p['grow']!r}")
    if p["connectivity"] not in (1, 2):
        raise ValueError(f"connectivity: expected 1 (4-neighbours) or 2 (8-neighbours), got {p['connectivity']!r}")


def _label(mask: np.ndarray, connectivity: int) -> tuple[np.ndarray, int]:
    """Connected components of ``mask`` (int32 labels 1..n in raster order) and n."""
    return ndimage.label(mask, structure=ndimage.generate_binary_structure(2, connectivity), output=np.int32)


def _seeds(object_mask: np.ndarray, contour_mask: np.ndarray, min_area: int,
           connectivity: int) -> tuple[np.ndarray, dict[str, int]]:
    """Label object pixels off the contour and drop components under ``min_area`` pixels
    (vectorised: one ``bincount`` and one lookup, whatever the number of fragments).
    Returns the seed map and ``{"n_components", "n_small"}`` (components found / dropped)."""
    seeds, n = _label(object_mask & ~contour_mask, connectivity)
    n_small = 0
    if n and min_area > 0:
        small = np.bincount(seeds.ravel(), minlength=n + 1) < min_area
        small[0] = False
        n_small = int(np.count_nonzero(small))
        if n_small:
            keep = np.arange(n + 1, dtype=np.int32)
            keep[small] = 0
            seeds = keep[seeds]
    return seeds, {"n_components": int(n), "n_small": n_small}


def _grow(seeds: np.ndarray, object_mask: np.ndarray, contour_prob: np.ndarray,
          hole_area: int, grow: str, grow_distance: int, connectivity: int) -> np.ndarray:
    """Fill small holes and grow the seeds back into the object mask (int32 map)."""
    if not seeds.max():
        return seeds.astype(np.int32)
    fg = seeds > 0
    filled = _fill_small_holes(fg, hole_area, connectivity)
    mask = _fill_small_holes(filled | object_mask, hole_area, connectivity)
    if grow == "watershed":
        out = segmentation.watershed(contour_prob, markers=seeds, mask=mask, connectivity=connectivity)
    elif grow == "dilation":
        out = segmentation.expand_labels(seeds, distance=grow_distance)
        out[~mask] = 0
        if hole_area:  # holes inside one seed farther than grow_distance from its rim
            out = np.where((out == 0) & filled, _nearest_label(seeds), out)
    else:
        out = np.where(filled & (seeds == 0), _nearest_label(seeds), seeds)
    return out.astype(np.int32)


def _fill_small_holes(fg: np.ndarray, hole_area: int, connectivity: int) -> np.ndarray:
    """``fg`` with background components of at most ``hole_area`` pixels that do not touch
    the image border filled (``scipy.ndimage.binary_fill_holes`` limited by hole size;
    unlike skimage's ``remove_small_holes``, a notch at the image border is not a hole)."""
    if hole_area <= 0 or fg.all():
        return fg
    bg = _label(~fg, connectivity)[0]
    areas = np.bincount(bg.ravel())
    hole = areas <= hole_area
    hole[0] = False
    border = np.concatenate([bg[0], bg[-1], bg[:, 0], bg[:, -1]])
    hole[border] = False
    return fg | hole[bg]


def _nearest_label(seeds: np.ndarray) -> np.ndarray:
    """Label of the nearest seed pixel, for every pixel."""
    idx = ndimage.distance_transform_edt(seeds == 0, return_distances=False, return_indices=True)
    return seeds[tuple(idx)]


def instances_from_probs(
    object_prob: Any,
    contour_prob: Any,
    *,
    object_threshold: float = 0.5,
    contour_threshold: float = 0.5,
    min_area: int = 50,
    hole_area: int = 500,
    grow: str = "watershed",
    grow_distance: int = 5,
    connectivity: int = 1,
    return_stats: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict[str, int]]:
    """Gland instance map from object and contour probabilities.

    Args:
        object_prob: (H, W) gland-object probabilities in [0, 1].
        contour_prob: (H, W) gland-contour probabilities in [0, 1].
        object_threshold, contour_threshold: a pixel is object / contour when its
            probability is strictly above the threshold.
        min_area: seeds with fewer pixels are dropped (pixels at this image scale).
        hole_area: holes with at most this many pixels are filled (0 = no filling).
        grow: "watershed", "dilation" or "none" (see the module docstring).
        grow_distance: pixels of growth for ``grow="dilation"``.
        connectivity: 1 (4-neighbours) or 2 (8-neighbours) for labelling and holes.
        return_stats: also return ``{"n_components", "n_small", "n_objects"}``: seed
            components found, dropped under ``min_area`` (before growing or any matching)
            and kept.

    Returns:
        int32 (H, W) instance map: 0 background, objects labelled with positive (not
        necessarily consecutive) labels; with ``return_stats`` the pair (map, stats).

    Raises:
        ValueError: maps not 2-D, of different shapes, NaN or outside [0, 1]; a parameter
            out of range.
    """
    obj = _check_prob(object_prob, "object_prob")
    cnt = _check_prob(contour_prob, "contour_prob")
    if obj.shape != cnt.shape:
        raise ValueError(f"object_prob shape {obj.shape} and contour_prob shape {cnt.shape} differ")
    params = dict(object_threshold=object_threshold, contour_threshold=contour_threshold,
                  min_area=min_area, hole_area=hole_area, grow=grow, grow_distance=grow_distance,
                  connectivity=connectivity)
    _check_params(params)
    object_mask = obj > object_threshold
    seeds, stats = _seeds(object_mask, cnt > contour_threshold, int(min_area), connectivity)
    out = _grow(seeds, object_mask, cnt, int(hole_area), grow, int(grow_distance), connectivity)
    return (out, {**stats, "n_objects": stats["n_components"] - stats["n_small"]}) if return_stats else out


class Tuning(NamedTuple):
    """Result of :func:`tune_postprocess`.

    Attributes:
        thresholds: the chosen point's full ``instances_from_probs`` keywords (plain values).
        table: the threshold-sensitivity table, one row per grid point in evaluation order:
            the grid keys, pooled ``f1``, ``object_dice``, ``precision``, ``recall``,
            ``pixel_dice``, ``n_pred`` (plus the tuned metric when it is another), ``best``.
        edge: grid key (with at least two values) -> True when the chosen value is an
            extreme of its (final) grid and strictly better there than anywhere inside.
    """

    thresholds: dict[str, Any]
    table: pd.DataFrame
    edge: dict[str, bool]


def tune_postprocess(object_probs: Sequence[Any], contour_probs: Sequence[Any], gts: Sequence[Any], *,
                     grid: Mapping[str, Sequence[Any]] | None = None, metric: str = "f1",
                     split: str = "validation", extend: int = 0, **fixed: Any) -> Tuning:
    """Grid-search post-processing parameters on a validation split.

    Args:
        object_probs, contour_probs: per image (H, W) probabilities in [0, 1], computed
            once by the caller (the grid is searched on these cached maps).
        gts: per image ground-truth instance maps (H, W), integer labels.
        grid: parameter name -> candidate values, over keys of ``instances_from_probs``
            (default ``DEFAULT_GRID``: 5 object x 4 contour thresholds = 20 points).
        metric: pooled ``glas_metrics`` key ranked first (``object_hausdorff`` minimised, the
            others maximised); ties go to the higher pooled object Dice (:data:`CRITERION`),
            then to the earlier grid point. The object Hausdorff is computed only when it is
            the metric.
        split: name of the split the data came from; names starting with "test" are
            refused (thresholds tuned on a test part inflate its scores).
        extend: rounds of edge extension: while a tuned threshold sits on an edge of its
            grid, add the next value outward (spaced like the edge's neighbour, inside
            (0, 1)) and evaluate the new points; 0 = the grid as given.
        **fixed: other ``instances_from_probs`` keywords held fixed (e.g. ``min_area``).

    Returns:
        :class:`Tuning` ``(thresholds, table, edge)``. Masks and seeds are shared across grid
        points (``_MaskCache``).
    """
    grid = _check_tuning(grid, metric, split, fixed)
    if not (isinstance(extend, int) and extend >= 0):
        raise ValueError(f"extend: expected a non-negative number of extension rounds, got {extend!r}")
    objs, cnts, gts = _check_maps(object_probs, contour_probs, gts)
    defaults = {k: v.default for k, v in inspect.signature(instances_from_probs).parameters.items()
                if v.kind is inspect.Parameter.KEYWORD_ONLY and k != "return_stats"}
    defaults.update(fixed)
    cache, rows, done = _MaskCache(objs, cnts), [], set()
    for round_ in range(extend + 1):
        for values in itertools.product(*grid.values()):
            if values not in done:
                done.add(values)
                rows.append(_grid_point(cache, gts, {**defaults, **dict(zip(grid, values))}, metric))
        best = _best_row(rows, metric)
        grown = {k: _step_out(grid[k], side) for k, side in _edges(rows, best, grid, metric).items()
                 if side and k in _THRESHOLDS}
        grown = {k: v for k, v in grown.items() if v is not None}
        if not grown or round_ == extend:
            break
        grid = {k: [*vals, grown[k]] if k in grown else vals for k, vals in grid.items()}
    table = pd.DataFrame([{**{k: r[k] for k in grid}, **{m: r[m] for m in _table_metrics(metric)}} for r in rows])
    table["best"] = np.arange(len(rows)) == best
    thresholds = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in rows[best].items() if k in defaults}
    return Tuning(thresholds, table, {k: bool(side) for k, side in _edges(rows, best, grid, metric).items()})


def _table_metrics(metric: str) -> tuple[str, ...]:
    return _TABLE_METRICS + ((metric,) if metric not in _TABLE_METRICS else ())


def _grid_point(cache: _MaskCache, gts: list[np.ndarray], p: dict[str, Any], metric: str) -> dict[str, Any]:
    """Parameters ``p`` and the pooled validation metrics they give."""
    _check_params(p)
    res = metrics.glas_metrics(gts, cache.predict(p), hausdorff=metric == "object_hausdorff")
    return {**p, **{m: res[m] for m in _table_metrics(metric)}}


def _rank(row: Mapping[str, Any], metric: str) -> tuple[float, float]:
    """Sort key of the criterion (larger is better): the metric, then object Dice."""
    return (-row[metric] if metric in _LOWER_IS_BETTER else row[metric], row["object_dice"])


def _best_row(rows: list[dict[str, Any]], metric: str) -> int:
    """Index of the best row (the first among equals)."""
    keys = [_rank(r, metric) for r in rows]
    return max(range(len(rows)), key=lambda i: (keys[i], -i))


def _edges(rows: list[dict[str, Any]], best: int, grid: Mapping[str, Sequence[Any]], metric: str) -> dict[str, str]:
    """Grid key -> "low" / "high" when the best value is that extreme of the key's grid and
    strictly better (criterion) there than at every other value of the key, else ""."""
    out = {}
    for key, values in grid.items():
        vals = sorted(set(values))
        if len(vals) < 2:
            continue
        v, side = rows[best][key], ""
        if v in (vals[0], vals[-1]):
            inside = [_rank(r, metric) for r in rows if r[key] != v]
            side = ("low" if v == vals[0] else "high") if _rank(rows[best], metric) > max(inside) else ""
        out[key] = side
    return out


def _step_out(values: Sequence[float], side: str) -> float | None:
    """The next threshold beyond the ``side`` edge of ``values``, spaced like the edge and its
    neighbour (halfway to the range bound when that step leaves it); None at the bound."""
    vals = sorted(set(float(v) for v in values))
    lo, hi = _THRESHOLD_RANGE
    if side == "low":
        v = vals[0] - (vals[1] - vals[0])
        v = v if v >= lo else (vals[0] + lo) / 2
        return round(v, 4) if lo <= v < vals[0] - 1e-9 else None
    v = vals[-1] + (vals[-1] - vals[-2])
    v = v if v <= hi else (vals[-1] + hi) / 2
    return round(v, 4) if vals[-1] + 1e-9 < v <= hi else None


def _check_tuning(grid: Mapping[str, Sequence[Any]] | None, metric: str, split: str,
                  fixed: Mapping[str, Any]) -> dict[str, Sequence[Any]]:
    """Validate the split name, metric and grid/fixed keys; return the grid as a dict."""
    if not isinstance(split, str) or split.strip().lower().startswith("test"):
        raise ValueError(
            f"split={split!r}: thresholds must be tuned on a validation split, never on a test split"
        )
    if metric not in _METRICS:
        raise ValueError(f"metric: expected one of {_METRICS}, got {metric!r}")
    grid = dict(DEFAULT_GRID if grid is None else grid)
    unknown = sorted((set(grid) | set(fixed)) - set(_TUNABLE))
    if unknown:
        raise ValueError(f"grid/fixed: unknown parameters {unknown}; expected keys among {_TUNABLE}")
    for key, values in grid.items():
        if isinstance(values, (str, bytes)) or len(values) == 0:
            raise ValueError(f"grid[{key!r}]: expected a non-empty sequence of values")
    return grid


def _check_maps(object_probs: Sequence[Any], contour_probs: Sequence[Any], gts: Sequence[Any]
                ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Validated float64 object / contour maps and integer ground truths, per image."""
    n = len(object_probs)
    if not (n == len(contour_probs) == len(gts)) or n == 0:
        raise ValueError(
            f"tune_postprocess: expected equal non-zero numbers of object maps, contour maps and "
            f"ground truths, got {n}, {len(contour_probs)}, {len(gts)}"
        )
    objs = [_check_prob(o, f"object_probs[{k}]") for k, o in enumerate(object_probs)]
    cnts = [_check_prob(c, f"contour_probs[{k}]") for k, c in enumerate(contour_probs)]
    for k, (o, c) in enumerate(zip(objs, cnts)):
        if o.shape != c.shape:
            raise ValueError(f"image {k}: object_probs shape {o.shape} and contour_probs shape {c.shape} differ")
    return objs, cnts, [metrics.check_instance_map(g, f"gts[{k}]") for k, g in enumerate(gts)]


class _MaskCache:
    """Threshold masks of every image, each computed once across grid points (boolean maps;
    seeds and instance maps are recomputed per point, so memory stays a few masks per image)."""

    def __init__(self, objs: list[np.ndarray], cnts: list[np.ndarray]) -> None:
        self.objs, self.cnts = objs, cnts
        self.masks: dict[tuple[str, float], list[np.ndarray]] = {}

    def _masks(self, which: str, t: float) -> list[np.ndarray]:
        if (which, t) not in self.masks:
            self.masks[(which, t)] = [m > t for m in (self.objs if which == "object" else self.cnts)]
        return self.masks[(which, t)]

    def predict(self, p: Mapping[str, Any]) -> list[np.ndarray]:
        """Instance maps of every image for the full parameters ``p`` (as ``instances_from_probs``)."""
        oms = self._masks("object", float(p["object_threshold"]))
        cms = self._masks("contour", float(p["contour_threshold"]))
        return [_grow(_seeds(om, cm, int(p["min_area"]), p["connectivity"])[0], om, c, int(p["hole_area"]),
                      p["grow"], int(p["grow_distance"]), p["connectivity"]) for om, cm, c in zip(oms, cms, self.cnts)]
