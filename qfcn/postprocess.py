"""Post-processing: object and contour probabilities to a gland instance map.

Steps of ``instances_from_probs`` (DCAN-style, docs/method.md §6):

1. threshold: ``object = object_prob > object_threshold``,
   ``contour = contour_prob > contour_threshold``;
2. remove contour pixels: ``seeds = object & ~contour``;
3. label the seeds (``connectivity`` 1 = 4-neighbours, so a one-pixel diagonal contour
   still separates two glands);
4. drop seeds with fewer than ``min_area`` pixels;
5. fill holes of at most ``hole_area`` pixels in the seeds and in the object mask
   (gland lumens are part of the gland in GlaS annotations; background touching the
   image border is never a hole);
6. grow the seeds back into the (hole-filled) object mask: ``"watershed"`` floods the
   contour probability from the seeds (boundaries between touching glands settle on
   the contour ridge), ``"dilation"`` expands labels by up to ``grow_distance`` pixels
   inside the mask, ``"none"`` keeps the hole-filled seeds. Object pixels not reached
   from any seed stay background.

Areas are in pixels of the maps given: when images are rescaled by a factor ``f`` per
side, scale ``min_area`` and ``hole_area`` by ``f**2`` (and ``grow_distance`` by ``f``).

``tune_postprocess`` grid-searches these parameters on a *validation* split only.

Example:
    >>> import numpy as np
    >>> obj = np.zeros((20, 40)); obj[5:15, 5:35] = 0.9
    >>> cnt = np.zeros((20, 40)); cnt[5:15, 19:21] = 0.8
    >>> lab = instances_from_probs(obj, cnt, min_area=10)
    >>> sorted(np.unique(lab).tolist())
    [0, 1, 2]
    >>> best, table = tune_postprocess([obj], [cnt], [lab], grid={"object_threshold": (0.95, 0.5)}, min_area=10)
    >>> best["object_threshold"], table["f1"].tolist(), table["best"].tolist()
    (0.5, [0.0, 1.0], [False, True])
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage import morphology, segmentation

from qfcn import metrics

__all__ = ["instances_from_probs", "tune_postprocess", "DEFAULT_GRID", "GROW_METHODS"]

GROW_METHODS = ("watershed", "dilation", "none")
DEFAULT_GRID: dict[str, tuple[Any, ...]] = {
    "object_threshold": (0.3, 0.4, 0.5, 0.6, 0.7),
    "contour_threshold": (0.2, 0.35, 0.5, 0.65),
}
_TUNABLE = ("object_threshold", "contour_threshold", "min_area", "hole_area", "grow", "grow_distance",
            "connectivity")
_LOWER_IS_BETTER = {"object_hausdorff"}
_METRICS = ("f1", "object_dice", "object_hausdorff", "pixel_dice", "pixel_iou", "precision", "recall")


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


def _seeds(object_mask: np.ndarray, contour_mask: np.ndarray, min_area: int, connectivity: int) -> np.ndarray:
    """Label object pixels off the contour; drop components under ``min_area`` pixels."""
    seeds = morphology.label(object_mask & ~contour_mask, connectivity=connectivity).astype(np.int32)
    if seeds.max() and min_area > 0:
        areas = np.bincount(seeds.ravel())
        small = areas < min_area
        small[0] = False
        if small.any():
            keep = np.arange(areas.size, dtype=np.int32)
            keep[small] = 0
            seeds = keep[seeds]
    return seeds


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
    bg = morphology.label(~fg, connectivity=connectivity)
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
) -> np.ndarray:
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

    Returns:
        int32 (H, W) instance map: 0 background, objects labelled 1..n.

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
    seeds = _seeds(object_mask, cnt > contour_threshold, int(min_area), connectivity)
    return _grow(seeds, object_mask, cnt, int(hole_area), grow, int(grow_distance), connectivity)


def tune_postprocess(object_probs: Sequence[Any], contour_probs: Sequence[Any], gts: Sequence[Any], *,
                     grid: Mapping[str, Sequence[Any]] | None = None, metric: str = "f1",
                     split: str = "validation", **fixed: Any) -> tuple[dict[str, Any], pd.DataFrame]:
    """Grid-search post-processing parameters on a validation split.

    Args:
        object_probs, contour_probs: per image (H, W) probabilities in [0, 1].
        gts: per image ground-truth instance maps (H, W), integer labels.
        grid: parameter name -> candidate values, over keys of ``instances_from_probs``
            (default ``DEFAULT_GRID``: 5 object x 4 contour thresholds = 20 points).
        metric: pooled ``glas_metrics`` key to optimise; ``object_hausdorff`` is
            minimised, the others maximised. Ties keep the first grid point.
        split: name of the split the data came from; names starting with "test" are
            refused (thresholds tuned on a test part inflate its scores).
        **fixed: other ``instances_from_probs`` keywords held fixed (e.g. ``min_area``).

    Returns:
        ``(best_params, table)``: the best point's full parameters (plain Python values)
        and a DataFrame with one row per grid point (parameters, pooled metrics, and
        ``best`` marking the chosen row), in grid order. Masks and seeds are shared
        across grid points (``_MaskCache``).
    """
    grid = _check_tuning(grid, metric, split, fixed)
    objs, cnts, gts = _check_maps(object_probs, contour_probs, gts)
    defaults = {k: v.default for k, v in inspect.signature(instances_from_probs).parameters.items()
                if v.kind is inspect.Parameter.KEYWORD_ONLY}
    defaults.update(fixed)
    keys = list(grid)
    cache = _MaskCache(objs, cnts)
    rows = []
    for values in itertools.product(*(grid[k] for k in keys)):
        p = {**defaults, **dict(zip(keys, values))}
        _check_params(p)
        res = metrics.glas_metrics(gts, cache.predict(p))
        rows.append({**p, **{m: res[m] for m in _METRICS}})
    return _pick_best(rows, metric, list(defaults))


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
    """Threshold masks and seeds of every image, each computed once across grid points."""

    def __init__(self, objs: list[np.ndarray], cnts: list[np.ndarray]) -> None:
        self.objs, self.cnts = objs, cnts
        self.obj_masks: dict[float, list[np.ndarray]] = {}
        self.cnt_masks: dict[float, list[np.ndarray]] = {}
        self.seeds: dict[tuple, list[np.ndarray]] = {}

    def predict(self, p: Mapping[str, Any]) -> list[np.ndarray]:
        """Instance maps of every image for the full parameters ``p`` (as ``instances_from_probs``)."""
        to, tc = float(p["object_threshold"]), float(p["contour_threshold"])
        if to not in self.obj_masks:
            self.obj_masks[to] = [o > to for o in self.objs]
        if tc not in self.cnt_masks:
            self.cnt_masks[tc] = [c > tc for c in self.cnts]
        skey = (to, tc, int(p["min_area"]), p["connectivity"])
        if skey not in self.seeds:
            self.seeds[skey] = [_seeds(om, cm, int(p["min_area"]), p["connectivity"])
                                for om, cm in zip(self.obj_masks[to], self.cnt_masks[tc])]
        return [_grow(sd, om, c, int(p["hole_area"]), p["grow"], int(p["grow_distance"]), p["connectivity"])
                for sd, om, c in zip(self.seeds[skey], self.obj_masks[to], self.cnts)]


def _pick_best(rows: list[dict[str, Any]], metric: str, keys: list[str]) -> tuple[dict[str, Any], pd.DataFrame]:
    """The tuning table with its ``best`` column, and the best row's parameters ``keys``
    as plain Python values (first row among ties)."""
    table = pd.DataFrame(rows)
    scores = table[metric].to_numpy(float)
    best = int(np.argmin(scores) if metric in _LOWER_IS_BETTER else np.argmax(scores))
    table["best"] = np.arange(len(table)) == best
    best_params = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in table.iloc[best][keys].items()}
    return best_params, table
