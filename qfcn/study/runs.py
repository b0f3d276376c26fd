"""Run folders: provenance records, data-manifest checks and a step's parameters
(basic I/O lives in :mod:`qfcn.io`).

Conventions
-----------
* A *study folder* ``OUT/`` holds ``data/`` (the GlaS-layout data set or a record of the
  user's folder, plus ``manifest.json``) and ``runs/<readable-id>-<hash>/`` (docs/method.md §6).
* Every run folder holds ``params.json``: all parameters, the seed, the code version and the
  data manifest hash. Artifacts of one step are read by the next only when their recorded
  manifest hash equals the study's (:func:`require_manifest`).
* A finished run holds ``done.json`` (written by :mod:`qfcn.study.runner`) with its parameter
  hash and batch point; :func:`qfcn.io.run_done` and :func:`done_point` read it.
* Every run folder's ``params.json`` also records ``threads``, the CPU threads of the kernel
  (``OMP_NUM_THREADS``, set by the runner): results depend on it (docs/method.md §6).
* ``OUT/failed.json`` lists the runs of the last batch that failed, each with a one-line cause
  (:func:`write_failed`, :func:`read_failed`; the front page lists them).
* Every file is written atomically (:func:`qfcn.io.atomic_write_bytes`), so an interrupted run
  never leaves a half-written result and a finished one is never overwritten by a failed one.

>>> import tempfile, pathlib
>>> run = pathlib.Path(tempfile.mkdtemp())
>>> rec = write_params(run, "02", {"k_members": 3}, seed=1, manifest_hash="m1")
>>> rec["steps"], rec["seed"], rec["manifest_hash"]
({'02': {'k_members': 3}}, 1, 'm1')
>>> require_manifest(stamp({"x": 1}, "m1", {}), "m1", "a.json")["x"]
1
>>> _ = write_failed(run, [{"name": "a", "seed": 0, "run_dir": str(run / "runs" / "a"), "error": "boom"}], n_runs=2)
>>> read_failed(run)
[{'error': 'boom', 'name': 'a', 'run_dir': 'runs/a', 'seed': 0}]
"""
from __future__ import annotations

import ast
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qfcn.io import ROOT, ArtifactError, atomic_write_json, code_version, param_hash, read_json, to_jsonable

NOTEBOOKS = ROOT / "notebooks"  # the project's notebook chain (the runner takes another folder as argument)
FOLDER_PARAMETERS = ("study_dir", "run_dir")  # where a step runs, not what it computes: outside its hash
FAILED_FILE = "failed.json"  # in a study folder: the failed runs of the last batch


def data_dir(study_dir: str | os.PathLike) -> Path:
    """The data folder of a study: ``<study_dir>/data``."""
    return Path(study_dir) / "data"


def manifest_path(study_dir: str | os.PathLike) -> Path:
    """``<study_dir>/data/manifest.json``, the data manifest of a study."""
    return data_dir(study_dir) / "manifest.json"


def read_manifest(study_dir: str | os.PathLike) -> dict[str, Any]:
    """The data manifest written by the data step (``01-data``)."""
    return read_json(manifest_path(study_dir), "data manifest (written by notebook 01-data)")


def write_params(run_dir: str | os.PathLike, step: str, params: dict[str, Any], *, seed: int,
                 manifest_hash: str) -> dict[str, Any]:
    """Record one step's parameters in ``run_dir/params.json`` (merged per step) and return it."""
    path = Path(run_dir) / "params.json"
    record = json.loads(path.read_text()) if path.is_file() else {"steps": {}}
    if record.get("manifest_hash", manifest_hash) != manifest_hash:
        raise ArtifactError(
            f"{path} was written for data manifest {record['manifest_hash']}, but the study's data "
            f"has manifest {manifest_hash}: use a fresh run folder")
    threads = os.environ.get("OMP_NUM_THREADS")
    record.update(seed=seed, manifest_hash=manifest_hash, code_version=code_version(),
                  threads=int(threads) if threads and threads.isdigit() else None)
    record["steps"][step] = to_jsonable(params)
    atomic_write_json(path, record)
    return record


def stamp(obj: dict[str, Any], manifest_hash: str, params: dict[str, Any]) -> dict[str, Any]:
    """Add provenance (manifest hash, parameter hash, code version) to an artifact dict."""
    return {**obj, "manifest_hash": manifest_hash, "params_hash": param_hash(params),
            "code_version": code_version()}


def require_manifest(artifact: dict[str, Any], manifest_hash: str, path: str | os.PathLike) -> dict[str, Any]:
    """Check that an artifact read from ``path`` was built from the study's data."""
    got = artifact.get("manifest_hash")
    if got != manifest_hash:
        raise ArtifactError(
            f"{path} was built from data manifest {got!r}, but the study's data has manifest "
            f"{manifest_hash!r}: rerun the steps before this one on the current data")
    return artifact


def write_failed(study_dir: str | os.PathLike, failed: list[dict[str, Any]], *, n_runs: int) -> Path:
    """Write ``OUT/failed.json``: ``{"n_runs": int, "failed": [{"name", "seed", "run_dir" (relative
    to the study folder), "error" (one line)}, ...]}`` (an empty list when every run finished)."""
    study = Path(study_dir)
    rows = []
    for f in failed:
        run_dir = Path(f["run_dir"])
        rel = run_dir.relative_to(study).as_posix() if run_dir.is_relative_to(study) else str(run_dir)
        error = " ".join(str(f.get("error", "")).split()) or "unknown error"
        rows.append({"name": f.get("name"), "seed": f.get("seed"), "run_dir": rel, "error": error})
    return atomic_write_json(study / FAILED_FILE, {"n_runs": n_runs, "failed": rows})


def read_failed(study_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The failed runs listed in ``OUT/failed.json`` (``[]`` when the file is absent): dicts with
    ``name``, ``seed``, ``run_dir`` (relative to the study folder) and ``error`` (one line)."""
    path = Path(study_dir) / FAILED_FILE
    if not path.is_file():
        return []
    return list(read_json(path, "failed-runs record").get("failed", []))


def resolve(path: str | os.PathLike) -> Path:
    """A path from a notebook parameter: absolute as is, relative to the project root otherwise
    (never to the current directory, which differs between JupyterLab and papermill)."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else ROOT / path


def read_suggestion(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The run's ``suggestion.json`` (written by notebook 03-suggestion); None when it has none."""
    path = Path(run_dir) / "suggestion.json"
    return read_json(path, "suggestion record (written by notebook 03-suggestion)") if path.is_file() else None


def done_point(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The batch point recorded in ``run_dir/done.json`` ({} when it has none); None when the
    runner did not finish the folder (a run made in JupyterLab, or a failed one)."""
    path = Path(run_dir) / "done.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("point", {})


def parameter_names(notebook: str | os.PathLike) -> list[str]:
    """Names assigned in the cell tagged ``parameters`` of a notebook file, in the cell's order.

    Raises :class:`ValueError` when the notebook has no such cell."""
    nb = json.loads(Path(notebook).read_text())
    for cell in nb["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            tree = ast.parse("".join(cell["source"]))
            return [t.id for node in tree.body if isinstance(node, ast.Assign)
                    for t in node.targets if isinstance(t, ast.Name)]
    raise ValueError(f"{notebook} has no cell tagged 'parameters'")


def step_params(step: str, namespace: Mapping[str, Any], notebooks_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """A step's parameters for its provenance hash: ``{name: namespace[name]}`` for every name of
    the parameters cell of ``<notebooks_dir>/<step>.ipynb`` (default: the project's notebooks/)
    except ``study_dir`` and ``run_dir``, in the cell's order. A notebook calls it with
    ``globals()``, so no second, hand-written list of its parameters can drift from the cell.

    >>> step_params("05-ablations", {"study_dir": "x", "metric": "f1", "min_glands": 150})
    {'metric': 'f1', 'min_glands': 150}
    """
    path = Path(notebooks_dir if notebooks_dir is not None else NOTEBOOKS) / f"{step}.ipynb"
    names = [n for n in parameter_names(path) if n not in FOLDER_PARAMETERS]
    missing = [n for n in names if n not in namespace]
    if missing:
        raise KeyError(f"step_params({step!r}): parameters {missing} of {path} are not defined")
    return {name: namespace[name] for name in names}
