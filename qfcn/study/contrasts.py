"""The study's comparisons, declared as data in one place, and their paired statistics
(docs/method.md §7).

* :data:`RUN_NAMES`: arm -> the runs (or a run's derived variant) that give it, first present wins.
* :data:`CONTRASTS`: ``{id, kind, a, b, question, label}``. ``kind="within"``: ``a``/``b`` are
  column filters on the variants of ONE run (same float members), paired on the run folder, and
  evaluated separately for every run configuration (batch-point name) that has both (never pooled
  over bit-widths). ``kind="between"``: ``a``/``b`` are arms of :data:`RUN_NAMES`, their main
  results paired on the seed. A contrast whose arms are absent is recorded as ``"missing"``.
* Statistics over per-seed paired differences d_1..d_n (``a - b``): mean, two-sided 95% Student-t
  interval, ``mde = (t.ppf(0.975, n-1) + t.ppf(0.8, n-1)) * sd / sqrt(n)`` (sd with ddof=1) and
  the number of seeds for an MDE of 0.01 at the observed sd (F1 and Dice only). Verdict: ``"inconclusive"`` exactly
  when the interval contains 0, else ``"a better"`` / ``"b better"`` in the metric's direction
  (:data:`HIGHER_IS_BETTER`: Hausdorff is a distance, lower is better); ``"needs more seeds"``
  for n < 2. Differences of bounded metrics are reported raw; per-arm intervals (:func:`arm_interval`)
  are clipped to [0, 1] for F1 and Dice, and say so.

>>> s = paired_stats([0.01, 0.02, 0.03], "f1")
>>> round(s["diff"], 3), round(s["low"], 4), round(s["high"], 4), s["n"], s["verdict"]
(0.02, -0.0048, 0.0448, 3, 'inconclusive')
>>> round(s["mde"], 4), s["seeds_for_mde_0.01"]
(0.031, 10)
>>> paired_stats([2.0, 3.0, 4.0], "object_hausdorff")["verdict"]  # a is farther: b is better
'b better'
>>> paired_stats([0.1], "f1")["verdict"]
'needs more seeds'
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as st

LEVEL, POWER, TARGET_MDE = 0.95, 0.8, 0.01
HIGHER_IS_BETTER = {"f1": True, "object_dice": True, "object_hausdorff": False}
BOUNDED = ("f1", "object_dice")  # in [0, 1]
METRIC_NAMES = {"f1": "F1", "object_dice": "object Dice",
                "object_hausdorff": "object Hausdorff (original-resolution pixels)"}
SPLIT_NAMES = {"test_a": "Test A", "test_b": "Test B", "train": "training images", "val": "validation"}

#: arm -> where its result lives, candidates in order (the first present in a study is used): a
#: batch-point name (params file ``batch.runs[].name``: that run's main result) or ``(name, variant)``
#: (a variant derived from that run's float members, e.g. float SA as the ``float`` variant of the
#: ``sa-ntq5`` run, which the standard profile runs instead of a separate ``sa-float`` run)
RUN_NAMES: dict[str, list[str | tuple[str, str]]] = {
    "sa": ["sa-float", ("sa-ntq5", "float"), ("sa-ntq7", "float")],
    "sa_control": [("sa-ntq5", "float_control")],
    "qsa7": ["qsa7-float", ("qsa7-ntq7", "float")],
    "qsa5": ["qsa5-float", ("qsa5-ntq5", "float")],
    "sa_ntq7": ["sa-ntq7", ("sa-float", "ntq7")],
    "sa_ntq5": ["sa-ntq5", ("sa-float", "ntq5")],
    "qsa_ntq7": ["qsa7-ntq7", ("qsa7-float", "ntq7")],
    "qsa_ntq5": ["qsa5-ntq5", ("qsa5-float", "ntq5")],
    # fixed-point NTQ: the uniform variant of the QSA+NTQ-5 run, else of the SA+NTQ-5 run (the
    # standard profile derives it there, beside NTQ, from the same float members)
    "fixed5": [("qsa5-ntq5", "uniform"), ("sa-ntq5", "uniform")],
    "random": ["random-float", ("random-ntq5", "float")],
    "uncertainty": ["uncertainty-float", ("uncertainty-ntq5", "float")],
    "full": ["full-float", ("full-ntq5", "float")],
}
ARM_LABELS = {"sa": "SA", "sa_control": "SA (float, step-matched to NTQ-5)", "qsa7": "QSA-7", "qsa5": "QSA-5",
              "sa_ntq7": "SA+NTQ-7", "sa_ntq5": "SA+NTQ-5",
              "qsa_ntq7": "QSA+NTQ-7", "qsa_ntq5": "QSA+NTQ-5", "fixed5": "fixed-point (uniform) NTQ-5",
              "random": "random selection",
              "uncertainty": "uncertainty-only selection", "full": "full training set"}


def _between(cid: str, a: str, b: str, question: str) -> dict[str, Any]:
    return dict(id=cid, kind="between", a=a, b=b, question=question, label=f"{ARM_LABELS[a]} vs {ARM_LABELS[b]}")


CONTRASTS: list[dict[str, Any]] = [
    dict(id="ntq_vs_float_control", kind="within", a={"variant": "ntq"}, b={"variant": "float_control"},
         question="Does NTQ beat a float network given the same extra training steps?",
         label="NTQ-{bits} vs its float control (same extra steps)"),
    dict(id="inq_vs_uniform", kind="within", a={"variant": ("ntq", "inq"), "scheme": "inq"},
         b={"variant": ("ntq", "uniform"), "scheme": "uniform"},
         question="Is INQ better than uniform fixed-point quantization at the same bit-width?",
         label="INQ-{bits} vs uniform-{bits} (both retrained)"),
    dict(id="ntq_vs_ptq", kind="within", a={"variant": "ntq"}, b={"variant": "ptq"},
         question="Does retraining during quantization (NTQ) beat post-training quantization?",
         label="NTQ-{bits} vs PTQ-{bits} (post-training, no retraining)"),
    dict(id="ptq_bn_vs_ptq", kind="within", a={"variant": "ptq_bn"}, b={"variant": "ptq"},
         question="Without retraining, does re-estimating batch-norm statistics help?",
         label="PTQ-{bits} with BN re-estimation vs PTQ-{bits} without"),
    dict(id="float_control_vs_float", kind="within", a={"variant": "float_control"}, b={"variant": "float"},
         question="Do the extra float steps alone change the score?", label="float control vs float"),
    dict(id="ensemble_vs_single", kind="within", a={"main": True}, b={"variant": "single"},
         question="Does the ensemble beat a single FCN of the same run?", label="ensemble vs single FCN"),
    _between("qsa_vs_sa", "qsa5", "sa", "Does a quantized (5-bit) selection ensemble pick better images (QSA vs SA)?"),
    _between("qsa7_vs_sa", "qsa7", "sa", "Does a 7-bit selection ensemble pick better images (QSA-7 vs SA)?"),
    _between("sa_ntq_vs_sa", "sa_ntq5", "sa", "Does NTQ-5 on SA's selection beat float SA?"),
    _between("sa_ntq7_vs_sa", "sa_ntq7", "sa", "Does NTQ-7 on SA's selection beat float SA?"),
    _between("qsa_ntq_vs_sa", "qsa_ntq5", "sa", "Does QSA+NTQ at 5 bits beat float SA (the paper's claim)?"),
    _between("qsa_ntq_vs_sa_control", "qsa_ntq5", "sa_control",
             "Does QSA+NTQ-5 beat float SA given the same number of training steps?"),
    _between("qsa7_ntq7_vs_sa", "qsa_ntq7", "sa", "Does QSA+NTQ at 7 bits beat float SA?"),
    _between("suggestive_vs_random", "sa", "random", "Does suggestive selection beat random selection?"),
    _between("suggestive_vs_uncertainty", "sa", "uncertainty",
             "Does suggestive selection beat uncertainty-only selection?"),
    _between("full_vs_suggestive", "full", "sa", "How far is SA's 50% selection from the full training set?"),
]


def mean_ci(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high) of the mean of the finite ``values``, Student-t (NaN bounds for n < 2)."""
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if x.size == 0:
        return (math.nan, math.nan, math.nan)
    m = float(x.mean())
    if x.size < 2:
        return (m, math.nan, math.nan)
    half = float(st.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return (m, m - half, m + half)


def arm_interval(values: Sequence[float], metric: str) -> dict[str, Any]:
    """Per-arm ``{values, mean, low, high, n, clipped}`` over seeds: the :func:`mean_ci` interval,
    clipped to [0, 1] for bounded metrics (``clipped`` says whether that changed a bound); None
    for undefined numbers (n < 2).

    >>> arm_interval([0.99, 0.90], "f1")["high"], arm_interval([0.99, 0.90], "f1")["clipped"]
    (1.0, True)
    """
    vals = [float(v) for v in values if v is not None and np.isfinite(v)]
    m, lo, hi = mean_ci(vals)
    clipped = False
    if metric in BOUNDED and np.isfinite(lo):
        clipped = lo < 0 or hi > 1
        lo, hi = max(lo, 0.0), min(hi, 1.0)
    return dict(values=vals, mean=finite(m), low=finite(lo), high=finite(hi), n=len(vals), clipped=clipped)


def finite(x: float | None) -> float | None:
    """``x`` as a float, or None when it is None, NaN or infinite (JSON-ready)."""
    return float(x) if x is not None and np.isfinite(x) else None


def mde(sd: float, n: int, level: float = LEVEL, power: float = POWER) -> float:
    """Minimum detectable paired difference at ``power`` (two-sided ``level``) with n seeds."""
    return float((st.t.ppf(0.5 + level / 2, n - 1) + st.t.ppf(power, n - 1)) * sd / math.sqrt(n))


def seeds_for_mde(sd: float, target: float = TARGET_MDE, max_n: int = 10**7) -> int | None:
    """Smallest n >= 2 with :func:`mde` (sd, n) <= ``target`` (t quantiles iterated from the normal
    approximation up); None when sd is undefined or n would exceed ``max_n``.

    >>> seeds_for_mde(0.01), seeds_for_mde(0.0), seeds_for_mde(float("nan"))
    (10, 2, None)
    """
    if not np.isfinite(sd):
        return None
    if sd == 0:
        return 2
    z = st.norm.ppf(0.5 + LEVEL / 2) + st.norm.ppf(POWER)
    n = max(2, math.ceil((z * sd / target) ** 2))  # t > z: the t answer is never smaller
    while mde(sd, n) > target:
        n += 1
        if n > max_n:
            return None
    return n


def paired_stats(values: Sequence[float], metric: str) -> dict[str, Any]:
    """Statistics of per-seed paired differences ``values`` (a − b) of ``metric`` (module doc)."""
    if metric not in HIGHER_IS_BETTER:
        raise ValueError(f"metric={metric!r}: expected one of {sorted(HIGHER_IS_BETTER)}")
    d = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    out = dict(values=d.tolist(), n=int(d.size), diff=finite(d.mean()) if d.size else None, low=None, high=None,
               sd=None, mde=None, verdict="needs more seeds", **{"seeds_for_mde_0.01": None})
    if d.size < 2:
        return out
    m, lo, hi = mean_ci(d)
    sd = float(d.std(ddof=1))
    seeds = seeds_for_mde(sd) if metric in BOUNDED else None  # 0.01 is a score, not a distance in pixels
    out.update(low=lo, high=hi, sd=sd, mde=mde(sd, d.size), **{"seeds_for_mde_0.01": seeds})
    if lo <= 0 <= hi:
        out["verdict"] = "inconclusive"
    else:
        out["verdict"] = "a better" if (m > 0) == HIGHER_IS_BETTER[metric] else "b better"
    return out


def _select(df: pd.DataFrame, flt: dict[str, Any]) -> pd.DataFrame:
    for k, v in flt.items():
        df = df[df[k].isin(v) if isinstance(v, tuple) else df[k] == v]
    return df


def _within_pairs(df: pd.DataFrame, c: dict[str, Any], split: str, metric: str) -> list[tuple[str, dict]]:
    """[(run name, {seed: a - b})] for every configuration with both arms of ``c``."""
    out = []
    for name, g in df[df.split == split].groupby("name", sort=True):
        a, b = _select(g, c["a"]), _select(g, c["b"])
        for side, rows in (("a", a), ("b", b)):
            if rows.run_dir.duplicated().any():
                raise ValueError(f"contrast {c['id']}: arm {side} {c[side]} matches several variants of one run "
                                 f"in {name!r}; expected one per run")
        a, b = a.set_index("run_dir"), b.set_index("run_dir")
        keys = sorted(set(a.index) & set(b.index))
        if keys:
            out.append((name, {int(a.at[k, "seed"]): float(a.at[k, metric]) - float(b.at[k, metric]) for k in keys}))
    return out


def arm_rows(df: pd.DataFrame, arm: str, run_names: dict[str, list] = RUN_NAMES) -> tuple[pd.DataFrame, str | None]:
    """The tidy rows of ``arm`` (one variant per run folder) from its first candidate present in
    ``df`` (:data:`RUN_NAMES`), and the run name used (None when no candidate is present).

    >>> df = pd.DataFrame([dict(name="sa-ntq5", variant=v, main=v == "ntq") for v in ("ntq", "float")])
    >>> rows, name = arm_rows(df, "sa")
    >>> name, rows.variant.tolist()
    ('sa-ntq5', ['float'])
    """
    for cand in _candidates(arm, run_names):
        name, variant = (cand, None) if isinstance(cand, str) else cand
        rows = df[df.name == name] if len(df) else df
        rows = rows[rows["main"]] if variant is None else rows[rows.variant == variant]
        if len(rows):
            return rows, name
    return df.iloc[0:0], None


def _candidates(arm: str, run_names: dict[str, list]) -> list[str | tuple[str, str]]:
    """The arm's candidates as a list (a single name or (name, variant) is accepted too)."""
    cands = run_names.get(arm, [])
    return [cands] if isinstance(cands, (str, tuple)) else list(cands)


def _describe(arm: str, run_names: dict[str, list]) -> str:
    cands = [c if isinstance(c, str) else f"{c[0]}:{c[1]}" for c in _candidates(arm, run_names)]
    return f"no finished run gives {ARM_LABELS[arm]} (looked for {', '.join(cands) or 'nothing'})"


def _between_pairs(df: pd.DataFrame, c: dict[str, Any], split: str, metric: str,
                   run_names: dict[str, list]) -> tuple[dict[int, float], str | None]:
    """({seed: a - b}, None) or ({}, why missing)."""
    arms = {}
    for side in ("a", "b"):
        rows, _ = arm_rows(df[df.split == split], c[side], run_names)
        if rows.empty:
            return {}, _describe(c[side], run_names)
        arms[side] = rows.groupby("seed")[metric].mean()
    seeds = sorted(set(arms["a"].index) & set(arms["b"].index))
    if not seeds:
        return {}, "the two arms share no seed"
    return {int(s): float(arms["a"][s] - arms["b"][s]) for s in seeds}, None


def _bits(df: pd.DataFrame, name: str | None) -> str:
    bits = df[df.name == name].ntq_bits.dropna() if name is not None and "ntq_bits" in df else []
    return str(int(bits.iloc[0])) if len(bits) else "?"


def evaluate(df: pd.DataFrame, *, metrics: Sequence[str] = ("f1", "object_dice", "object_hausdorff"),
             splits: Sequence[str] = ("test_a", "test_b"), contrasts: Sequence[dict] = tuple(CONTRASTS),
             run_names: dict[str, list] = RUN_NAMES) -> list[dict[str, Any]]:
    """Every contrast per split and metric: ``{id, kind, run, question, label, split, metric, seeds,
    values, diff, low, high, sd, mde, n, verdict, seeds_for_mde_0.01, missing}`` in the order of
    ``contrasts`` then split then metric (within contrasts: one entry per run configuration).
    ``df``: :func:`qfcn.study.report.tidy` rows. Missing arms: ``verdict="missing"``, ``n=0``."""
    need = {"name", "seed", "run_dir", "variant", "main", "split", *metrics}
    if not df.empty and need - set(df.columns):
        raise ValueError(f"contrasts.evaluate: tidy rows lack columns {sorted(need - set(df.columns))}")
    out = []
    for c in contrasts:
        for split in splits:
            for metric in metrics:
                if df.empty:
                    groups, why = [], "no finished runs"
                elif c["kind"] == "within":
                    groups = _within_pairs(df, c, split, metric)
                    why = f"no run has both {c['a']} and {c['b']}"
                else:
                    pairs, why = _between_pairs(df, c, split, metric, run_names)
                    groups = [(None, pairs)] if pairs else []
                base = dict(id=c["id"], kind=c["kind"], question=c["question"], split=split, metric=metric)
                if not groups:
                    out.append({**base, "run": None, "label": c["label"].replace("-{bits}", ""), "seeds": [],
                                **paired_stats([], metric), "verdict": "missing", "missing": why})
                for name, pairs in groups:
                    label = c["label"].format(bits=_bits(df, name))
                    seeds = sorted(pairs)
                    out.append({**base, "run": name, "label": label, "seeds": seeds,
                                **paired_stats([pairs[s] for s in seeds], metric), "missing": None})
    return out


def _fmt(x: float, metric: str, signed: bool = True) -> str:
    digits = 1 if metric == "object_hausdorff" else 3
    return f"{x:+.{digits}f}".replace("-", "−") if signed else f"{x:.{digits}f}"


def sentence(c: dict[str, Any]) -> str:
    """One plain sentence for an :func:`evaluate` entry, e.g. ``"NTQ-5 vs its float control (same
    extra steps) [qsa5-ntq5], Test A F1: −0.012 [−0.031, +0.007], n = 10, MDE 0.018: inconclusive."``"""
    run = f" [{c['run']}]" if c.get("run") else ""
    head = f"{c['label']}{run}, {SPLIT_NAMES.get(c['split'], c['split'])} {METRIC_NAMES[c['metric']]}"
    m = c["metric"]
    if c["verdict"] == "missing":
        return f"{head}: not measured ({c['missing']})."
    if c["n"] < 2:
        return f"{head}: {_fmt(c['diff'], m)} from n = {c['n']} seed; no interval: needs more seeds."
    a, b = c["label"].split(" vs ", 1) if " vs " in c["label"] else ("a", "b")
    verdict = {"a better": f"{a} better", "b better": f"{b} better"}.get(c["verdict"], c["verdict"])
    seeds = c["seeds_for_mde_0.01"]
    need = f"; about {seeds} seeds would give MDE {TARGET_MDE}" if seeds and seeds > c["n"] else ""
    return (f"{head}: {_fmt(c['diff'], m)} [{_fmt(c['low'], m)}, {_fmt(c['high'], m)}], n = {c['n']}, "
            f"MDE {_fmt(c['mde'], m, signed=False)}{need}: {verdict}.")
