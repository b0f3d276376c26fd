"""Score an ensemble the way the study reports it: predict, post-process, GlaS metrics.

:func:`evaluate_ensemble` predicts the validation images, tunes the post-processing
thresholds on them (:func:`qfcn.postprocess.tune_postprocess`, never on a test split),
applies the tuned thresholds to every other split and computes :func:`qfcn.metrics.glas_metrics`
(pooled and per image) for each. Areas (``min_area``, ``hole_area``) are given in pixels of a
GlaS image at scale 1.0 and scaled by ``scale**2`` to the data's pixel size.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from qfcn import infer, metrics, postprocess


def scaled_areas(scale: float, min_area: int = 50, hole_area: int = 500) -> dict[str, int]:
    """Post-processing areas for images at ``scale`` (areas given at scale 1.0, in pixels)."""
    if not scale > 0:
        raise ValueError(f"scale={scale!r}: expected a positive image scale")
    return {"min_area": max(1, round(min_area * scale ** 2)), "hole_area": max(1, round(hole_area * scale ** 2))}


def evaluate_ensemble(models: Any, splits: Mapping[str, Sequence[Any]], *, val: Sequence[Any],
                      scale: float = 1.0, min_area: int = 50, hole_area: int = 500, metric: str = "f1",
                      grid: Mapping[str, Sequence[Any]] | None = None, keep_instances: bool = False,
                      progress: bool = False) -> dict[str, Any]:
    """Evaluate one model or an ensemble (list of models).

    Args:
        models: an SAFCN or a list of them (probabilities are averaged over members).
        splits: split name -> samples (:class:`qfcn.data.Sample`) to score, e.g.
            ``{"test_a": ..., "test_b": ..., "train": ..., "val": val}`` (the validation
            list itself is scored from the predictions made for tuning).
        val: the validation samples the thresholds are tuned on (from the training images).
        scale: image scale of the data (areas are scaled by ``scale**2``).
        metric: the pooled metric the thresholds maximise (``object_hausdorff``: minimise).
        keep_instances: also return the predicted instance maps and object probabilities.

    Returns:
        ``{"thresholds": {...}, "tuning": DataFrame records, "splits": {name: glas_metrics dict}}``
        plus ``"instances"`` / ``"object_prob"`` ({name: list of (H, W) arrays}) with
        ``keep_instances``.
    """
    if not val:
        raise ValueError("val: the validation split is empty; carve one from the annotated training images")
    areas = scaled_areas(scale, min_area, hole_area)
    vp = infer.predict_dataset(models, val, progress=progress)
    best, table = postprocess.tune_postprocess([p["object"] for p in vp], [p["contour"] for p in vp],
                                               [s.instances for s in val], grid=grid, metric=metric,
                                               split="validation", **areas)
    out: dict[str, Any] = {"thresholds": best, "tuning": table.to_dict("records"), "splits": {}}
    if keep_instances:
        out["instances"], out["object_prob"] = {}, {}
    for name, samples in splits.items():
        if not samples:
            continue
        preds = vp if samples is val else infer.predict_dataset(models, samples, progress=progress)
        inst = [postprocess.instances_from_probs(p["object"], p["contour"], **best) for p in preds]
        out["splits"][name] = metrics.glas_metrics([s.instances for s in samples], inst,
                                                   names=[s.name for s in samples])
        if keep_instances:
            out["instances"][name] = inst
            out["object_prob"][name] = [np.asarray(p["object"]) for p in preds]
    return out


def n_glands(samples: Sequence[Any]) -> int:
    """Number of ground-truth glands over ``samples`` (:attr:`qfcn.data.Sample.n_glands`: the
    loader relabels every instance map to 1..n)."""
    return sum(s.n_glands for s in samples)
