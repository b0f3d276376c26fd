"""The study's front page, ``index.html``: what a reader reads first (docs/method.md §7).

In this order: the study's questions, each answered in one sentence per test part (mean paired
difference, 95% Student-t interval, n, minimum detectable difference, verdict:
:func:`qfcn.study.contrasts.sentence`); the float networks' regime and the selection step's
coverage; the paper-form table with intervals and seed counts; the annotation-efficiency curve
(:func:`efficiency_html`); the study's other figures with the
captions notebook 05 recorded in ``figure_captions.json``; the runs' overlays; the executed
notebooks grouped by run; the failed runs with a one-line cause. One self-contained file:
inline CSS, images referenced relatively, no script.

>>> c = dict(id="x", question="Q?", label="A vs B", run=None, split="test_a", metric="f1", n=3, diff=0.02,
...          low=-0.01, high=0.05, mde=0.04, verdict="inconclusive", **{"seeds_for_mde_0.01": 40})
>>> "[−0.010, +0.050], n = 3, MDE 0.040" in questions_html([c])
True
"""
from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

from qfcn.io import atomic_write_bytes, code_version
from qfcn.study import contrasts, reproduce, runs

CAPTIONS_FILE = "figure_captions.json"  # {png file name: caption}, written by notebook 05
EFFICIENCY_FIGURE = "efficiency.png"  # the annotation-efficiency curve, drawn by notebook 05 into figures/
CSS = ("body{font-family:sans-serif;max-width:1150px;margin:2em auto;line-height:1.45;padding:0 1em}"
       "table{border-collapse:collapse;font-size:90%}td,th{padding:3px 7px;border-bottom:1px solid #ddd;"
       "vertical-align:top}td.n{text-align:right}small{color:#555}img{max-width:100%}"
       "figure{margin:1.2em 0}figcaption{font-size:90%;color:#333}.q{margin:.8em 0}"
       ".v-inconclusive{color:#666}.paper td{font-style:italic;color:#444}")


def _e(x: Any) -> str:
    return html.escape(str(x))


def questions_html(entries: list[dict[str, Any]], metric: str = "f1") -> str:
    """One block per question (in :data:`qfcn.study.contrasts.CONTRASTS` order): the question and
    one sentence per (run configuration, split) for ``metric``; the other metrics' sentences in a
    collapsed ``<details>``."""
    order = [c["id"] for c in contrasts.CONTRASTS]
    ids = sorted({e["id"] for e in entries}, key=lambda i: order.index(i) if i in order else len(order))
    parts = []
    for cid in ids:
        mine = [e for e in entries if e["id"] == cid]
        main = [e for e in mine if e["metric"] == metric]
        other = [e for e in mine if e["metric"] != metric]
        if all(e["verdict"] == "missing" for e in mine):
            parts.append(f"<div class='q'><b>{_e(mine[0]['question'])}</b> <small>Not run in this study: "
                         f"{_e(mine[0]['missing'])}.</small></div>")
            continue
        items = "".join(f"<li class='v-{_e(e['verdict'].replace(' ', '-'))}'>{_e(contrasts.sentence(e))}</li>"
                        for e in main)
        more = "".join(f"<li>{_e(contrasts.sentence(e))}</li>" for e in other if e["verdict"] != "missing")
        details = f"<details><summary><small>other metrics</small></summary><ul>{more}</ul></details>" if more else ""
        parts.append(f"<div class='q'><b>{_e(mine[0]['question'])}</b><ul>{items}</ul>{details}</div>")
    return "\n".join(parts)


def _cell(c: dict[str, Any] | None, metric: str) -> str:
    if not c or c.get("mean") is None:
        return "—"
    d = 1 if metric == "object_hausdorff" else 3
    iv = f" [{c['low']:.{d}f}, {c['high']:.{d}f}]" if c["low"] is not None else " (no interval, n = 1)"
    star = "*" if c.get("clipped") else ""
    seeds = ", ".join(f"{v:.{d}f}" for v in c["values"])
    return f"{c['mean']:.{d}f}{iv}{star}<br><small>seeds: {seeds}</small>"


def _bytes(b: float | None, ratio: float | None) -> str:
    if b is None:
        return "—"
    return f"{b / 1024:.1f} KiB" + (f"<br><small>{ratio:.1f}x smaller than float32</small>" if ratio else "")


def paper_table_html(rows: list[dict[str, Any]], source: str) -> str:
    """The paper-form table: per method, the paper's reported row (italic, where transcribed) and
    this study's arm: n, mean [95% interval] with per-seed values, memory of one network."""
    cols = [(m, s) for m in ("f1", "object_dice", "object_hausdorff") for s in "AB"]
    names = {"f1": "F1", "object_dice": "Obj. Dice", "object_hausdorff": "Obj. Hausdorff"}
    head = ("<tr><th>method</th><th>source</th><th>n</th>" + "".join(f"<th>{names[m]} {s}</th>" for m, s in cols)
            + "<th>conv weights (one network)</th><th>packed file (one network)</th></tr>")
    body = []
    keys = {"f1": "f1", "object_dice": "dice", "object_hausdorff": "haus"}
    for r in rows:
        if r.get("paper"):
            p = r["paper"]
            vals = "".join(f"<td class='n'>{p[f'{keys[m]}_{s}']:.3f}</td>" for m, s in cols)
            body.append(f"<tr class='paper'><td>{_e(r['method'])}</td><td>paper (real GlaS)</td><td></td>{vals}"
                        "<td></td><td></td></tr>")
        if r.get("run"):
            vals = "".join(f"<td class='n'>{_cell(r['cells'].get(f'{m}_{s}'), m)}</td>" for m, s in cols)
            body.append(f"<tr><td>{_e(r['method'])}</td><td>this study: {_e(r['run'])} ({_e(r['variant'])})</td>"
                        f"<td class='n'>{r['n']}</td>{vals}<td class='n'>{_bytes(r['weight_bytes'], r['weight_ratio'])}"
                        f"</td><td class='n'>{_bytes(r['file_bytes'], r['file_ratio'])}</td></tr>")
        else:
            what = "" if r.get("paper") else "the paper's values are not transcribed (docs/method.md §1); "
            body.append(f"<tr><td>{_e(r['method'])}</td><td colspan='{len(cols) + 4}'><small>{what}not run in this "
                        "study</small></td></tr>")
    return (f"<table>{head}{''.join(body)}</table><p><small>Cells: mean over seeds [95% Student-t interval], "
            "then the per-seed values; * marks an interval clipped to [0, 1] (F1 and Dice cannot leave it). "
            "Object Hausdorff in original-resolution pixels. Memory of one network: conv weights as packed codes, "
            f"and the whole packed file (codes, float parts, header). Paper rows: {_e(source)}; they are on real "
            "GlaS and are not comparable in level with this study's data.</small></p>")


def failed_runs(study_dir: str | os.PathLike) -> list[dict[str, str]]:
    """Failed runs as ``[{run, cause}]`` (cause: the error's last line, at most 300 characters),
    from the runner's record ``OUT/failed.json`` (:func:`qfcn.study.runs.read_failed`)."""
    out = []
    for f in runs.read_failed(study_dir):
        cause = str(f.get("error") or "unknown cause").strip().splitlines() or ["unknown cause"]
        out.append({"run": Path(str(f.get("run_dir") or f.get("name") or "?")).name, "cause": cause[-1][:300]})
    return out


def _figures_html(study_dir: Path) -> str:
    path = study_dir / CAPTIONS_FILE
    captions = json.loads(path.read_text()) if path.is_file() else {}
    figs = sorted((f for f in (study_dir / "figures").glob("*.png") if f.name != EFFICIENCY_FIGURE),
                  key=lambda f: (f.name not in captions, f.name))  # the efficiency curve has its own section
    if not figs:
        return "<p>No figures (notebook 05 did not run).</p>"
    return "\n".join(f"<figure><img src='{_e(f.relative_to(study_dir).as_posix())}' alt='{_e(f.stem)}'><figcaption>"
                     f"{_e(captions.get(f.name, f'{f.stem} (no caption recorded)'))}</figcaption></figure>"
                     for f in figs)


def efficiency_html(study_dir: str | os.PathLike, rows: list[dict[str, Any]]) -> str:
    """The annotation-efficiency section: what was measured (selections, budgets, seeds, from
    ``summary.json``'s ``efficiency`` rows), then notebook 05's figure :data:`EFFICIENCY_FIGURE`
    with its recorded caption; a line saying so when no run drew the curve.

    >>> efficiency_html(".", [])
    '<p>No run of this study drew the annotation-efficiency curve (notebook 04, efficiency_budgets).</p>'
    """
    if not rows:
        return "<p>No run of this study drew the annotation-efficiency curve (notebook 04, efficiency_budgets).</p>"
    study_dir = Path(study_dir)
    sels = ", ".join(sorted({str(r["selection"]) for r in rows}))
    budgets = ", ".join(f"{100 * b:g}%" for b in sorted({float(r["budget"]) for r in rows}))
    n_seeds = len({r["seed"] for r in rows})
    text = (f"<p>Object F1 of the final ensemble retrained on the set each suggestion run had annotated at a smaller "
            f"budget (the loop passes through them on its way to its own budget; 100% is the whole pool). "
            f"Selections: {_e(sels)}; budgets: {_e(budgets)} of the pool; {n_seeds} seeds. Numbers: "
            "<code>efficiency</code> in summary.json.</p>")
    fig = study_dir / "figures" / EFFICIENCY_FIGURE
    if not fig.is_file():
        return text + "<p>No figure (notebook 05 did not draw it).</p>"
    path = study_dir / CAPTIONS_FILE
    caption = json.loads(path.read_text()).get(EFFICIENCY_FIGURE, "(no caption recorded)") if path.is_file() else \
        "(no caption recorded)"
    return (text + f"<figure><img src='figures/{EFFICIENCY_FIGURE}' alt='annotation efficiency'><figcaption>"
            f"{_e(caption)}</figcaption></figure>")


def _overlays_html(study_dir: Path) -> str:
    parts = []
    for run_dir in sorted(p for p in (study_dir / "runs").glob("*") if p.is_dir()):
        imgs = sorted((run_dir / "figures").glob("overlays_*.png"))
        parts += [f"<figure><img src='{_e(f.relative_to(study_dir).as_posix())}' alt='{_e(f.stem)}'><figcaption>"
                  f"{_e(run_dir.name)}, {_e(contrasts.SPLIT_NAMES.get(f.stem[9:], f.stem[9:]))}: the images with the "
                  "highest and lowest object F1 of the run's main result; green: ground-truth outlines, magenta: "
                  "predicted outlines; the title gives the image's F1.</figcaption></figure>" for f in imgs]
    return "\n".join(parts) or "<p>No overlays in this folder (see the runs' notebook 04).</p>"


def _notebooks_html(study_dir: Path, links: list[Path]) -> str:
    groups: dict[str, list[Path]] = {}
    for p in links:
        rel = Path(p).resolve().relative_to(study_dir.resolve())
        groups.setdefault("study" if len(rel.parts) == 1 else rel.parts[-2], []).append(rel)
    return "".join(f"<li>{_e(g)}: " + ", ".join(f"<a href='{_e(r.as_posix())}'>{_e(r.stem)}</a>" for r in rels)
                   + "</li>" for g, rels in groups.items())


def _context_html(summary: dict[str, Any]) -> str:
    reg, sel, data = summary.get("regime") or {}, summary.get("selection") or {}, summary.get("data") or {}
    out = []
    if reg.get("train_f1") is not None and reg.get("test_a_f1") is not None:
        out.append(f"Float final networks ({reg['n_runs']} runs): F1 {reg['train_f1']:.3f} on their training images, "
                   f"{reg['test_a_f1']:.3f} on Test A" + (f", {reg['test_b_f1']:.3f} on Test B" if reg.get("test_b_f1")
                                                          is not None else "")
                   + f"; the train − Test A gap is {reg['gap_a']:+.3f} (quantization can only reduce overfitting "
                   "where there is some).")
    z = sel.get("coverage_z_vs_random")
    out.append("Selection: coverage of the picked sets against random subsets of the same candidates, z = "
               f"{z:+.2f} (mean over stages and seeds)." if z is not None else
               "Selection: no coverage z-score recorded by these runs.")
    for o in sel.get("overlap") or []:
        out.append(f"Annotated sets of {o['a']} and {o['b']} share {o['shared']:.1f} of {o['size']:.1f} images "
                   f"({100 * o['shared_share']:.0f}%, mean over {o['n_seeds']} seeds; the random initial set is "
                   "shared by design).")
    if data.get("label_source"):
        out.append(f"Instance labels: {data['label_source']}; working scale {data.get('scale')}.")
    return "<p>" + "<br>".join(_e(x) for x in out) + "</p>"


def write_index(study_dir: str | os.PathLike, summary: dict[str, Any], links: list[Path]) -> Path:
    """Write ``<study_dir>/index.html`` from ``summary`` (:func:`qfcn.study.report.summary`) and
    the rendered notebooks ``links``; return its path."""
    study_dir = Path(study_dir)
    failed = failed_runs(study_dir)
    n_seeds = max((len(r["seeds"]) for r in summary.get("contrasts", [])), default=0)
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>qfcn study {_e(study_dir.name)}</title>"
        f"<style>{CSS}</style></head><body>",
        f"<h1>Quantized FCNs for gland segmentation: study {_e(study_dir.name)}</h1>",
        "<p>Does quantizing the networks of suggestive annotation (QSA: the selection ensemble; NTQ: the final "
        "networks) improve gland segmentation, as Xu et al. (CVPR 2018) report? Each answer below is a paired "
        "difference a − b over seeds (same seed, or the same float members of one run), its 95% Student-t "
        "interval, the number of seeds n, and the minimum detectable difference (MDE) at 80% power. "
        "<b>inconclusive</b> means the interval contains 0; with an MDE above the effect the paper reports "
        f"(about 0.01 F1) such a result neither confirms nor refutes it. At most {n_seeds} paired seeds here.</p>",
        "<h2>Questions and answers</h2>", questions_html(summary.get("contrasts", [])),
        "<h2>Regime and selection</h2>", _context_html(summary),
        "<h2>The paper's table, with this study's arms</h2>",
        paper_table_html(summary.get("paper_table", []), summary.get("paper_source", "")),
        reproduce.section_html(study_dir),  # only when reproduction.json exists (a rerun of a committed study)
        "<h2>Annotation efficiency</h2>", efficiency_html(study_dir, summary.get("efficiency", [])),
        "<h2>Figures</h2>", _figures_html(study_dir),
        "<h2>Predictions (overlays)</h2>", _overlays_html(study_dir),
        "<h2>Executed notebooks</h2><ul>", _notebooks_html(study_dir, links), "</ul>",
        "<h2>Failed runs</h2>",
        ("<ul>" + "".join(f"<li>{_e(f['run'])}: {_e(f['cause'])}</li>" for f in failed) + "</ul>") if failed
        else "<p>None.</p>",
        f"<p><small>Code version {_e(code_version())}; numbers: <a href='summary.json'>summary.json</a>.</small></p>",
        "</body></html>",
    ]
    return atomic_write_bytes(study_dir / "index.html", "\n".join(parts).encode())
