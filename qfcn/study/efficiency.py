"""The annotation-efficiency points of a study, completed from what the runs already hold
(docs/method.md §7, "Share work where the method allows").

Notebook 04 trains the final ensemble again for every budget of ``efficiency_budgets``
(:func:`qfcn.score.efficiency_rows`). Three kinds of point need no training of their own:

- **the run's own budget**: its main float (and NTQ) ensemble was trained on exactly the annotated
  set the suggestion loop ended with, with the same configs and seeds, so the run's own scores
  are that point (``source="own run"``);
- **the whole pool**: the same images for every selection;
- **the initial random set** (suggestion stage 0): drawn from the seed alone, the same images in
  every arm of a seed. A point is shared only when the two runs' stage-0 lists are equal in their
  ``suggestion.json``.

So a profile can put the selection-independent budgets (initial set, whole pool) in one run per
seed and each selection's own intermediate budgets in its run; :func:`study_rows` gives every
line all its points. Shared points are float only (``source="shared with <run>"``); trained
points keep ``source="trained"``. Rows: :func:`qfcn.study.records.efficiency_rows` plus
``source``.

>>> own = {"run": {"name": "sa", "seed": 0}, "main": "ntq", "variants": {
...     "float": {"splits": {"test_a": {"f1": 0.70}, "test_b": {"f1": 0.60}}},
...     "ntq": {"splits": {"test_a": {"f1": 0.68}, "test_b": {"f1": 0.59}}}},
...     "efficiency": [dict(selection="suggestive", quantized=False, budget=0.3, n_images=12, n_pool=40, seed=0,
...                         f1_a=0.65, f1_b=0.55)]}
>>> [(r["budget"], r["quantized"], r["f1_a"], r["source"]) for r in own_points(own, n_annotated=20)]
[(0.5, False, 0.7, 'own run'), (0.5, True, 0.68, 'own run')]
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from qfcn.study import records
from qfcn.study.runs import read_suggestion


def own_points(record: Mapping[str, Any], n_annotated: int) -> list[dict[str, Any]]:
    """The run's own scores as efficiency points at ``n_annotated / n_pool`` (float, and NTQ when
    the run's main result is quantized); [] when the run drew no curve (no pool size known) or
    already trained that budget."""
    rows = records.efficiency_rows(record)
    if not rows:
        return []
    first, n_pool = rows[0], rows[0]["n_pool"]
    if any(r["n_images"] == n_annotated for r in rows):
        return []
    out = []
    for quantized, variant in ((False, "float"), (True, record["main"])):
        if quantized and variant == "float" or variant not in record["variants"]:
            continue
        splits = record["variants"][variant]["splits"]
        out.append({**{k: first[k] for k in ("name", "qsa_bits", "selection", "seed", "n_pool")},
                    "quantized": quantized, "budget": n_annotated / n_pool, "n_images": n_annotated,
                    "f1_a": splits["test_a"]["f1"], "f1_b": splits["test_b"]["f1"], "source": "own run"})
    return out


def _stage0(suggestion: Mapping[str, Any] | None) -> list[str] | None:
    """The initial random set (stage 0's picks) of a suggestion record; None without one."""
    stages = (suggestion or {}).get("stages") or []
    return list(stages[0].get("picked", [])) if stages else None


def shared_points(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Float points at the whole pool and at the initial set, copied from a run of the same seed
    that trained them to every run that did not (``runs``: ``{"name", "seed", "selection",
    "qsa_bits", "stage0", "rows"}``, ``rows`` its points so far)."""
    out = []
    for dst in runs:
        have = {r["n_images"] for r in dst["rows"] if not r["quantized"]}
        for src in runs:
            if src is dst or src["seed"] != dst["seed"]:
                continue
            for r in src["rows"]:
                whole = r["n_images"] == r["n_pool"]
                initial = (src["stage0"] is not None and src["stage0"] == dst["stage0"]
                           and r["n_images"] == len(src["stage0"]))
                if r["quantized"] or r["source"] != "trained" or r["n_images"] in have or not (whole or initial):
                    continue
                out.append({**r, "name": dst["name"], "qsa_bits": dst["qsa_bits"], "selection": dst["selection"],
                            "source": f"shared with {src['name']}"})
                have.add(r["n_images"])
    return out


def study_rows(records_: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every efficiency point of a study's run records (:func:`qfcn.study.report.load_run_metrics`,
    which adds ``run_dir``): trained, own-run and shared points (module docstring)."""
    runs = []
    for rec in records_:
        trained = [{**r, "source": "trained"} for r in records.efficiency_rows(rec)]
        if not trained:
            continue
        sugg = read_suggestion(rec["run_dir"])
        n_annotated = len(sugg.get("annotated", [])) if sugg else 0
        own = own_points(rec, n_annotated) if n_annotated else []
        runs.append(dict(name=rec["run"].get("name"), seed=rec["run"].get("seed"), selection=trained[0]["selection"],
                         qsa_bits=rec["run"].get("qsa_bits"), stage0=_stage0(sugg), rows=trained + own))
    shared = shared_points(runs)
    return [r for run in runs for r in run["rows"]] + shared
