"""Score an ensemble the way the study reports it: predict, post-process, GlaS metrics,
all in each image's ORIGINAL pixels (docs/method.md §6).

:func:`evaluate_ensemble` predicts every image once at its working resolution
(``sample.image``), resizes the object and contour probabilities to the original size
(``sample.source_shape``, bilinear), tunes the post-processing thresholds on the validation
images' cached probabilities (:func:`qfcn.postprocess.tune_postprocess`, never on a test
split), applies them to every other split and computes :func:`qfcn.metrics.glas_metrics`
against ``sample.source_instances``. So ``min_area``, ``hole_area`` and ``grow_distance``
are original-resolution (GlaS scale-1) pixels and every metric, object Hausdorff included,
is in original pixels whatever the working scale. :func:`evaluate_variants` scores every
ensemble of notebook 04 and :func:`variant_entries` turns the scores into the ``variants``
part of ``metrics.json``; :func:`efficiency_rows` trains and scores the final ensemble at
smaller annotation budgets (the efficiency curve); :data:`PAPER_ROWS` holds the scores the paper
reports.

>>> to_source(np.array([[0.0, 1.0]], np.float32), (2, 4)).round(2).tolist()
[[0.0, 0.25, 0.75, 1.0], [0.0, 0.25, 0.75, 1.0]]
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qfcn import infer, metrics, postprocess, train
from qfcn.train.budgets import budget_sets

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


def source_instances(sample: Any) -> np.ndarray:
    """The ground truth a sample is scored against: ``sample.source_instances`` (H0, W0) at
    the file's original resolution (:func:`qfcn.data.load_glas` keeps it beside the
    working-scale ``instances``), checked against ``sample.source_shape``."""
    src = sample.source_instances
    shape = tuple(sample.source_shape)
    if tuple(src.shape) != shape:
        raise ValueError(f"sample {getattr(sample, 'name', '?')!r}: source_instances shape {src.shape} "
                         f"differs from source_shape {shape}")
    return src


def to_source(prob: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) probabilities resized to ``shape`` (H0, W0): bilinear with half-pixel centres and
    edge clamping (the semantics of ``torch.nn.functional.interpolate(mode="bilinear",
    align_corners=False)``, as :mod:`qfcn.infer` resizes), in NumPy: two separable passes,
    a few ms per full-size map and no thread pool to contend for; float32. The same array
    when the shapes agree."""
    prob = np.asarray(prob, np.float32)
    if prob.shape == tuple(shape):
        return prob
    (r0, r1, wr), (c0, c1, wc) = (_bilinear_axis(n, m) for n, m in zip(prob.shape, shape))
    rows = prob[r0] * (1 - wr)[:, None] + prob[r1] * wr[:, None]
    return rows[:, c0] * (1 - wc) + rows[:, c1] * wc


def _bilinear_axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (lower, upper) and float32 upper weights of ``n_out`` half-pixel centres."""
    x = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    lo = np.minimum(x.astype(np.intp), n_in - 1)
    return lo, np.minimum(lo + 1, n_in - 1), (x - lo).astype(np.float32)


def source_probs(models: Any, samples: Sequence[Any], *, progress: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
    """(object, contour) probabilities of every sample, predicted once on ``sample.image``
    and resized to the sample's original size (:func:`to_source`)."""
    out = []
    for s, p in zip(samples, infer.predict_dataset(models, samples, progress=progress)):
        shape = source_instances(s).shape
        out.append((to_source(p["object"], shape), to_source(p["contour"], shape)))
    return out


def evaluate_ensemble(models: Any, splits: Mapping[str, Sequence[Any]], *, val: Sequence[Any],
                      min_area: int = 50, hole_area: int = 500, metric: str = "f1",
                      grid: Mapping[str, Sequence[Any]] | None = None, extend: int = 3,
                      keep_instances: bool = False, progress: bool = False) -> dict[str, Any]:
    """Evaluate one model or an ensemble (list of models) in original-resolution pixels.

    Args:
        models: an SAFCN or a list of them (probabilities are averaged over members).
        splits: split name -> samples (:class:`qfcn.data.Sample`) to score, e.g.
            ``{"test_a": ..., "test_b": ..., "train": ..., "val": val}`` (the validation
            list itself is scored from the probabilities cached for tuning).
        val: the validation samples the thresholds are tuned on (the data step's fixed
            ``GlasDataset.val``).
        min_area, hole_area: post-processing areas in original-resolution pixels.
        metric: ranked first by the tuning (then object Dice; ``object_hausdorff``: minimised).
        grid: threshold grid (default :data:`qfcn.postprocess.DEFAULT_GRID`).
        extend: rounds of edge extension of the grid (:func:`qfcn.postprocess.tune_postprocess`).
        keep_instances: also return the predicted instance maps and object probabilities.

    Returns:
        ``{"thresholds": {...}, "tuning": [...], "edge": {...}, "splits": {name: glas_metrics
        dict}, "fragments": {name: {"n_components", "n_small", "n_objects"}}}``: ``tuning``
        is the threshold-sensitivity table on validation (records: grid point, pooled
        ``f1``, ``object_dice``, ..., ``best``), ``edge`` flags a tuned threshold left on
        its grid's edge, ``fragments`` counts seed components found / rejected under
        ``min_area`` / kept per split. With ``keep_instances`` also ``"instances"`` /
        ``"object_prob"`` ({name: list of (H0, W0) arrays}).
    """
    if not val:
        raise ValueError("val: the validation split is empty; use the data step's fixed validation set (ds.val)")
    vp = source_probs(models, val, progress=progress)
    tuned = postprocess.tune_postprocess([o for o, _ in vp], [c for _, c in vp], [source_instances(s) for s in val],
                                         grid=grid, metric=metric, split="validation", extend=extend,
                                         min_area=min_area, hole_area=hole_area)
    out: dict[str, Any] = {"thresholds": tuned.thresholds, "tuning": tuned.table.to_dict("records"),
                           "edge": tuned.edge, "splits": {}, "fragments": {}}
    if keep_instances:
        out["instances"], out["object_prob"] = {}, {}
    for name, samples in splits.items():
        if not samples:
            continue
        probs = vp if samples is val else source_probs(models, samples, progress=progress)
        inst, stats = zip(*(postprocess.instances_from_probs(o, c, return_stats=True, **tuned.thresholds)
                            for o, c in probs))
        out["splits"][name] = metrics.glas_metrics([source_instances(s) for s in samples], inst,
                                                   names=[s.name for s in samples])
        out["fragments"][name] = {k: sum(st[k] for st in stats) for k in stats[0]}
        if keep_instances:
            out["instances"][name] = list(inst)
            out["object_prob"][name] = [o for o, _ in probs]
    return out


def n_glands(samples: Sequence[Any]) -> int:
    """Number of ground-truth glands over ``samples`` (:attr:`qfcn.data.Sample.n_glands`: the
    loader relabels every instance map to 1..n)."""
    return sum(s.n_glands for s in samples)


def evaluate_variants(ensembles: Mapping[str, Any], splits: Mapping[str, Sequence[Any]], *, val: Sequence[Any],
                      main: str, min_area: int = 50, progress: bool = False) -> dict[str, dict[str, Any]]:
    """:func:`evaluate_ensemble` of every ensemble (``{name: models}``, in order), thresholds tuned
    on ``val`` for each; only the ``main`` one keeps its instance maps (``keep_instances``).
    ``min_area`` in original-resolution pixels."""
    return {name: evaluate_ensemble(models, splits, val=val, min_area=min_area,
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
    ``n_members``, the tuned ``thresholds``, the validation threshold-sensitivity table ``tuning`` and
    the ``edge`` flags, the ``fragments`` counts, ``weight_bytes`` / ``file_bytes`` (its packed first
    member from ``sizes``; float variants: the float32 sizes of the first ``size_table`` row) and
    ``splits`` (the :func:`qfcn.metrics.glas_metrics` dicts, in original-resolution pixels)."""
    out = {}
    for name, r in results.items():
        scheme, bits = train.scheme_bits(name, ntq_scheme, ntq_bits)
        rep = sizes.get(name, {})
        out[name] = dict(scheme=scheme, bits=bits, n_members=len(ensembles[name]), thresholds=r["thresholds"],
                         tuning=r["tuning"], edge=r["edge"], fragments=r["fragments"],
                         weight_bytes=rep.get("weight_bytes", size_table[0]["float32_weight_bytes"]),
                         file_bytes=rep.get("file_bytes", size_table[0]["float32_checkpoint_bytes"]),
                         splits=r["splits"])
    return out


def efficiency_rows(record: Mapping[str, Any], pool: Sequence[Any], float_cfg: Any, ntq_cfg: Any, *,
                    budgets: Sequence[float], n_members: int, val: Sequence[Any], tests: Mapping[str, Sequence[Any]],
                    out_dir: str | os.PathLike, selection: str, seed: int, min_area: int = 50,
                    main: Mapping[str, Sequence[Any]] | None = None, progress: bool = False) -> list[dict[str, Any]]:
    """The annotation-efficiency points of one run (issue 10; docs/method.md §5, §7): per budget, the
    final ensemble retrained on the annotated set the suggestion ``record`` had reached
    (:func:`qfcn.train.budgets.budget_sets`; 1.0 = the whole ``pool``) and scored like the run's own.

    Per budget ``b``: ``n_members`` float members with ``float_cfg`` (no bootstrap, the same seeds as
    the run's main float members, so the points pair with them by seed) in ``out_dir/b<b>/float``,
    and when ``ntq_cfg.scheme`` is not 'float' the NTQ members derived from those float weights
    (:func:`qfcn.train.derive_variants`, no other variant) in ``out_dir/b<b>/ntq``; finished members
    are reused, interrupted ones resume from their checkpoints. Each ensemble is scored by
    :func:`evaluate_ensemble` with thresholds tuned on ``val`` (the fixed validation set) on
    ``tests`` (``{"test_a": ..., "test_b": ...}``); ``min_area`` in original pixels.

    ``pool``: the suggestion run's pool (``ds.train`` samples, in pool order). Returns one row per
    (budget, quantized), budgets in the given order, float first: ``{"selection", "quantized",
    "budget", "n_images", "n_pool", "seed", "f1_a", "f1_b"}`` (pooled object F1). All budgets are
    checked before any training. ``main``: the run's own ensembles (``{"float": models, "ntq": models}``),
    trained with the same configs on the record's whole ``annotated`` list: the budget whose set is
    that list, in that order, reuses them instead of training the same networks again.
    """
    by_name = {s.name: s for s in pool}
    sets = budget_sets(record, list(by_name), budgets)
    if set(tests) != {"test_a", "test_b"}:
        raise ValueError(f"tests: expected the keys test_a and test_b, got {sorted(tests)}")
    quantized = ntq_cfg.scheme != "float"
    rows = []
    for b, names in sets.items():
        samples = [by_name[n] for n in names]
        bdir = Path(out_dir) / f"b{b:g}"
        if main is not None and names == list(record.get("annotated", [])):
            ens = main
        else:
            members = train.train_ensemble(samples, float_cfg, k=n_members, out_dir=bdir / "float",
                                           bootstrap=False, progress=progress)
            ens = train.derive_variants(members, samples, ntq_cfg, n_members=n_members, variants=[], out_dir=bdir,
                                        progress=progress)
        for q, name in ((False, "float"), (True, "ntq"))[: 1 + quantized]:
            r = evaluate_ensemble(ens[name], tests, val=val, min_area=min_area, progress=progress)
            rows.append(dict(selection=selection, quantized=q, budget=float(b), n_images=len(names),
                             n_pool=len(by_name), seed=seed, f1_a=r["splits"]["test_a"]["f1"],
                             f1_b=r["splits"]["test_b"]["f1"]))
    return rows
