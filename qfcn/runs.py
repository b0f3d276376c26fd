"""Run folders: atomic writes, parameter hashes, provenance records and data-manifest checks.

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

import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from qfcn import __version__

ROOT = Path(__file__).resolve().parent.parent


class ArtifactError(RuntimeError):
    """A step's input artifact is missing, incomplete or built from other data."""


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; parents are created. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, paths and tuples into plain JSON types."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy scalars and arrays, torch tensors
        return obj.tolist()
    return obj


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON atomically."""
    text = json.dumps(to_jsonable(obj), indent=2, sort_keys=True, allow_nan=True) + "\n"
    return atomic_write_bytes(path, text.encode())


def read_json(path: str | os.PathLike, what: str = "artifact") -> Any:
    """Read JSON, with an :class:`ArtifactError` naming the file when it is missing or broken."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"missing {what}: {path} does not exist (run the step that writes it first)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{what} {path} is not valid JSON: {exc}") from exc


def param_hash(params: dict[str, Any], length: int = 10) -> str:
    """Stable short hash of a parameter dict (canonical, key-sorted JSON)."""
    text = json.dumps(to_jsonable(params), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


_CODE_PATHS = ("qfcn", "notebooks", "params", "pyproject.toml")  # what decides a result (not reports/)


def code_version() -> str:
    """``<package version>+g<commit>[.dirty]`` when in a git checkout, else the package version;
    ``.dirty`` when the code, notebooks or params differ from the commit (rendered reports do not count)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, text=True,
                                capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *_CODE_PATHS],
                               cwd=ROOT, text=True, capture_output=True, check=True).stdout.strip()
        return f"{__version__}+g{commit}" + (".dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return __version__


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
