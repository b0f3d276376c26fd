"""Score an ensemble the way the study reports it: predict, post-process, GlaS metrics.

:func:`evaluate_ensemble` predicts the validation images, tunes the post-processing
thresholds on them (:func:`qfcn.postprocess.tune_postprocess`, never on a test split),
applies the tuned thresholds to every other split and computes :func:`qfcn.metrics.glas_metrics`
(pooled and per image) for each (docs/method.md §6). Areas (``min_area``, ``hole_area``) are
given in pixels of a GlaS image at scale 1.0 and scaled by ``scale**2`` to the data's pixel
size. :func:`evaluate_variants` scores every ensemble of notebook 04 and
:func:`variant_entries` turns the scores into the ``variants`` part of ``metrics.json``;
:data:`PAPER_ROWS` holds the scores the paper reports.

>>> scaled_areas(0.5)
{'min_area': 12, 'hole_area': 125}
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from qfcn import infer, metrics, postprocess, train

#: The paper's reported GlaS scores (docs/method.md §1): object F1, object Dice and object
#: Hausdorff on Test A / Test B, transcribed from the paper (unverified), on real GlaS.
PAPER_ROWS: tuple[dict[str, Any], ...] = (
    dict(method="CUMedVision (DCAN), reported on real GlaS", f1_A=0.912, f1_B=0.716, dice_A=0.897, dice_B=0.781,
         haus_A=45.418, haus_B=160.347),
    dict(method="SA full training set, reported on real GlaS", f1_A=0.921, f1_B=0.855, dice_A=0.904, dice_B=0.858,
         haus_A=44.736, haus_B=96.976),
    dict(method="QSA + NTQ 5 FCNs, reported on real GlaS", f1_A=0.930, f1_B=0.862, dice_A=0.914, dice_B=0.859,
         haus_A=41.783, haus_B=97.390),
)


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


def evaluate_variants(ensembles: Mapping[str, Any], splits: Mapping[str, Sequence[Any]], *, val: Sequence[Any],
                      main: str, scale: float = 1.0, min_area: int = 50,
                      progress: bool = False) -> dict[str, dict[str, Any]]:
    """:func:`evaluate_ensemble` of every ensemble (``{name: models}``, in order), thresholds tuned
    on ``val`` for each; only the ``main`` one keeps its instance maps (``keep_instances``)."""
    return {name: evaluate_ensemble(models, splits, val=val, scale=scale, min_area=min_area,
                                    keep_instances=(name == main), progress=progress)
            for name, models in ensembles.items()}


def variant_scores(results: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (variant, split): ``variant, split, f1, object_dice, object_hausdorff, n_gt``."""
    return [dict(variant=name, split=split, f1=m["f1"], object_dice=m["object_dice"],
                 object_hausdorff=m["object_hausdorff"], n_gt=m["n_gt"])
            for name, r in results.items() for split, m in r["splits"].items()]


def variant_entries(ensembles: Mapping[str, Sequence[Any]], results: Mapping[str, dict[str, Any]], *,
                    sizes: Mapping[str, dict[str, Any]], size_table: Sequence[dict[str, Any]], ntq_scheme: str,
                    ntq_bits: int) -> dict[str, dict[str, Any]]:
    """The ``variants`` part of ``metrics.json``: per variant ``scheme, bits`` (:func:`qfcn.train.scheme_bits`),
    ``n_members``, the tuned ``thresholds``, ``weight_bytes`` / ``file_bytes`` (its packed first member
    from ``sizes``; float variants: the float32 sizes of the first ``size_table`` row) and ``splits``
    (the :func:`qfcn.metrics.glas_metrics` dicts)."""
    out = {}
    for name, r in results.items():
        scheme, bits = train.scheme_bits(name, ntq_scheme, ntq_bits)
        rep = sizes.get(name, {})
        out[name] = dict(scheme=scheme, bits=bits, n_members=len(ensembles[name]), thresholds=r["thresholds"],
                         weight_bytes=rep.get("weight_bytes", size_table[0]["float32_weight_bytes"]),
                         file_bytes=rep.get("file_bytes", size_table[0]["float32_checkpoint_bytes"]),
                         splits=r["splits"])
    return out
