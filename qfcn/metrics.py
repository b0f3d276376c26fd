"""GlaS challenge metrics: object F1, object Dice, object Hausdorff, pixel Dice and IoU.

Conventions (docs/method.md §6, following the official MATLAB evaluation of the GlaS challenge):

- Inputs are instance maps: integer arrays of shape (H, W), 0 = background, any positive
  label per object (labels need not be 1..n and may exceed 255). They are never
  re-labelled (touching objects with different labels stay apart). Float, boolean or
  negative labels, arrays that are not 2-D, or a ground truth and prediction of different
  shapes raise ``ValueError`` naming the image.
- Matching is by largest overlap inside one image; the background is never a match. A tie
  for the largest overlap goes to the smallest label (as MATLAB's ``mode`` does).
- Object F1: a predicted object S is a true positive when its matched ground-truth object
  G is more than half covered, ``|S ∩ G| / |G| > 0.5`` (exactly 50% is not enough). Other
  predicted objects are false positives; ground-truth objects not matched by a true
  positive are false negatives. ``F1 = 2 tp / (2 tp + fp + fn)``.
- Object Dice: ``½ [Σ_i |G_i|/Σ|G| · Dice(G_i, S*(G_i)) + Σ_j |S_j|/Σ|S| · Dice(G*(S_j), S_j)]``
  where ``S*(G_i)`` is the prediction overlapping ``G_i`` most; Dice 0 when none does.
- Object Hausdorff: the same area-weighted form with the Hausdorff distance in pixels
  (exact, Euclidean, over all pixels of both objects). An object that overlaps nothing is
  paired with the object of the other set *in its image* with the smallest Hausdorff
  distance to it (not the nearest centroid).

Edge cases (each tested):

- Both sets empty (image or pool): f1 = precision = recall = 1, object Dice 1, object
  Hausdorff 0, pixel Dice = pixel IoU = 1.
- Empty prediction, non-empty ground truth: f1 = precision = recall = 0, object Dice 0,
  pixel Dice = IoU = 0. Empty ground truth, non-empty prediction: the same.
- Hausdorff pairing with an empty counterpart set: an object whose image holds no object of
  the other set is given the image diagonal ``hypot(H, W)`` (pixels), which exceeds every
  distance between two pixels of the image. For an image (or pool) where one set is empty,
  the term of the empty set (a sum over no objects) takes the value of the other term, so
  such an image scores Dice 0 and Hausdorff = its diagonal.
- Pooled figures (the challenge's headline numbers) weight every object of the part by its
  area over the whole part, and F1 pools tp, fp and fn; per-image figures are computed in
  the same pass. ``per_image_mean`` is the plain mean over images.

Speed: the object tables, the overlap table (one ``bincount`` per image) and the exact
Hausdorff distances (distance transforms on cropped bounding boxes) live in
:mod:`qfcn.matching`; this module validates input, turns per-image sums into figures and
pools them.

Example:
    >>> import numpy as np
    >>> gt = np.zeros((8, 8), np.int64); gt[1:5, 1:5] = 300
    >>> res = glas_metrics([gt], [gt])
    >>> res["f1"], res["object_dice"], res["object_hausdorff"]
    (1.0, 1.0, 0.0)
    >>> pred = np.zeros_like(gt); pred[1:5, 1:3] = 7   # half of the gland: not a tp
    >>> object_f1(gt, pred), pixel_dice(gt, pred), round(object_hausdorff(gt, pred), 3)
    (0.0, 0.6666666666666666, 2.0)
    >>> match_objects(gt, pred)["gt_match"].tolist()
    [7]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from qfcn import matching

__all__ = [
    "glas_metrics",
    "object_f1",
    "object_dice",
    "object_hausdorff",
    "pixel_dice",
    "pixel_iou",
    "hausdorff_distance",
    "match_objects",
    "check_instance_map",
]


# --------------------------------------------------------------------------- validation
def check_instance_map(x: Any, what: str = "instance map") -> np.ndarray:
    """Return ``x`` as an integer (H, W) array, or raise ``ValueError`` naming ``what``.

    Accepts signed or unsigned integer dtypes with labels >= 0; rejects float, bool,
    negative labels and arrays that are not 2-D. The array is not copied or re-labelled.
    """
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{what}: expected a 2-D (H, W) instance map, got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise ValueError(
            f"{what}: expected integer labels (0 = background, positive = object), "
            f"got dtype {arr.dtype}"
        )
    if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
        raise ValueError(f"{what}: labels must be >= 0, found {int(arr.min())}")
    return arr


def _check_pair(gt: Any, pred: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    g = check_instance_map(gt, f"ground truth of {what}")
    p = check_instance_map(pred, f"prediction of {what}")
    if g.shape != p.shape:
        raise ValueError(
            f"{what}: ground truth shape {g.shape} and prediction shape {p.shape} differ; "
            "expected equal (H, W)"
        )
    return g, p


# --------------------------------------------------------------------------- one image
def _image_sums(gt: np.ndarray, pred: np.ndarray, hausdorff: bool = True) -> dict[str, float]:
    """Additive per-image sums from which both per-image and pooled figures follow
    (``hd_gt`` / ``hd_pred`` are NaN without ``hausdorff``)."""
    g, s, g_match, g_ov, s_match, s_ov, cnt = matching.match_maps(gt, pred)
    g_area = np.concatenate([[0], g.areas])
    s_area = np.concatenate([[0], s.areas])

    # F1: predicted object j is a tp when its matched gt object is > 50% covered.
    tp = int(np.count_nonzero((s_match[1:] > 0) & (2 * s_ov[1:] > g_area[s_match[1:]])))

    # Dice per object (0 without overlap).
    dice_g = 2.0 * g_ov[1:] / (g.areas + s_area[g_match[1:]])
    dice_s = 2.0 * s_ov[1:] / (s.areas + g_area[s_match[1:]])

    # Hausdorff per object, each distinct pair computed once (the costly part: optional).
    hd_sum_g = hd_sum_s = math.nan
    if hausdorff:
        hd_g, hd_s = matching.object_hausdorffs(g, s, g_match, s_match, math.hypot(*gt.shape))
        hd_sum_g, hd_sum_s = float(g.areas @ hd_g), float(s.areas @ hd_s)

    return {
        "tp": tp, "n_gt": g.n, "n_pred": s.n,
        "area_gt": int(g.areas.sum()), "area_pred": int(s.areas.sum()),
        "dice_gt": float(g.areas @ dice_g), "dice_pred": float(s.areas @ dice_s),
        "hd_gt": hd_sum_g, "hd_pred": hd_sum_s,
        "px_gt": int(g.areas.sum()), "px_pred": int(s.areas.sum()), "px_inter": int(cnt.sum()),
    }


def _two_terms(sum_g: float, area_g: int, sum_s: float, area_s: int, both_empty: float) -> float:
    """½ (weighted gt term + weighted pred term); an empty set's term copies the other
    (NaN sums, from ``hausdorff=False``, stay NaN)."""
    if area_g == 0 and area_s == 0:
        return both_empty if not (math.isnan(sum_g) or math.isnan(sum_s)) else math.nan
    term_g = sum_g / area_g if area_g else None
    term_s = sum_s / area_s if area_s else None
    return 0.5 * ((term_g if term_g is not None else term_s) + (term_s if term_s is not None else term_g))


def _figures(t: dict[str, float]) -> dict[str, float | int]:
    """Final figures from (per-image or pooled) sums."""
    tp, n_gt, n_pred = int(t["tp"]), int(t["n_gt"]), int(t["n_pred"])
    fp, fn = n_pred - tp, n_gt - tp
    both_empty = n_gt == 0 and n_pred == 0
    precision = tp / n_pred if n_pred else float(n_gt == 0)
    recall = tp / n_gt if n_gt else float(n_pred == 0)
    f1 = 1.0 if both_empty else 2.0 * tp / (n_gt + n_pred)
    px_g, px_s, px_i = int(t["px_gt"]), int(t["px_pred"]), int(t["px_inter"])
    return {
        "f1": float(f1), "precision": float(precision), "recall": float(recall),
        "tp": tp, "fp": fp, "fn": fn, "n_gt": n_gt, "n_pred": n_pred,
        "object_dice": float(_two_terms(t["dice_gt"], int(t["area_gt"]), t["dice_pred"], int(t["area_pred"]), 1.0)),
        "object_hausdorff": float(_two_terms(t["hd_gt"], int(t["area_gt"]), t["hd_pred"], int(t["area_pred"]), 0.0)),
        "pixel_dice": 1.0 if px_g + px_s == 0 else 2.0 * px_i / (px_g + px_s),
        "pixel_iou": 1.0 if px_g + px_s == 0 else px_i / (px_g + px_s - px_i),
    }


# --------------------------------------------------------------------------- public API
def glas_metrics(
    gts: Sequence[Any], preds: Sequence[Any], *, names: Sequence[str] | None = None, hausdorff: bool = True
) -> dict[str, Any]:
    """GlaS metrics of a test part, pooled and per image, from one pass.

    Args:
        gts: ground-truth instance maps, one (H, W) integer array per image.
        preds: predicted instance maps, same length, each the shape of its ground truth.
        names: optional image names (same length) used in ``per_image`` and in errors;
            default ``"0"``, ``"1"``, ...
        hausdorff: compute the object Hausdorff (the costly part; off, ``object_hausdorff``
            is NaN everywhere: threshold tuning ranks by F1 and object Dice only).

    Returns:
        A dict of plain Python numbers: pooled ``f1``, ``precision``, ``recall``, ``tp``,
        ``fp``, ``fn``, ``n_gt``, ``n_pred``, ``object_dice``, ``object_hausdorff``
        (pixels), ``pixel_dice``, ``pixel_iou``; ``per_image``: a list of dicts with the
        same keys plus ``name``; ``per_image_mean``: the mean over images of ``f1``,
        ``object_dice`` and ``object_hausdorff``. See the module docstring for the
        definitions and edge cases.

    Raises:
        ValueError: lengths differ, or an image has bad labels or mismatched shapes (the
            message names the image by index and name).
    """
    gts, preds = list(gts), list(preds)
    if len(gts) != len(preds):
        raise ValueError(f"glas_metrics: {len(gts)} ground-truth maps but {len(preds)} predictions")
    if names is None:
        names = [str(k) for k in range(len(gts))]
    names = [str(n) for n in names]
    if len(names) != len(gts):
        raise ValueError(f"glas_metrics: {len(names)} names for {len(gts)} images")

    pooled: dict[str, float] = {}
    per_image = []
    for k, (gt, pred) in enumerate(zip(gts, preds)):
        g, p = _check_pair(gt, pred, f"image {k} ({names[k]!r})")
        sums = _image_sums(g, p, hausdorff)
        for key, v in sums.items():
            pooled[key] = pooled.get(key, 0) + v
        per_image.append({"name": names[k], **_figures(sums)})
    if not per_image:
        raise ValueError("glas_metrics: no images given (expected at least one pair)")

    out: dict[str, Any] = _figures(pooled)
    out["per_image"] = per_image
    out["per_image_mean"] = {
        key: float(np.mean([r[key] for r in per_image])) for key in ("f1", "object_dice", "object_hausdorff")
    }
    return out


def _single(gt: Any, pred: Any, key: str) -> float:
    g, p = _check_pair(gt, pred, "the image")
    return _figures(_image_sums(g, p))[key]


def object_f1(gt: Any, pred: Any) -> float:
    """Object-level F1 of one image (instance maps (H, W)); 1.0 when both are empty."""
    return float(_single(gt, pred, "f1"))


def object_dice(gt: Any, pred: Any) -> float:
    """Area-weighted object Dice of one image; 1.0 when both are empty, 0.0 when one is."""
    return float(_single(gt, pred, "object_dice"))


def object_hausdorff(gt: Any, pred: Any) -> float:
    """Area-weighted object Hausdorff (pixels) of one image; 0 when both are empty and
    the image diagonal ``hypot(H, W)`` when exactly one is."""
    return float(_single(gt, pred, "object_hausdorff"))


def _foreground(x: Any, what: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind == "b":
        return arr
    return check_instance_map(arr, what) > 0


def pixel_dice(gt: Any, pred: Any) -> float:
    """Dice of the foregrounds (label > 0, or boolean masks); 1.0 when both are empty."""
    g, p = _foreground(gt, "ground truth"), _foreground(pred, "prediction")
    if g.shape != p.shape:
        raise ValueError(f"pixel_dice: shapes {g.shape} and {p.shape} differ")
    total = int(g.sum()) + int(p.sum())
    return 1.0 if total == 0 else 2.0 * int(np.count_nonzero(g & p)) / total


def pixel_iou(gt: Any, pred: Any) -> float:
    """Intersection over union of the foregrounds; 1.0 when both are empty."""
    g, p = _foreground(gt, "ground truth"), _foreground(pred, "prediction")
    if g.shape != p.shape:
        raise ValueError(f"pixel_iou: shapes {g.shape} and {p.shape} differ")
    union = int(np.count_nonzero(g | p))
    return 1.0 if union == 0 else int(np.count_nonzero(g & p)) / union


def hausdorff_distance(a: Any, b: Any) -> float:
    """Exact Euclidean Hausdorff distance (pixels) between the pixel sets of two masks.

    ``a`` and ``b`` are (H, W) arrays; nonzero pixels form the sets. Computed with distance
    transforms on the cropped union bounding box, so it is exact for non-convex shapes.
    Returns 0.0 when both are empty and ``inf`` when exactly one is (as
    ``skimage.metrics.hausdorff_distance``).
    """
    ma, mb = np.asarray(a) != 0, np.asarray(b) != 0
    if ma.shape != mb.shape or ma.ndim != 2:
        raise ValueError(f"hausdorff_distance: expected two (H, W) masks of one shape, got {ma.shape} and {mb.shape}")
    ea, eb = not ma.any(), not mb.any()
    if ea or eb:
        return 0.0 if ea and eb else math.inf
    ga, gb = matching.Objects(ma.astype(np.uint8)), matching.Objects(mb.astype(np.uint8))
    return matching.pair_hausdorff(ga, 1, gb, 1)


def match_objects(gt: Any, pred: Any) -> dict[str, np.ndarray]:
    """Largest-overlap matching of one image, in original labels.

    Returns arrays: ``gt_labels``, ``gt_match`` (pred label overlapping each gt object
    most, 0 = none), ``gt_overlap`` (pixels); ``pred_labels``, ``pred_match``,
    ``pred_overlap`` likewise. Ties go to the smallest label; background is never a match.
    """
    g_map, p_map = _check_pair(gt, pred, "the image")
    g, s, g_match, g_ov, s_match, s_ov, _ = matching.match_maps(g_map, p_map)
    g_lab = np.concatenate([[0], g.labels])
    s_lab = np.concatenate([[0], s.labels])
    return {
        "gt_labels": g.labels, "gt_match": s_lab[g_match[1:]], "gt_overlap": g_ov[1:],
        "pred_labels": s.labels, "pred_match": g_lab[s_match[1:]], "pred_overlap": s_ov[1:],
    }
