"""Benchmark: qfcn.metrics.glas_metrics against a straightforward per-object port.

Run as ``.venv/bin/python benchmarks/bench_metrics.py``. Builds a Test A-sized synthetic
set procedurally (60 images of 522 x 775 pixels, about 10 elliptic glands each with
labels that are not 1..n; the prediction shifts, drops, splits and adds objects), times
both implementations on it, checks they agree, prints and writes
``benchmarks/results/metrics.json``. Target: under 2 s for ``glas_metrics``.

``reference_glas_metrics`` is written the way the public Python ports of the official
evaluation are (one boolean mask per object, one per pair, ``scipy`` ``directed_hausdorff``
on point coordinates) but with this project's definitions (ties to the smallest label,
background never a match, pairing by Hausdorff distance, the image diagonal for an empty
counterpart). The tests import it as a cross-check on small random instances.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial.distance import directed_hausdorff

from qfcn.metrics import glas_metrics

N_IMAGES, HEIGHT, WIDTH, N_OBJECTS = 60, 522, 775, 10


# --------------------------------------------------------------------------- reference
def _ref_hd(a: np.ndarray, b: np.ndarray) -> float:
    pa, pb = np.argwhere(a), np.argwhere(b)
    return max(directed_hausdorff(pa, pb)[0], directed_hausdorff(pb, pa)[0])


def _ref_best(mask: np.ndarray, other: np.ndarray) -> int:
    """Label of ``other`` overlapping ``mask`` most (ties: smallest), 0 when none."""
    vals = other[mask]
    vals = vals[vals > 0]
    if vals.size == 0:
        return 0
    labs, counts = np.unique(vals, return_counts=True)
    return int(labs[np.argmax(counts)])  # argmax takes the first = smallest label


def _ref_side(src: np.ndarray, dst: np.ndarray, diag: float) -> tuple[list, list, list]:
    """Per object of src: (area, dice, hausdorff) against its partner in dst."""
    areas, dices, hds = [], [], []
    dst_labels = [v for v in np.unique(dst) if v > 0]
    for lab in [v for v in np.unique(src) if v > 0]:
        m = src == lab
        best = _ref_best(m, dst)
        areas.append(int(m.sum()))
        if best:
            o = dst == best
            dices.append(2.0 * np.logical_and(m, o).sum() / (m.sum() + o.sum()))
            hds.append(_ref_hd(m, o))
        else:
            dices.append(0.0)
            hds.append(min((_ref_hd(m, dst == d) for d in dst_labels), default=diag))
    return areas, dices, hds


def _ref_combine(sg: float, ag: float, ss: float, as_: float, both: float) -> float:
    if ag == 0 and as_ == 0:
        return both
    tg = sg / ag if ag else ss / as_
    ts = ss / as_ if as_ else tg
    return 0.5 * (tg + ts)


def reference_glas_metrics(gts: list[np.ndarray], preds: list[np.ndarray]) -> dict[str, Any]:
    """Pooled f1, object_dice, object_hausdorff and per-image values, object by object."""
    tot = dict(tp=0, n_gt=0, n_pred=0, ag=0, as_=0, dg=0.0, ds=0.0, hg=0.0, hs=0.0)
    per_image = []
    for gt, pred in zip(gts, preds):
        diag = math.hypot(*gt.shape)
        g_labels = [v for v in np.unique(gt) if v > 0]
        s_labels = [v for v in np.unique(pred) if v > 0]
        tp = 0
        for lab in s_labels:
            m = pred == lab
            best = _ref_best(m, gt)
            if best and np.logical_and(m, gt == best).sum() / (gt == best).sum() > 0.5:
                tp += 1
        ag, dg, hg = _ref_side(gt, pred, diag)
        as_, ds, hs = _ref_side(pred, gt, diag)
        img = dict(tp=tp, n_gt=len(g_labels), n_pred=len(s_labels), ag=sum(ag), as_=sum(as_),
                   dg=float(np.dot(ag, dg)) if ag else 0.0, ds=float(np.dot(as_, ds)) if as_ else 0.0,
                   hg=float(np.dot(ag, hg)) if ag else 0.0, hs=float(np.dot(as_, hs)) if as_ else 0.0)
        for k in tot:
            tot[k] += img[k]
        per_image.append(_ref_figures(img))
    out = _ref_figures(tot)
    out["per_image"] = per_image
    return out


def _ref_figures(t: dict[str, Any]) -> dict[str, float]:
    n = t["n_gt"] + t["n_pred"]
    return {
        "f1": 1.0 if n == 0 else 2.0 * t["tp"] / n,
        "object_dice": _ref_combine(t["dg"], t["ag"], t["ds"], t["as_"], 1.0),
        "object_hausdorff": _ref_combine(t["hg"], t["ag"], t["hs"], t["as_"], 0.0),
    }


# --------------------------------------------------------------------------- synthetic set
def synthetic_pair(rng: np.random.Generator, height: int = HEIGHT, width: int = WIDTH,
                   n_objects: int = N_OBJECTS) -> tuple[np.ndarray, np.ndarray]:
    """One (gt, pred) pair of int32 instance maps with random ellipses.

    Ground-truth labels are random distinct values up to 100000 (later ellipses overwrite
    earlier ones, so glands may touch). The prediction is the ground truth shifted by a
    few pixels with one gland dropped, one split in two and one far false positive.
    """
    yy, xx = np.mgrid[:height, :width]
    gt = np.zeros((height, width), np.int32)
    labels = rng.choice(np.arange(1, 100_000), size=n_objects, replace=False)
    for lab in labels:
        cy, cx = rng.uniform(40, height - 40), rng.uniform(40, width - 40)
        ry, rx = rng.uniform(15, 55, size=2)
        th = rng.uniform(0, np.pi)
        u = (yy - cy) * np.cos(th) + (xx - cx) * np.sin(th)
        v = -(yy - cy) * np.sin(th) + (xx - cx) * np.cos(th)
        gt[(u / ry) ** 2 + (v / rx) ** 2 <= 1] = lab
    dy, dx = rng.integers(-6, 7, size=2)
    pred = np.roll(gt, (int(dy), int(dx)), axis=(0, 1)).copy()
    present = np.unique(pred[pred > 0])
    if present.size >= 3:
        pred[pred == present[0]] = 0  # a missed gland
        rows = np.nonzero(pred == present[1])[0]
        half = (pred == present[1]) & (yy < np.median(rows))
        pred[half] = 200_000  # a split gland
    fy, fx = rng.integers(0, height - 12), rng.integers(0, width - 12)
    pred[fy:fy + 12, fx:fx + 12] = 300_000  # a false positive
    return gt, pred


def synthetic_set(seed: int = 0, n_images: int = N_IMAGES) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    pairs = [synthetic_pair(rng) for _ in range(n_images)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def main() -> dict[str, Any]:
    gts, preds = synthetic_set()
    glas_metrics(gts[:2], preds[:2])  # warm-up (imports, caches)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        ours = glas_metrics(gts, preds)
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    ref = reference_glas_metrics(gts, preds)
    t_ref = time.perf_counter() - t0
    max_diff = max(abs(ours[k] - ref[k]) for k in ("f1", "object_dice", "object_hausdorff"))
    result = {
        "n_images": N_IMAGES, "height": HEIGHT, "width": WIDTH,
        "mean_objects_per_image": ours["n_gt"] / N_IMAGES,
        "ours_s_best_of_3": min(times), "ours_s_all": times,
        "reference_s": t_ref, "speedup": t_ref / min(times),
        "target_s": 2.0, "meets_target": min(times) < 2.0,
        "max_abs_diff_pooled": max_diff,
        "pooled": {k: ours[k] for k in ("f1", "object_dice", "object_hausdorff", "pixel_dice")},
    }
    out = Path(__file__).resolve().parent / "results" / "metrics.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
