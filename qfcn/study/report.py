"""Finished runs -> tables, comparisons, ``summary.json``, rendered notebooks (HTML) and ``index.html``.

Every run's ``final/metrics.json`` is read through :mod:`qfcn.study.records` (the one place that
knows its layout). :func:`tidy` flattens them into one row per (run, variant, split); the tables,
the paired comparisons (:mod:`qfcn.study.contrasts`, docs/method.md §7) and the front page
(:mod:`qfcn.study.frontpage`) are built from those rows. Per-arm statistics are over seeds
(one number per run folder): mean and Student-t 95% interval, clipped to [0, 1] for F1 and Dice
(:func:`qfcn.study.contrasts.arm_interval`); with one seed there is no interval (None).
Object Hausdorff is in original-resolution pixels (docs/method.md §6).

>>> rows = [dict(name="a", seed=s, run_dir=f"a{s}", variant="float", main=True, split=p, f1=f)
...         for s, f in ((0, 0.5), (1, 0.7)) for p in ("test_a", "test_b")]
>>> r = interval_rows(pd.DataFrame(rows), "f1")[0]
>>> r["name"], r["split"], r["n"], round(r["mean"], 3), r["low"], r["clipped"]  # t(0.975, 1) = 12.7
('a', 'test_a', 2, 0.6, 0.0, True)
"""
from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qfcn.io import atomic_write_bytes, atomic_write_json, code_version
from qfcn.score import PAPER_ROWS
from qfcn.study import contrasts, efficiency, frontpage, records, runs

TESTS = records.TESTS
SPLIT_NAMES = contrasts.SPLIT_NAMES
#: where the paper's numbers come from (docs/method.md §1): transcribed, not checked against the PDF
PAPER_SOURCE = ("Xu et al., CVPR 2018 (arXiv 1803.04907), results table on real GlaS; table number and page "
                "unverified (transcribed, not checked against the PDF: docs/method.md §1)")
#: the paper-form table: (row, arm of contrasts.RUN_NAMES or None, variant or None = the run's main
#: result, prefix of the score.PAPER_ROWS method it is compared with or None)
PAPER_FORM = (
    ("CUMedVision (DCAN)", None, None, "CUMedVision"),
    ("SA, full training set", "full", None, "SA full training set"),
    ("SA (suggestive annotation)", "sa", None, None),
    ("QSA-7", "qsa7", None, None),
    ("QSA-5", "qsa5", None, None),
    ("SA+NTQ-7", "sa_ntq7", None, None),
    ("SA+NTQ-5", "sa_ntq5", None, None),
    ("QSA+NTQ-7", "qsa_ntq7", None, None),
    ("QSA+NTQ-5 (paper: 5 FCNs)", "qsa_ntq5", None, "QSA + NTQ 5 FCNs"),
    ("fixed-point (uniform), 5 bits", "fixed5", None, None),
    ("SA (float), step-matched to NTQ-5", "sa_control", None, None),
    ("random selection (baseline)", "random", None, None),
    ("uncertainty-only selection (baseline)", "uncertainty", None, None),
)
PAPER_KEYS = {"f1": "f1", "object_dice": "dice", "object_hausdorff": "haus"}


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


def per_image(study_dir: str | os.PathLike, manifest_hash: str | None = None) -> pd.DataFrame:
    """One row per test image of every run's main result (:func:`qfcn.study.records.per_image_rows`),
    ``name`` = the batch point's name as in :func:`tidy`."""
    return pd.DataFrame([row for rec in load_run_metrics(study_dir, manifest_hash)
                         for row in records.per_image_rows(rec)])


def interval_rows(df: pd.DataFrame, metric: str, by: Sequence[str] = ("name",),
                  splits: Sequence[str] = TESTS) -> list[dict[str, Any]]:
    """Per group of ``by`` (default: run configuration) and split, the mean over seeds with its
    interval (:func:`qfcn.study.contrasts.arm_interval`), ``seeds`` and, where the rows have them,
    the integer ``bits`` and mean ``weight_bytes`` / ``file_bytes``. ``df``: :func:`tidy` rows,
    already restricted to one variant per run folder (e.g. ``df[df["main"]]``)."""
    out = []
    for key, g in df[df.split.isin(splits)].groupby([*by, "split"], sort=False):
        g = g.sort_values("seed")
        if g.run_dir.duplicated().any():
            raise ValueError(f"interval_rows: several rows per run folder for {key}; select one variant first")
        extra = {k: contrasts.finite(g[k].mean()) for k in ("weight_bytes", "file_bytes") if k in g}
        if "bits" in g and g.bits.notna().any():
            extra["bits"] = int(g.bits.dropna().iloc[0])
        out.append({**dict(zip([*by, "split"], key)), "seeds": g.seed.tolist(), **extra,
                    **contrasts.arm_interval(g[metric].tolist(), metric)})
    return out


def _arm_cells(rows: pd.DataFrame) -> dict[str, Any]:
    cells = {f"{m}_{s[-1].upper()}": contrasts.arm_interval(rows[rows.split == s].sort_values("seed")[m].tolist(), m)
             for s in TESTS for m in records.HEADLINE}
    n = max(c["n"] for c in cells.values())
    wb, fb = rows.weight_bytes.dropna(), rows.file_bytes.dropna()
    return dict(n=n, cells=cells, weight_bytes=float(wb.mean()) if len(wb) else None,
                file_bytes=float(fb.mean()) if len(fb) else None)


def paper_table(df: pd.DataFrame, run_names: dict[str, list] = contrasts.RUN_NAMES) -> list[dict[str, Any]]:
    """The paper-form table (:data:`PAPER_FORM`): per row the paper's reported values (or None) and
    this study's arm: run name, variant, seeds ``n``, per ``<metric>_<A|B>`` the per-seed values,
    mean and clipped interval, conv-weight and whole-file bytes of one network and their ratios
    to the same run's float32 network. ``run=None`` when the study has no such run; every row of
    :data:`PAPER_FORM` is listed (``paper=None`` where the paper's value is not transcribed)."""
    out = []
    for method, arm, variant, paper_key in PAPER_FORM:
        paper = next((p for p in PAPER_ROWS if paper_key and p["method"].startswith(paper_key)), None)
        row = dict(method=method, arm=arm, run=None, variant=variant, n=0, cells={}, paper=paper,
                   weight_bytes=None, file_bytes=None, weight_ratio=None, file_ratio=None)
        rows, name = contrasts.arm_rows(df, arm, run_names) if arm and len(df) else (df.iloc[0:0], None)
        sel = df[df.name == name] if name is not None else df.iloc[0:0]
        if variant is not None and name is not None:
            rows = sel[sel.variant == variant]
        if len(rows):
            row.update(run=name, variant=rows.variant.iloc[0], **_arm_cells(rows))
            ref = sel[sel.variant == "float"]
            for k in ("weight", "file"):
                if len(ref) and row[f"{k}_bytes"]:
                    row[f"{k}_ratio"] = float(ref[f"{k}_bytes"].mean()) / row[f"{k}_bytes"]
        out.append(row)
    return out


def _split_means(g: pd.DataFrame) -> dict[str, float | None]:
    return {f"{s}_f1": contrasts.finite(g[g.split == s].f1.mean()) if (g.split == s).any() else None
            for s in ("train", *TESTS)}


def regime(df: pd.DataFrame) -> dict[str, Any]:
    """F1 of the float final networks (variant ``float`` of every run) on the training images and
    the test parts: mean over runs, the gaps ``train - test`` (``gap_a``, ``gap_b``), ``n_runs``
    and the per-configuration means (``by_run``). None where a split was not scored
    (docs/method.md §7)."""
    fl = df[df.variant == "float"] if len(df) else df
    top = _split_means(fl) if len(fl) else {"train_f1": None, "test_a_f1": None, "test_b_f1": None}
    gaps = {f"gap_{s[-1]}": top["train_f1"] - top[f"{s}_f1"]
            if top["train_f1"] is not None and top[f"{s}_f1"] is not None else None for s in TESTS}
    by_run = ({name: {**_split_means(g), "n": int(g.run_dir.nunique())} for name, g in fl.groupby("name")}
              if len(fl) else {})
    return {**top, **gaps, "n_runs": int(fl.run_dir.nunique()) if len(fl) else 0, "by_run": by_run}


def _suggestions(study_dir: str | os.PathLike) -> list[tuple[str, int | None, dict[str, Any]]]:
    """``(batch-point name, seed, suggestion.json record)`` of every run folder that has one."""
    out = []
    for run_dir in records.run_dirs(study_dir):
        rec = runs.read_suggestion(run_dir)
        if rec is not None:
            point = runs.done_point(run_dir) or {}
            out.append((point.get("name", Path(run_dir).name), point.get("seed"), rec))
    return out


def overlap(suggestions: Sequence[tuple[str, int | None, dict[str, Any]]]) -> list[dict[str, Any]]:
    """How much the annotated sets of two selection arms share (issue 10: a treatment diluted by a
    common initial set is not a treatment): per pair of run configurations, over the seeds both
    ran, the mean number of shared images, the mean set size and the mean shared share
    (``shared / size``; 1 = the same images).

    >>> sug = [("sa", 0, {"annotated": ["a", "b", "c"]}), ("random", 0, {"annotated": ["a", "d", "e"]})]
    >>> overlap(sug)  # doctest: +NORMALIZE_WHITESPACE
    [{'a': 'random', 'b': 'sa', 'n_seeds': 1, 'shared': 1.0, 'size': 3.0, 'shared_share': 0.3333333333333333}]
    """
    sets: dict[str, dict[Any, set]] = {}
    for name, seed, rec in suggestions:
        if seed is not None and rec.get("annotated"):
            sets.setdefault(name, {})[seed] = set(rec["annotated"])
    out = []
    names = sorted(sets)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            seeds = sorted(set(sets[a]) & set(sets[b]), key=str)
            if not seeds:
                continue
            shared = [len(sets[a][s] & sets[b][s]) for s in seeds]
            size = [(len(sets[a][s]) + len(sets[b][s])) / 2 for s in seeds]
            out.append(dict(a=a, b=b, n_seeds=len(seeds), shared=float(np.mean(shared)), size=float(np.mean(size)),
                            shared_share=float(np.mean([x / y for x, y in zip(shared, size)]))))
    return out


def selection(study_dir: str | os.PathLike) -> dict[str, Any]:
    """``coverage_z_vs_random``: mean over suggestion stages and seeds of the picked set's coverage
    z-score against random subsets of the same candidates (``coverage_z`` of each entry of
    ``suggestion.json``'s ``rounds`` or ``stages``; None when no run recorded it), per run
    configuration (``by_run``), and the annotated sets' :func:`overlap` between arms."""
    zs, by_run = [], {}
    sugg = _suggestions(study_dir)
    for name, _, rec in sugg:
        z = [st["coverage_z"] for st in rec.get("rounds", rec.get("stages", []))
             if st.get("coverage_z") is not None and np.isfinite(st["coverage_z"])]
        by_run.setdefault(name, []).extend(z)
        zs.extend(z)
    return {"coverage_z_vs_random": float(np.mean(zs)) if zs else None, "n_values": len(zs),
            "by_run": {k: float(np.mean(v)) for k, v in by_run.items() if v}, "overlap": overlap(sugg)}


def efficiency_curve(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The annotation-efficiency curve from ``summary.json``'s ``efficiency`` rows: one point per
    (run configuration ``name``, ``selection``, ``quantized``, ``budget``) and test part: ``share``
    (mean over seeds of ``n_images / n_pool``, the share of the pool annotated), ``line`` (its
    label: selection, configuration, float or quantized), ``split`` (and its ``panel`` title) and the F1 interval over seeds
    (:func:`qfcn.study.contrasts.arm_interval`: ``values``, ``mean``, ``low``, ``high``, ``n``).
    Sorted by line, then share. A seed listed twice for one point is an error.

    >>> rows = [dict(name="sa", selection="suggestive", quantized=False, budget=0.5, n_images=5, n_pool=10,
    ...              seed=s, f1_a=f, f1_b=f) for s, f in ((0, 0.6), (1, 0.8))]
    >>> p = efficiency_curve(rows)[0]
    >>> p["line"], p["share"], p["split"], p["n"], round(p["mean"], 2)
    ('suggestive (sa), float', 0.5, 'test_a', 2, 0.7)
    """
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r.get("name"), r["selection"], bool(r["quantized"]), float(r["budget"])), []).append(r)
    out = []
    for (name, sel, q, b), g in groups.items():
        seeds = [r["seed"] for r in g]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"efficiency: seed listed twice for {name} {sel} quantized={q} budget {b}: {seeds}")
        g = sorted(g, key=lambda r: r["seed"])
        line = f"{sel}" + (f" ({name})" if name and name != sel else "") + (", quantized" if q else ", float")
        share = float(np.mean([r["n_images"] / r["n_pool"] for r in g]))
        out += [dict(name=name, selection=sel, quantized=q, budget=b, line=line, share=share, split=split,
                     panel=SPLIT_NAMES.get(split, split), seeds=[r["seed"] for r in g], **contrasts.arm_interval([r[f"f1_{split[-1]}"] for r in g], "f1"))
                for split in TESTS]
    return sorted(out, key=lambda p: (p["line"], p["split"], p["share"]))


def summary(study_dir: str | os.PathLike) -> dict[str, Any]:
    """The content of ``summary.json``: every run's main scores (``runs``), the paired
    ``contrasts`` (:func:`qfcn.study.contrasts.evaluate`, F1, object Dice and object Hausdorff),
    the ``paper_table``, the float networks' ``regime``, the ``selection`` coverage z-score,
    ``efficiency`` (every annotation-efficiency point: trained, the run's own and shared ones,
    :func:`qfcn.study.efficiency.study_rows`; empty when no run drew the curve), the manifest's ``label_source`` and
    ``scale`` when recorded, and the code version."""
    recs = load_run_metrics(study_dir)
    runs_out = [{"run": rec["run"], "run_dir": Path(rec["run_dir"]).name, **records.main_scores(rec),
                 "n_glands": rec.get("n_glands")} for rec in recs]
    df = pd.DataFrame([row for rec in recs for row in records.tidy_rows(rec)])
    manifest = runs.read_manifest(study_dir) if runs.manifest_path(study_dir).is_file() else {}
    return {"runs": runs_out, "code_version": code_version(), "contrasts": contrasts.evaluate(df),
            "paper_table": paper_table(df), "paper_source": PAPER_SOURCE, "regime": regime(df),
            "selection": selection(study_dir),
            "efficiency": efficiency.study_rows(recs),
            "data": {k: manifest.get(k) for k in ("label_source", "scale", "hash")}}


def gland_counts(main: pd.DataFrame, min_glands: int) -> tuple[dict[str, int], dict[str, bool]]:
    """Glands per test part (``{"test_a": n, ...}``) and whether each has at least ``min_glands``
    (one gland moves object F1 by about 1/n: fewer make conclusions indicative only)."""
    glands = {k: int(v) for k, v in main.groupby("split")["n_glands"].max().items() if k in TESTS}
    return glands, {k: v >= min_glands for k, v in glands.items()}


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


def write_report(study_dir: str | os.PathLike) -> Path:
    """Render every executed notebook, write ``summary.json`` and the front page ``index.html``
    (:func:`qfcn.study.frontpage.write_index`); return the index."""
    study_dir = Path(study_dir)
    notebooks = sorted(study_dir.glob("*.ipynb")) + sorted(study_dir.glob("runs/*/*.ipynb"))
    links = [render_html(nb) for nb in notebooks]
    summ = summary(study_dir)
    atomic_write_json(study_dir / "summary.json", summ)
    return frontpage.write_index(study_dir, summ, links)
