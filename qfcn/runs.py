"""Run folders: provenance records and data-manifest checks (basic I/O lives in :mod:`qfcn.io`).

Conventions
-----------
* A *study folder* ``OUT/`` holds ``data/`` (the GlaS-layout data set or a record of the
  user's folder, plus ``manifest.json``) and ``runs/<readable-id>-<hash>/``.
* Every run folder holds ``params.json``: all parameters, the seed, the code version and the
  data manifest hash. Artifacts of one step are read by the next only when their recorded
  manifest hash equals the study's (:func:`require_manifest`).
* Every file is written atomically (temporary file in the same folder, then ``os.replace``),
  so an interrupted run never leaves a half-written result and a finished one is never
  overwritten by a failed one.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from qfcn.io import ROOT, ArtifactError, atomic_write_json, code_version, param_hash, read_json, to_jsonable

def data_dir(study_dir: str | os.PathLike) -> Path:
    """The data folder of a study: ``<study_dir>/data``."""
    return Path(study_dir) / "data"


def manifest_path(study_dir: str | os.PathLike) -> Path:
    return data_dir(study_dir) / "manifest.json"


def read_manifest(study_dir: str | os.PathLike) -> dict[str, Any]:
    """The data manifest written by the data step (``01-data``)."""
    return read_json(manifest_path(study_dir), "data manifest (written by notebook 01-data)")


def glas_root(study_dir: str | os.PathLike) -> Path:
    """The GlaS-layout folder the data step chose (synthetic or the user's)."""
    return Path(read_manifest(study_dir)["glas_root"])


def write_params(run_dir: str | os.PathLike, step: str, params: dict[str, Any], *, seed: int,
                 manifest_hash: str) -> dict[str, Any]:
    """Record one step's parameters in ``run_dir/params.json`` (merged per step) and return it."""
    path = Path(run_dir) / "params.json"
    record = json.loads(path.read_text()) if path.is_file() else {"steps": {}}
    if record.get("manifest_hash", manifest_hash) != manifest_hash:
        raise ArtifactError(
            f"{path} was written for data manifest {record['manifest_hash']}, but the study's data "
            f"has manifest {manifest_hash}: use a fresh run folder")
    record.update(seed=seed, manifest_hash=manifest_hash, code_version=code_version())
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


def resolve(path: str | os.PathLike) -> Path:
    """A path from a notebook parameter: absolute as is, relative to the project root otherwise
    (never to the current directory, which differs between JupyterLab and papermill)."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else ROOT / path


def run_done(run_dir: str | os.PathLike, params_hash: str) -> bool:
    """True when ``run_dir/done.json`` records a finished run with this parameter hash."""
    path = Path(run_dir) / "done.json"
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("params_hash") == params_hash
    except json.JSONDecodeError:
        return False
