"""What a study folder holds and what it was made from (docs/method.md §7, "Floating point").

* ``OUT/study.json`` marks a folder made by qfcn and records what it was made from: the params
  file (absolute path, SHA-256 of its bytes), the *study identity* (hash of the validated params,
  the data source as an absolute path or ``"synthetic"``, the data options such as ``labels``),
  the qfcn version and the code version. :func:`check_out` accepts as ``--out`` only an absent or
  empty folder, or one with a ``study.json`` made by qfcn (a folder written by qfcn before
  ``study.json`` existed is recognised and may only be replaced).
* :func:`identity_change` says in one line how a call differs from the folder's record; the
  runner then refuses (the results would be mixed under one name) unless ``--replace`` is given.
* :func:`replace` MOVES everything in the folder (but the lock and earlier ``replaced-*``
  folders) into ``OUT/replaced-<timestamp>/``: nothing is deleted or overwritten.
* :func:`foreign_runs` lists finished run folders that are not runs of this call (a different
  run identity: parameters, data manifest, code or threads); :func:`code_hash` is the code part.

>>> import tempfile, pathlib
>>> out = pathlib.Path(tempfile.mkdtemp()) / "study"
>>> check_out(out)
'new'
>>> _ = write_study(out, pathlib.Path("p.yaml"), {"params": "abc", "data": "synthetic"})
>>> check_out(out), identity_change(out, {"params": "abd", "data": "synthetic"})
('study', 'the params file changed (params abc -> abd)')
>>> moved = replace(out)
>>> sorted(p.name for p in moved.iterdir()), check_out(out)
(['study.json'], 'empty')
"""
from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from qfcn import __version__
from qfcn.io import ROOT, atomic_write_json, code_version, read_json

STUDY_FILE = "study.json"
LOCK_FILE = ".lock"
REPLACED = "replaced-"
CREATED_BY = "qfcn"
# names qfcn writes at the top of a study folder (recognises a folder made before study.json)
QFCN_NAMES = frozenset({"data", "runs", "figures", "01-data.ipynb", "01-data.html", "05-ablations.ipynb",
                        "05-ablations.html", "summary.json", "ablations.json", "index.html", "failed.json", LOCK_FILE})
_CODE_EXCLUDE = ("study", "cli.py", "__main__.py", "_bootstrap.py")  # command line and reporting: no numbers
_LIBRARIES = ("torch", "numpy", "scipy", "scikit-image")


class FolderError(ValueError):
    """``--out`` is not a folder qfcn may write into, or holds results of another identity."""


def _entries(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.name != LOCK_FILE and not p.name.startswith(REPLACED))


def check_out(out: str | os.PathLike) -> str:
    """``'new'`` (absent), ``'empty'``, ``'study'`` (has qfcn's study.json) or ``'legacy'`` (made by an
    older qfcn, without study.json); :class:`FolderError` for anything else. Reads only."""
    out = Path(out)
    if not out.exists():
        return "new"
    if not out.is_dir():
        raise FolderError(f"--out {out}: is a file, not a folder")
    entries = _entries(out)
    if not entries:  # nothing, or only qfcn's lock and replaced-* folders
        return "empty"
    rec = _read(out)
    if rec is not None:
        return "study"
    manifest = out / "data" / "manifest.json"
    if manifest.is_file() and {p.name for p in entries} <= QFCN_NAMES and _stamped(manifest):
        return "legacy"
    raise FolderError(f"--out {out}: the folder is not empty and was not made by qfcn (no {STUDY_FILE}); "
                      "nothing was written: choose a new or empty folder")


def _stamped(path: Path) -> bool:
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(rec, dict) and {"hash", "params_hash", "code_version"} <= set(rec)


def _read(out: Path) -> dict[str, Any] | None:
    path = out / STUDY_FILE
    if not path.is_file():
        return None
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        rec = None
    if not isinstance(rec, dict) or rec.get("created_by") != CREATED_BY:
        raise FolderError(f"--out {out}: {path} was not written by qfcn; choose a new or empty folder")
    return rec


def read_study(out: str | os.PathLike) -> dict[str, Any]:
    """The record in ``OUT/study.json``."""
    return read_json(Path(out) / STUDY_FILE, "study record")


def write_study(out: str | os.PathLike, params_file: Path, identity: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """Write (or update) ``OUT/study.json`` for a study of this identity; returns the record."""
    out = Path(out)
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    old = _read(out) if out.is_dir() else None
    digest = hashlib.sha256(params_file.read_bytes()).hexdigest() if params_file.is_file() else None
    rec = {**(old or {}), "created_by": CREATED_BY, "qfcn_version": __version__, "code_version": code_version(),
           "created": (old or {}).get("created", now), "updated": now, "params_file": str(params_file),
           "params_file_sha256": digest, "identity": identity, **extra}
    atomic_write_json(out / STUDY_FILE, rec)
    return rec


def identity_change(out: str | os.PathLike, identity: dict[str, Any]) -> str | None:
    """How ``identity`` differs from the one ``OUT/study.json`` records (None: the same, or no record)."""
    rec = _read(Path(out)) if Path(out).is_dir() else None
    if rec is None:
        return None
    old = rec.get("identity", {})
    what = {"params": "the params file changed", "data": "the data folder changed"}
    for key in sorted(set(old) | set(identity)):
        if old.get(key) != identity.get(key):
            label = what.get(key, f"{key} changed")
            return f"{label} ({key} {_short(old.get(key))} -> {_short(identity.get(key))})"
    return None


def _short(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def replace(out: str | os.PathLike) -> Path:
    """Move every entry of ``out`` but the lock and earlier replaced folders into a new
    ``out/replaced-<UTC timestamp>/``; returns that folder. Nothing is deleted."""
    out = Path(out)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    dest, i = out / f"{REPLACED}{stamp}", 1
    while dest.exists():
        dest, i = out / f"{REPLACED}{stamp}-{i}", i + 1
    dest.mkdir()
    for entry in _entries(out):
        if entry != dest:
            os.replace(entry, dest / entry.name)
    return dest


def foreign_runs(out: str | os.PathLike, expected: dict[str, dict[str, Any]]) -> list[str]:
    """Finished run folders under ``out/runs`` (with ``done.json`` or ``final/metrics.json``) that
    are not in ``expected`` (run folder name -> run identity), each as ``'runs/<name>: <why>'``."""
    by_point = {(i.get("name"), i.get("seed")): i for i in expected.values()}
    found = []
    for run in sorted((Path(out) / "runs").glob("*")):
        if run.name in expected or not ((run / "done.json").is_file() or (run / "final" / "metrics.json").is_file()):
            continue
        try:
            done = json.loads((run / "done.json").read_text())
        except (OSError, ValueError):
            done = {}
        old, new = done.get("identity", {}), by_point.get((done.get("name"), done.get("seed")))
        diff = [k for k in ("params", "manifest_hash", "code", "threads") if new and old.get(k) != new.get(k)]
        why = (f"{', '.join(diff)} differ" + (f" (threads {old.get('threads')} here, {new['threads']} now)"
                                              if "threads" in diff else "")) if diff else "not a run of this params file"
        found.append(f"runs/{run.name}: {why}")
    return found


def code_hash(notebooks: list[Path]) -> str:
    """Hash of the code that decides a run's numbers: the package's modules (not the command line
    or the study layer), the code cells of the given notebooks and the numeric libraries' versions."""
    return _code_hash(tuple(str(p) for p in notebooks))


@lru_cache(maxsize=8)
def _code_hash(notebooks: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    pkg = ROOT / "qfcn"
    for path in sorted(pkg.rglob("*.py")):
        rel = path.relative_to(pkg)
        if rel.parts[0] not in _CODE_EXCLUDE:
            h.update(str(rel).encode() + b"\0" + path.read_bytes())
    for nb in notebooks:
        cells = json.loads(Path(nb).read_text())["cells"]
        h.update("".join("".join(c["source"]) for c in cells if c["cell_type"] == "code").encode())
    for lib in _LIBRARIES:
        try:
            h.update(f"{lib}={importlib.metadata.version(lib)}".encode())
        except importlib.metadata.PackageNotFoundError:
            pass
    return h.hexdigest()[:12]
