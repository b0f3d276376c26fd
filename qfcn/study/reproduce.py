"""The reproduction check: a rerun of a study against a committed reference study (docs/method.md §7,
"Floating point": conclusions are expected to hold across machines, the last digits are not).

Compared, from both studies' ``summary.json`` (:func:`qfcn.study.report.summary`):

* **Runs.** Per run (batch-point name + seed), test part (:data:`SPLITS`) and metric
  (:data:`CHECKED`: F1 and object Dice), the new value, the reference's value of the same seed and
  the difference new − reference. The new value is **within the seed spread** when it lies inside
  the reference's 95% Student-t prediction interval for ONE further seed of that batch point::

      mean_p ± t(0.975, df) · s · sqrt(1 + 1/n_p)

  ``mean_p``, ``n_p``: the reference's mean and number of seeds of batch point p; ``s``: the
  reference's seed-to-seed standard deviation POOLED over its batch points (the within-point
  deviations, ``s² = Σ_p Σ_i (x_pi − mean_p)² / df``, ``df = Σ_p (n_p − 1)``), per split and
  metric. Pooled because a point's own sd from two seeds has one degree of freedom
  (t = 12.7): on the committed fast study its half-widths range from 0.02 to 1.6 F1, depending on
  how close two seeds happened to fall, against 0.12 (Test A) and 0.25 (Test B) pooled. With
  ``df = 0`` (every point has one seed) there is **no spread measured** and nothing is judged.
  A run × split is within when every checked metric is; it is **missing here** when the reference
  has it and this study does not.
* **Verdicts.** When both summaries carry ``contrasts`` (``{id, run, split, metric, verdict}``),
  per contrast whether the verdict agrees (contrasts missing in either study are not compared).

>>> ref = {"runs": [{"run": {"name": "a", "seed": s}, "test_a": {"f1": f, "object_dice": f}}
...                 for s, f in ((0, 0.80), (1, 0.82))]}
>>> new = {"runs": [{"run": {"name": "a", "seed": 0}, "test_a": {"f1": 0.79, "object_dice": 0.81}}]}
>>> rep = compare(new, ref, "ref")
>>> row = rep["runs"][0]; row["status"], round(row["metrics"]["f1"]["diff"], 3)
('within', -0.01)
>>> line(rep)
'not within the seed spread: missing here: a s1 Test A (1 of 2 runs×splits within, against ref); verdicts: not compared (no contrasts in both summaries)'
"""
from __future__ import annotations

import html
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from scipy import stats as st

from qfcn.io import ROOT, atomic_write_json, read_json
from qfcn.study.contrasts import METRIC_NAMES, SPLIT_NAMES

FILE = "reproduction.json"
SPLITS = ("test_a", "test_b")
CHECKED = ("f1", "object_dice")
LEVEL = 0.95
SHOWN = 6  # runs×splits named in the terminal line before "and k more"


class ReproductionError(ValueError):
    """A reference study that cannot be compared with (one line naming the file and what was expected)."""


def label(path: str | os.PathLike) -> str:
    """``path`` relative to the project root when inside it (``reports/fast``), else absolute."""
    p = Path(path).resolve()
    return p.relative_to(ROOT).as_posix() if p.is_relative_to(ROOT) else str(p)


def committed_study(params_path: str | os.PathLike, root: Path = ROOT) -> Path | None:
    """``<root>/reports/<stem>`` when ``params_path`` is a project profile ``<root>/params/<stem>.yaml``
    whose study is committed (the folder holds a ``summary.json``); else None."""
    params_path = Path(params_path).resolve()
    ref = (root / "reports" / params_path.stem).resolve()
    return ref if params_path.parent == (root / "params").resolve() and (ref / "summary.json").is_file() else None


def default_reference(params_path: str | os.PathLike, out: str | os.PathLike, root: Path = ROOT) -> Path | None:
    """The study a ``study`` command compares with by default: :func:`committed_study`, except when
    ``out`` IS that folder (a re-render of the reference: nothing to compare)."""
    ref = committed_study(params_path, root)
    return None if ref is None or Path(out).resolve() == ref else ref


def load_reference(path: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """(folder, summary) of a reference study: a study folder or its ``summary.json``. Raises
    :class:`ReproductionError` naming the file and the key when it is not a study summary."""
    p = Path(path).expanduser().resolve()
    file = p if p.suffix == ".json" else p / "summary.json"
    if not file.is_file():
        raise ReproductionError(f"--reference {path}: no {file.name} there (expected a study folder made by "
                                "'python -m qfcn study', holding summary.json)")
    try:
        summ = read_json(file, "study summary")
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise ReproductionError(f"--reference {file}: not readable JSON ({exc})") from None
    runs = summ.get("runs") if isinstance(summ, dict) else None
    if not isinstance(runs, list) or not all(isinstance(r, dict) and isinstance(r.get("run"), dict)
                                             and "name" in r["run"] and "seed" in r["run"] for r in runs):
        raise ReproductionError(f"--reference {file}: expected key 'runs', a list of {{run: {{name, seed}}, "
                                "test_a: {...}, test_b: {...}}}")
    return file.parent, summ


def _value(entry: dict[str, Any], split: str, metric: str) -> float | None:
    v = (entry.get(split) or {}).get(metric)
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _index(summary: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(str(r["run"]["name"]), int(r["run"]["seed"])): r for r in summary.get("runs", [])}


def spread(reference: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (split, metric): the pooled seed sd ``s`` (None when ``df = 0``), ``df``, the t
    quantile, and per batch point its ``mean``, ``n`` and per-seed ``values``."""
    out = {}
    for split in SPLITS:
        for metric in CHECKED:
            points: dict[str, list[float]] = defaultdict(list)
            for r in reference.get("runs", []):
                v = _value(r, split, metric)
                if v is not None:
                    points[str(r["run"]["name"])].append(v)
            df = sum(len(v) - 1 for v in points.values())
            ss = sum(sum((x - sum(v) / len(v)) ** 2 for x in v) for v in points.values())
            out[(split, metric)] = dict(
                sd=math.sqrt(ss / df) if df else None, df=df, t=float(st.t.ppf(0.5 + LEVEL / 2, df)) if df else None,
                points={p: dict(mean=sum(v) / len(v), n=len(v), values=v) for p, v in points.items()})
    return out


def _judge(new: float | None, ref_same_seed: float | None, point: dict[str, Any] | None,
           sp: dict[str, Any]) -> dict[str, Any]:
    row = dict(new=new, reference=ref_same_seed, diff=None if new is None or ref_same_seed is None
               else new - ref_same_seed, low=None, high=None, within=None)
    if point is not None and sp["sd"] is not None:
        half = sp["t"] * sp["sd"] * math.sqrt(1 + 1 / point["n"])
        row.update(low=point["mean"] - half, high=point["mean"] + half)
        if new is not None:
            row["within"] = row["low"] <= new <= row["high"]
    return row


def _status(metrics: dict[str, dict[str, Any]], in_reference: bool, in_new: bool) -> str:
    if not in_reference:
        return "not in reference"
    if not in_new or any(m["new"] is None for m in metrics.values()):
        return "missing here"
    if any(m["within"] is None for m in metrics.values()):
        return "no spread measured"
    return "within" if all(m["within"] for m in metrics.values()) else "outside"


def compare_runs(new: dict[str, Any], reference: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (run, seed, split) of either study: ``name``, ``seed``, ``split``, ``status``
    (within | outside | missing here | not in reference | no spread measured) and per checked
    metric ``{new, reference, diff, low, high, within}`` (see the module docstring)."""
    sp, n_idx, r_idx = spread(reference), _index(new), _index(reference)
    rows = []
    for key in sorted(set(n_idx) | set(r_idx)):
        name, seed = key
        for split in SPLITS:
            metrics = {}
            for metric in CHECKED:
                s = sp[(split, metric)]
                metrics[metric] = _judge(_value(n_idx[key], split, metric) if key in n_idx else None,
                                         _value(r_idx[key], split, metric) if key in r_idx else None,
                                         s["points"].get(name), s)
            has_ref = any(v["reference"] is not None for v in metrics.values())
            if not has_ref and all(v["new"] is None for v in metrics.values()):
                continue  # a split neither study scored
            in_ref = has_ref or (key not in r_idx and any(name in sp[(split, m)]["points"] for m in CHECKED))
            rows.append(dict(name=name, seed=seed, split=split, metrics=metrics,
                             status=_status(metrics, in_ref, key in n_idx)))
    return rows


def _ckey(c: dict[str, Any]) -> tuple:
    return c.get("id"), c.get("run"), c.get("split"), c.get("metric")


def compare_verdicts(new: dict[str, Any], reference: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Per contrast present in both studies with a verdict other than ``missing``: ``id``, ``run``,
    ``split``, ``metric``, both verdicts and ``agree``; None when either summary has no contrasts."""
    if not new.get("contrasts") or not reference.get("contrasts"):
        return None
    ref = {_ckey(c): c for c in reference["contrasts"] if c.get("verdict") not in (None, "missing")}
    out = []
    for c in new["contrasts"]:
        r = ref.get(_ckey(c))
        if r is None or c.get("verdict") in (None, "missing"):
            continue
        out.append(dict(id=c["id"], run=c.get("run"), split=c.get("split"), metric=c.get("metric"),
                        label=c.get("label", c["id"]), reference=r["verdict"], new=c["verdict"],
                        agree=r["verdict"] == c["verdict"]))
    return out


def compare(new: dict[str, Any], reference: dict[str, Any], reference_label: str) -> dict[str, Any]:
    """The content of ``reproduction.json``: ``reference`` (its label), ``definition``, ``level``,
    the pooled ``spread`` per split and metric, the ``runs`` rows (:func:`compare_runs`), the
    ``verdicts`` (:func:`compare_verdicts`) and both ``code_version`` s."""
    sp = spread(reference)
    return dict(reference=reference_label, level=LEVEL, checked=list(CHECKED),
                definition=("within: the new value lies inside the reference's 95% Student-t prediction interval "
                            "for one further seed of its batch point, mean ± t(0.975, df)·s·sqrt(1 + 1/n), with s the "
                            "seed-to-seed sd pooled over the reference's batch points (df = Σ(n − 1))"),
                spread={f"{s}/{m}": {k: v[k] for k in ("sd", "df", "t")} for (s, m), v in sp.items()},
                runs=compare_runs(new, reference), verdicts=compare_verdicts(new, reference),
                code_version={"new": new.get("code_version"), "reference": reference.get("code_version")})


def _where(row: dict[str, Any]) -> str:
    return f"{row['name']} s{row['seed']} {SPLIT_NAMES.get(row['split'], row['split'])}"


def _outside(row: dict[str, Any]) -> str:
    bad = [f"{METRIC_NAMES[m].split(' (')[0]} {v['new']:.3f} not in [{v['low']:.3f}, {v['high']:.3f}]"
           for m, v in row["metrics"].items() if v["within"] is False]
    return f"{_where(row)} ({'; '.join(bad)})"


def _names(items: list[str]) -> str:
    return ", ".join(items[:SHOWN]) + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def line(rep: dict[str, Any]) -> str:
    """The one terminal line: the runs against the seed spread, then the verdicts' agreement.
    "reproduced within the seed spread" only when EVERY run × split of the reference is within."""
    rows = [r for r in rep["runs"] if r["status"] != "not in reference"]
    by = {s: [r for r in rows if r["status"] == s] for s in ("within", "outside", "missing here", "no spread measured")}
    count = f"{len(by['within'])} of {len(rows)} runs×splits within, against {rep['reference']}"
    if rows and len(by["no spread measured"]) == len(rows):
        head = f"no seed spread measured in {rep['reference']} (one seed per batch point): differences in {FILE}"
    elif rows and len(by["within"]) == len(rows):
        head = f"reproduced within the seed spread ({count})"
    else:
        parts = [_names([_outside(r) for r in by["outside"]])] if by["outside"] else []
        parts += [f"{s}: {_names([_where(r) for r in by[s]])}" for s in ("missing here", "no spread measured") if by[s]]
        head = f"not within the seed spread: {'; '.join(parts) or 'no runs to compare'} ({count})"
    v = rep.get("verdicts")
    if v is None:
        return f"{head}; verdicts: not compared (no contrasts in both summaries)"
    differ = [f"{c['id']}{' ' + str(c['run']) if c['run'] else ''} {SPLIT_NAMES.get(c['split'], c['split'])} "
              f"{c['metric']}: {c['reference']} -> {c['new']}" for c in v if not c["agree"]]
    return (f"{head}; verdicts agree: {len(v) - len(differ)} of {len(v)} contrasts"
            + (f" (differ: {_names(differ)})" if differ else ""))


def write(study_dir: str | os.PathLike, rep: dict[str, Any]) -> Path:
    """Write ``<study_dir>/reproduction.json`` (atomically)."""
    return atomic_write_json(Path(study_dir) / FILE, rep)


def _num(x: float | None, signed: bool = False) -> str:
    return "—" if x is None else (f"{x:+.3f}" if signed else f"{x:.3f}").replace("-", "−")


def section_html(study_dir: str | os.PathLike) -> str:
    """The front page's section "Reproduction check against <reference>" from
    ``<study_dir>/reproduction.json``; ``""`` when the study has none."""
    path = Path(study_dir) / FILE
    if not path.is_file():
        return ""
    rep = read_json(path, "reproduction check")
    e = html.escape
    head = "".join(f"<th>{e(METRIC_NAMES[m].split(' (')[0])} {k}</th>" for m in rep["checked"]
                   for k in ("new", "reference (same seed)", "new − reference", "seed spread (95% PI)"))
    body = []
    for r in rep["runs"]:
        cells = "".join(f"<td class='n'>{_num(v['new'])}</td><td class='n'>{_num(v['reference'])}</td>"
                        f"<td class='n'>{_num(v['diff'], True)}</td><td class='n'>"
                        + (f"[{_num(v['low'])}, {_num(v['high'])}]" if v["low"] is not None else "—") + "</td>"
                        for v in (r["metrics"][m] for m in rep["checked"]))
        body.append(f"<tr><td>{e(r['name'])}</td><td class='n'>{r['seed']}</td>"
                    f"<td>{e(SPLIT_NAMES.get(r['split'], r['split']))}</td><td>{e(r['status'])}</td>{cells}</tr>")
    verdicts = rep.get("verdicts")
    if verdicts is None:
        vhtml = "<p><small>Verdicts not compared: one of the two summaries has no contrasts.</small></p>"
    else:
        vrows = "".join(f"<tr><td>{e(c['label'])}</td><td>{e(SPLIT_NAMES.get(c['split'], c['split']))}</td>"
                        f"<td>{e(c['metric'])}</td><td>{e(c['reference'])}</td><td>{e(c['new'])}</td>"
                        f"<td>{'yes' if c['agree'] else '<b>no</b>'}</td></tr>" for c in verdicts)
        vhtml = (f"<details><summary>Verdicts: {sum(c['agree'] for c in verdicts)} of {len(verdicts)} agree"
                 "</summary><table><tr><th>contrast</th><th>split</th><th>metric</th><th>reference</th><th>this "
                 f"study</th><th>agree</th></tr>{vrows}</table></details>")
    return (f"<h2>Reproduction check against {e(rep['reference'])}</h2><p><b>{e(line(rep))}</b></p>"
            f"<table><tr><th>run</th><th>seed</th><th>split</th><th>status</th>{head}</tr>{''.join(body)}</table>"
            f"<p><small>{e(rep['definition'])}. Same machine and thread count give identical numbers; other CPUs, "
            "thread counts or GPUs move the last digits, which can change the images a suggestion round picks, so "
            f"a rerun is checked against the seed spread and the verdicts (docs/method.md §7). Details: {FILE}."
            f"</small></p>{vhtml}")
