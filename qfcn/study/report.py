"""Finished runs -> tables, comparisons, ``summary.json``, rendered notebooks (HTML) and ``index.html``.

Every run's ``final/metrics.json`` is read through :mod:`qfcn.study.records` (the one place that
knows its layout). :func:`tidy` flattens them into one row per (run, variant, split); the tables,
the ablations' paired comparisons (docs/method.md §7) and the pages are built from those rows.
Seed-to-seed statistics: ``values`` are one number per seed; intervals are Student-t intervals
of the mean (two-sided, ``level`` = 0.95); with a single seed the interval is undefined (NaN) and
every comparison says so instead of claiming a difference.

>>> rows = [dict(name="a", seed=s, split=p, main=True, f1=f, object_dice=f, object_hausdorff=10.0)
...         for s, f in ((0, 0.5), (1, 0.7)) for p in ("test_a", "test_b")]
>>> table = main_table(pd.DataFrame(rows))
>>> table.loc[0, "run"], int(table.loc[0, "seeds"]), float(table.loc[0, "f1 A"])
('a', 2, 0.6)
>>> round(float(table.loc[0, "f1 A ±"]), 3)  # half-width of the 95% t-interval of the mean
1.271
>>> paired_difference([0.9], [0.8])["verdict"]
'cannot tell: 1 seed(s), no seed-to-seed spread to compare against'
"""
from __future__ import annotations

import html
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as st

from qfcn.io import atomic_write_bytes, atomic_write_json, code_version
from qfcn.study import records, runs

TESTS = records.TESTS
SPLIT_NAMES = {"test_a": "Test A", "test_b": "Test B"}


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of the mean of ``values`` (NaN bounds for fewer than 2 finite values)."""
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if x.size == 0:
        return (math.nan, math.nan, math.nan)
    m = float(x.mean())
    if x.size < 2:
        return (m, math.nan, math.nan)
    half = float(st.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return (m, m - half, m + half)


def paired_difference(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> dict[str, float | int | str]:
    """Compare ``a`` against ``b``, paired by position (same seed). Returns the mean difference
    ``a - b`` with its interval, the number of pairs and a plain-language verdict."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired_difference: a has {a.shape} values and b has {b.shape}; expected one per seed each")
    ok = np.isfinite(a) & np.isfinite(b)
    d = a[ok] - b[ok]
    m, lo, hi = mean_ci(d, level)
    if d.size < 2:
        verdict = f"cannot tell: {d.size} seed(s), no seed-to-seed spread to compare against"
    elif lo > 0 or hi < 0:
        verdict = f"larger than the seed-to-seed spread ({int(level * 100)}% interval of the difference excludes 0)"
    else:
        verdict = f"within the seed-to-seed spread ({int(level * 100)}% interval of the difference includes 0)"
    return {"diff": m, "low": lo, "high": hi, "n": int(d.size), "verdict": verdict}


def load_run_metrics(study_dir: str | os.PathLike, manifest_hash: str | None = None) -> list[dict[str, Any]]:
    """Every run's metrics record (sorted by folder), with ``run_dir`` added and ``run.name`` set
    to the batch point's name (the same for every seed of a configuration) when the runner
    recorded it in ``done.json``; otherwise the folder name stays. With ``manifest_hash``, only
    the records built from that data manifest."""
    out = []
    for run_dir in records.run_dirs(study_dir):
        record = records.read_metrics(run_dir)
        if manifest_hash is not None and record.get("manifest_hash") != manifest_hash:
            continue
        record["run_dir"] = str(run_dir)
        point = runs.done_point(run_dir)
        if point is not None:
            record["run"]["name"] = point.get("name", record["run"]["name"])
        out.append(record)
    return out


def tidy(study_dir: str | os.PathLike, manifest_hash: str | None = None) -> pd.DataFrame:
    """One row per (run, variant, split) with the pooled headline metrics and model bytes
    (:func:`qfcn.study.records.tidy_rows`); ``manifest_hash`` as in :func:`load_run_metrics`."""
    return pd.DataFrame([row for rec in load_run_metrics(study_dir, manifest_hash) for row in records.tidy_rows(rec)])


def summary_table(study_dir: str | os.PathLike) -> pd.DataFrame:
    """Main result of every run and seed: pooled Test A / Test B F1, object Dice, object Hausdorff
    (rounded to 4 decimals)."""
    df = tidy(study_dir)
    if df.empty:
        return df
    df = df[df["main"] & df["split"].isin(TESTS)]
    wide = df.pivot_table(index=["name", "seed"], columns="split", values=list(records.HEADLINE))
    wide.columns = [f"{m} {'A' if s == 'test_a' else 'B'}" for m, s in wide.columns]
    order = [f"{m} {p}" for p in "AB" for m in records.HEADLINE]
    return wide[[c for c in order if c in wide]].reset_index().round(4)


def main_table(main: pd.DataFrame) -> pd.DataFrame:
    """The main table: one row per run configuration (``name``), its number of seeds and, per test
    part and headline metric, the mean over seeds (``"f1 A"``) and the half-width of its 95%
    interval (``"f1 A ±"``, NaN with one seed). ``main``: :func:`tidy` rows of the runs' main
    results (``df[df["main"]]``)."""
    rows = []
    for name, g in main[main.split.isin(TESTS)].groupby("name", sort=False):
        row = dict(run=name, seeds=g.seed.nunique())
        for split in TESTS:
            for m in records.HEADLINE:
                mean, lo, hi = mean_ci(g[g.split == split][m].tolist())
                row[f"{m} {split[-1].upper()}"] = mean
                row[f"{m} {split[-1].upper()} ±"] = (hi - lo) / 2 if np.isfinite(lo) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def summary(study_dir: str | os.PathLike) -> dict[str, Any]:
    """The content of ``summary.json``: pooled Test A / B scores of every run's main result."""
    runs_out = [{"run": rec["run"], "run_dir": Path(rec["run_dir"]).name, **records.main_scores(rec),
                 "n_glands": rec.get("n_glands")} for rec in load_run_metrics(study_dir)]
    return {"runs": runs_out, "code_version": code_version()}


def gland_counts(main: pd.DataFrame, min_glands: int) -> tuple[dict[str, int], dict[str, bool]]:
    """Glands per test part (``{"test_a": n, ...}``) and whether each has at least ``min_glands``
    (one gland moves object F1 by about 1/n: fewer make conclusions indicative only)."""
    glands = {k: int(v) for k, v in main.groupby("split")["n_glands"].max().items() if k in TESTS}
    return glands, {k: v >= min_glands for k, v in glands.items()}


def calibration(main: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Where the float SA baseline (suggestive selection, float QSA and NTQ) landed: per test
    part, its F1 mean, 95% interval, seed-to-seed standard deviation and number of seeds."""
    base = main[(main.selection == "suggestive") & (main.qsa_bits == 32) & (main.ntq_bits == 32)]
    out = {}
    for split in TESTS:
        vals = base[base.split == split]["f1"].tolist()
        mean, lo, hi = mean_ci(vals)
        sd = float(np.std(vals, ddof=1)) if len(vals) > 1 else float("nan")
        out[split] = dict(mean=mean, low=lo, high=hi, sd=sd, seeds=len(vals))
    return out


def compare(df: pd.DataFrame, a: dict[str, Any], b: dict[str, Any], *, pair_on: str, split: str,
            metric: str = "f1", question: str = "", labels: tuple[str, str] | None = None) -> dict[str, Any]:
    """Paired comparison of two selections of :func:`tidy` rows on one split and metric.

    ``a`` and ``b`` are column -> value filters (e.g. ``{"variant": "ntq"}``); rows are paired
    on ``pair_on`` (``"run_dir"``: two variants of the same run, i.e. the same float members;
    ``"seed"``: two runs with the same seed). Returns the :func:`paired_difference`
    dict plus the question, both means and a plain sentence; ``labels`` name the two sides in it
    (default: the filter values)."""
    def pick(flt):
        sel = df[df["split"] == split]
        for k, v in flt.items():
            sel = sel[sel[k] == v]
        return sel.groupby(pair_on)[metric].mean()

    sa, sb = pick(a), pick(b)
    keys = sorted(set(sa.index) & set(sb.index), key=str)
    res = paired_difference([sa[k] for k in keys], [sb[k] for k in keys])
    la, lb = labels or (", ".join(f"{k}={v}" for k, v in a.items()), ", ".join(f"{k}={v}" for k, v in b.items()))
    split_name = SPLIT_NAMES.get(split, split)
    if res["n"]:
        sentence = (f"{question or 'difference'} ({split_name}, {metric}): {la} − {lb} = {res['diff']:+.3f} "
                    f"[{res['low']:+.3f}, {res['high']:+.3f}] over {res['n']} pair(s): {res['verdict']}.")
    else:
        sentence = f"{question or 'difference'} ({split_name}, {metric}): no paired runs with both {la} and {lb}."
    return {**res, "question": question, "split": split, "metric": metric, "a": la, "b": lb,
            "mean_a": float(sa[keys].mean()) if keys else float("nan"),
            "mean_b": float(sb[keys].mean()) if keys else float("nan"), "sentence": sentence}


SA_FLOAT = {"qsa_bits": 32, "ntq_bits": 32, "selection": "suggestive"}
# Q2-Q4: variants of one run (same float members), paired on the run: (a, b, question, labels)
VARIANT_QUESTIONS = (
    ({"variant": "ntq", "scheme": "inq"}, {"variant": "uniform"}, "Q2 INQ vs uniform fixed-point", ("INQ", "uniform")),
    ({"variant": "ntq"}, {"variant": "ptq"}, "Q3 quantization with retraining vs without", ("with retraining", "without")),
    ({"variant": "ptq_bn"}, {"variant": "ptq"}, "Q3 without retraining: BN re-estimated vs not", ("BN re-estimated", "not")),
    ({"variant": "ntq"}, {"variant": "float_control"}, "Q4 NTQ vs float control with the same extra steps",
     ("NTQ", "float control")),
    ({"variant": "float_control"}, {"variant": "float"}, "Q4 extra float steps alone", ("float + extra steps", "float")),
)


def ablation_answers(df: pd.DataFrame, metric: str = "f1") -> list[dict[str, Any]]:
    """The ablations' questions (docs/method.md §7) as :func:`compare` answers, in this order:
    Q1 QSA+NTQ 7/7 and 5/5 bits against float SA (paired on the seed); Q2-Q4 the variants of
    each quantized run (:data:`VARIANT_QUESTIONS`, paired on the run); Q5 suggestive selection
    against every other selection with float final networks (paired on the seed); Q6 the
    ensemble against a single FCN (paired on the run). Each block runs over Test A then Test B.
    ``df``: :func:`tidy` rows of one study."""
    main = df[df["main"]]
    answers = []
    for split in TESTS:
        for qsa, ntq in ((7, 7), (5, 5)):
            answers.append(compare(main, {"qsa_bits": qsa, "ntq_bits": ntq, "selection": "suggestive"}, SA_FLOAT,
                                   pair_on="seed", split=split, metric=metric,
                                   question=f"Q1 QSA+NTQ {qsa}/{ntq} bits vs float SA",
                                   labels=(f"QSA+NTQ {qsa}/{ntq}", "float SA")))
    for split in TESTS:
        for a, b, question, labels in VARIANT_QUESTIONS:
            answers.append(compare(df, a, b, pair_on="run_dir", split=split, metric=metric, question=question,
                                   labels=labels))
    sel = main[(main.ntq_bits == 32) & ((main.selection != "suggestive") | (main.qsa_bits == 32))]
    for split in TESTS:
        for other in sorted(set(sel.selection) - {"suggestive"}):
            answers.append(compare(sel, {"selection": "suggestive"}, {"selection": other}, pair_on="seed",
                                   split=split, metric=metric, question=f"Q5 suggestive vs {other} selection",
                                   labels=("suggestive", other)))
    for split in TESTS:
        answers.append(compare(df, {"main": True}, {"variant": "single"}, pair_on="run_dir", split=split,
                               metric=metric, question="Q6 ensemble vs single FCN", labels=("ensemble", "single FCN")))
    return answers


_PAGE_CSS = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}"
             "pre,code{background:#f6f6f6}pre{padding:6px;overflow-x:auto}img{max-width:100%}"
             "table{border-collapse:collapse}td,th{padding:2px 8px;text-align:right;border-bottom:1px solid #ddd}"
             ".jp-InputArea,.input_area{border-left:3px solid #ccd;padding-left:6px;margin:8px 0}")


def render_html(notebook: Path) -> Path:
    """Render an executed notebook to HTML next to it (atomically).

    nbconvert's 'basic' template (cells only) inside a small page of our own: the default 'lab'
    template embeds about 270 KB of style sheets in every file."""
    import nbconvert  # heavy (about a second to import): only when a report is rendered

    body, _ = nbconvert.HTMLExporter(template_name="basic").from_filename(str(notebook))
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(notebook.stem)}</title>"
            f"<style>{_PAGE_CSS}</style></head><body>{body}</body></html>")
    return atomic_write_bytes(notebook.with_suffix(".html"), page.encode())


def _table_html(df: pd.DataFrame) -> str:
    return df.to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0, classes="tbl")


def write_report(study_dir: str | os.PathLike) -> Path:
    """Render every executed notebook, write ``summary.json`` and ``index.html``; return the index."""
    study_dir = Path(study_dir)
    notebooks = sorted(study_dir.glob("*.ipynb")) + sorted(study_dir.glob("runs/*/*.ipynb"))
    links = [render_html(nb) for nb in notebooks]
    atomic_write_json(study_dir / "summary.json", summary(study_dir))
    df = tidy(study_dir)
    main = main_table(df[df["main"]]) if len(df) else df
    figs = sorted((study_dir / "figures").glob("*.png"))
    parts = [
        "<!doctype html><meta charset='utf-8'><title>qfcn study</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        ".tbl td,.tbl th{padding:2px 8px;text-align:right}img{max-width:100%}</style>",
        f"<h1>qfcn study: {html.escape(study_dir.name)}</h1>",
        f"<p>Code version {html.escape(code_version())}. Pooled GlaS metrics on the study's data "
        "(mean over seeds, ± the half-width of its 95% interval; per-seed values in "
        "<a href='summary.json'>summary.json</a>).</p>",
        "<h2>Main table</h2>", _table_html(main) if len(main) else "<p>No finished runs.</p>",
        "<h2>Figures</h2>", *[f"<figure><img src='{f.relative_to(study_dir)}'><figcaption>{html.escape(f.stem)}"
                               "</figcaption></figure>" for f in figs],
        "<h2>Rendered notebooks</h2><ul>",
        *[f"<li><a href='{p.relative_to(study_dir)}'>{html.escape(str(p.relative_to(study_dir)))}</a></li>" for p in links],
        "</ul>",
    ]
    return atomic_write_bytes(study_dir / "index.html", "\n".join(parts).encode())
