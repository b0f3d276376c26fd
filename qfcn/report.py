"""Finished runs -> tables, ``summary.json``, rendered notebooks (HTML) and ``index.html``.

Reads the ``final/metrics.json`` that notebook 04 writes in every run folder. Its schema::

    {"run": {"name", "seed", "selection", "qsa_scheme", "qsa_bits", "ntq_scheme", "ntq_bits", ...},
     "main": "<variant name of the run's own result>",
     "variants": {"<variant>": {"scheme", "bits", "n_members", "weight_bytes", "file_bytes",
                                 "splits": {"test_a": {"f1", "object_dice", "object_hausdorff", ...,
                                                       "per_image": [...]}, "test_b": {...},
                                            "train": {...}, "val": {...}}}},
     "n_glands": {"test_a": int, "test_b": int}, ...}
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import pandas as pd

from qfcn.io import atomic_write_bytes, atomic_write_json, code_version

HEADLINE = ("f1", "object_dice", "object_hausdorff")
RUN_KEYS = ("name", "seed", "selection", "qsa_scheme", "qsa_bits", "ntq_scheme", "ntq_bits")


def load_run_metrics(study_dir: str | Path) -> list[dict[str, Any]]:
    """Every ``runs/*/final/metrics.json`` of a study (sorted by folder), with ``run_dir`` added
    and ``run.name`` set to the batch point's name (the same for every seed of a configuration)
    when the runner recorded it in ``done.json``; otherwise the folder name stays."""
    out = []
    for path in sorted(Path(study_dir).glob("runs/*/final/metrics.json")):
        record = json.loads(path.read_text())
        run_dir = path.parent.parent
        record["run_dir"] = str(run_dir)
        done = run_dir / "done.json"
        if done.is_file():
            point = json.loads(done.read_text()).get("point", {})
            record["run"]["name"] = point.get("name", record["run"]["name"])
        out.append(record)
    return out


def tidy(study_dir: str | Path) -> pd.DataFrame:
    """One row per (run, variant, split) with the pooled headline metrics and model bytes."""
    rows = []
    for rec in load_run_metrics(study_dir):
        run = {k: rec["run"].get(k) for k in RUN_KEYS}
        for vname, var in rec["variants"].items():
            for split, m in var["splits"].items():
                rows.append({**run, "run_dir": rec["run_dir"], "variant": vname, "main": vname == rec["main"],
                             "scheme": var.get("scheme"), "bits": var.get("bits"),
                             "n_members": var.get("n_members"), "weight_bytes": var.get("weight_bytes"),
                             "file_bytes": var.get("file_bytes"), "split": split,
                             "n_glands": rec.get("n_glands", {}).get(split),
                             **{k: m.get(k) for k in HEADLINE}})
    return pd.DataFrame(rows)


def summary_table(study_dir: str | Path) -> pd.DataFrame:
    """Main result of every run: pooled Test A / Test B F1, object Dice, object Hausdorff."""
    df = tidy(study_dir)
    if df.empty:
        return df
    df = df[df["main"] & df["split"].isin(["test_a", "test_b"])]
    wide = df.pivot_table(index=["name", "seed"], columns="split", values=list(HEADLINE))
    wide.columns = [f"{m} {'A' if s == 'test_a' else 'B'}" for m, s in wide.columns]
    order = [f"{m} {p}" for p in "AB" for m in HEADLINE]
    return wide[[c for c in order if c in wide]].reset_index().round(4)


def summary(study_dir: str | Path) -> dict[str, Any]:
    """The content of ``summary.json``: pooled Test A / B scores of every run's main result."""
    runs_out = []
    for rec in load_run_metrics(study_dir):
        var = rec["variants"][rec["main"]]
        runs_out.append({"run": rec["run"], "run_dir": Path(rec["run_dir"]).name, "variant": rec["main"],
                         "weight_bytes": var.get("weight_bytes"),
                         **{split: {k: var["splits"][split][k] for k in HEADLINE}
                            for split in ("test_a", "test_b") if split in var["splits"]},
                         "n_glands": rec.get("n_glands")})
    return {"runs": runs_out, "code_version": code_version()}


_PAGE_CSS = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}"
             "pre,code{background:#f6f6f6}pre{padding:6px;overflow-x:auto}img{max-width:100%}"
             "table{border-collapse:collapse}td,th{padding:2px 8px;text-align:right;border-bottom:1px solid #ddd}"
             ".jp-InputArea,.input_area{border-left:3px solid #ccd;padding-left:6px;margin:8px 0}")


def render_html(notebook: Path) -> Path:
    """Render an executed notebook to HTML next to it (atomically).

    nbconvert's 'basic' template (cells only) inside a small page of our own: the default 'lab'
    template embeds about 270 KB of style sheets in every file."""
    import nbconvert

    body, _ = nbconvert.HTMLExporter(template_name="basic").from_filename(str(notebook))
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(notebook.stem)}</title>"
            f"<style>{_PAGE_CSS}</style></head><body>{body}</body></html>")
    return atomic_write_bytes(notebook.with_suffix(".html"), page.encode())


def _table_html(df: pd.DataFrame) -> str:
    return df.to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0, classes="tbl")


def write_report(study_dir: str | Path) -> Path:
    """Render every executed notebook, write ``summary.json`` and ``index.html``; return the index."""
    study_dir = Path(study_dir)
    notebooks = sorted(study_dir.glob("*.ipynb")) + sorted(study_dir.glob("runs/*/*.ipynb"))
    links = [render_html(nb) for nb in notebooks]
    atomic_write_json(study_dir / "summary.json", summary(study_dir))
    table = summary_table(study_dir)
    if len(table):
        mean = table.drop(columns="seed").groupby("name", sort=False).mean().reset_index()
        seeds = table.groupby("name", sort=False)["seed"].count().rename("seeds").reset_index()
        main = mean.merge(seeds, on="name")
    else:
        main = table
    figs = sorted((study_dir / "figures").glob("*.png"))
    parts = [
        "<!doctype html><meta charset='utf-8'><title>qfcn study</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        ".tbl td,.tbl th{padding:2px 8px;text-align:right}img{max-width:100%}</style>",
        f"<h1>qfcn study: {html.escape(study_dir.name)}</h1>",
        f"<p>Code version {html.escape(code_version())}. Pooled GlaS metrics on the study's data "
        "(mean over seeds; per-seed values in <a href='summary.json'>summary.json</a>).</p>",
        "<h2>Main table</h2>", _table_html(main) if len(main) else "<p>No finished runs.</p>",
        "<h2>Figures</h2>", *[f"<figure><img src='{f.relative_to(study_dir)}'><figcaption>{html.escape(f.stem)}"
                               "</figcaption></figure>" for f in figs],
        "<h2>Rendered notebooks</h2><ul>",
        *[f"<li><a href='{p.relative_to(study_dir)}'>{html.escape(str(p.relative_to(study_dir)))}</a></li>" for p in links],
        "</ul>",
    ]
    return atomic_write_bytes(study_dir / "index.html", "\n".join(parts).encode())


def compare(df: pd.DataFrame, a: dict[str, Any], b: dict[str, Any], *, pair_on: str, split: str,
            metric: str = "f1", question: str = "", labels: tuple[str, str] | None = None) -> dict[str, Any]:
    """Paired comparison of two selections of :func:`tidy` rows on one split and metric.

    ``a`` and ``b`` are column -> value filters (e.g. ``{"variant": "ntq"}``); rows are paired
    on ``pair_on`` (``"run_dir"``: two variants of the same run, i.e. the same float members;
    ``"seed"``: two runs with the same seed). Returns the :func:`qfcn.stats.paired_difference`
    dict plus the question, both means and a plain sentence; ``labels`` name the two sides in it
    (default: the filter values)."""
    from qfcn import stats

    def pick(flt):
        sel = df[df["split"] == split]
        for k, v in flt.items():
            sel = sel[sel[k] == v]
        return sel.groupby(pair_on)[metric].mean()

    sa, sb = pick(a), pick(b)
    keys = sorted(set(sa.index) & set(sb.index), key=str)
    res = stats.paired_difference([sa[k] for k in keys], [sb[k] for k in keys])
    la, lb = labels or (", ".join(f"{k}={v}" for k, v in a.items()), ", ".join(f"{k}={v}" for k, v in b.items()))
    split_name = {"test_a": "Test A", "test_b": "Test B"}.get(split, split)
    if res["n"]:
        sentence = (f"{question or 'difference'} ({split_name}, {metric}): {la} − {lb} = {res['diff']:+.3f} "
                    f"[{res['low']:+.3f}, {res['high']:+.3f}] over {res['n']} pair(s): {res['verdict']}.")
    else:
        sentence = f"{question or 'difference'} ({split_name}, {metric}): no paired runs with both {la} and {lb}."
    return {**res, "question": question, "split": split, "metric": metric, "a": la, "b": lb,
            "mean_a": float(sa[keys].mean()) if keys else float("nan"),
            "mean_b": float(sb[keys].mean()) if keys else float("nan"), "sentence": sentence}
