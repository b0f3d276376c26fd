"""Seconds per study run by phase, read from the executed notebooks' papermill records (no rerun)
-> benchmarks/results/phases_<study folder name>.json (phases_fast.json, phases_standard.json).

Each run folder of a finished study holds the executed notebooks 02-04; papermill stores every
cell's duration. Cells are assigned to phases by what they call: notebook 02's member training
cell (``train_ensemble``/``needs_ensemble``) -> ensemble_training, its disagreement cell ->
selection_inference; notebook 03's rounds (training of round members AND selection inference,
not separable from the records) -> suggestion_rounds; notebook 04's ``train_ensemble`` cell ->
final_training, its ``evaluate`` cell -> evaluation, its efficiency cell (final networks retrained
and scored at smaller budgets) -> efficiency_curve; all other cells -> other. Means are given over
all runs and per run configuration (``mean_s_per_config``).

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/bench_phases.py [REPORT_DIR]`` (default
``reports/fast`` of the main checkout); seconds of one run = mean over the run folders.
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT = Path("/work/main/reports/fast")
RULES = (  # (notebook prefix, phase, any of these substrings in the cell source)
    ("02", "ensemble_training", ("needs_ensemble", "train_ensemble(")),
    ("02", "selection_inference", ("disagreement = ",)),
    ("03", "suggestion_rounds", ("train_fn", "run_rounds", "suggest.")),
    ("04", "efficiency_curve", ("efficiency_rows(",)),
    ("04", "final_training", ("train_ensemble(",)),
    ("04", "evaluation", ("evaluate", "splits = {")),
)


def _phase(notebook: str, source: str) -> str:
    for prefix, phase, keys in RULES:
        if notebook.startswith(prefix) and any(k in source for k in keys):
            return phase
    return "other"


def run_phases(run_dir: Path) -> dict[str, float]:
    """Seconds per phase of one run folder (cells without a papermill duration count 0)."""
    out: dict[str, float] = {}
    for nb in sorted(run_dir.glob("0[2-4]-*.ipynb")):
        for cell in json.loads(nb.read_text())["cells"]:
            dur = cell.get("metadata", {}).get("papermill", {}).get("duration") or 0.0
            phase = _phase(nb.name, "".join(cell.get("source", "")))
            out[phase] = out.get(phase, 0.0) + float(dur)
    return out


def main(report: Path) -> dict:
    done = [d for d in sorted((report / "runs").iterdir()) if (d / "done.json").is_file()]  # finished runs only
    runs = {d.name: run_phases(d) for d in done}
    runs = {k: v for k, v in runs.items() if v}
    config = {d.name: json.loads((d / "done.json").read_text()).get("name", d.name) for d in done}
    if not runs:
        raise SystemExit(f"{report}/runs: no executed notebooks 02-04 found")
    phases = sorted({p for v in runs.values() for p in v})
    mean = {p: statistics.mean(v.get(p, 0.0) for v in runs.values()) for p in phases}
    total = sum(mean.values())
    return {"report": str(report), "n_runs": len(runs), "mean_s_per_run": mean, "mean_total_s_per_run": total,
            "share": {p: s / total for p, s in mean.items()}, "mean_s_per_config": {
                name: {p: statistics.mean(runs[r].get(p, 0.0) for r in runs if config[r] == name) for p in phases}
                for name in sorted({config[r] for r in runs})}, "per_run": runs,
            "note": "notebook 01 (data) and 05 (ablations) run once per study and are not included; "
                    "suggestion_rounds mixes round training and selection inference"}


if __name__ == "__main__":
    res = main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT)
    (HERE / "results").mkdir(exist_ok=True)
    out = HERE / "results" / f"phases_{Path(res['report']).name}.json"
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps({k: v for k, v in res.items() if k != "per_run"}, indent=2))
