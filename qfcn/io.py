"""Basic I/O every layer may use: the project root, atomic writes, JSON, parameter hashes and
the code version. Imports nothing from qfcn (the bottom layer).

Every file qfcn writes goes through :func:`atomic_write_bytes`: a temporary file in the same
folder, then ``os.replace``, so an interrupted step never leaves a half-written result and a
finished one is never overwritten by a failed one. The file gets the mode an ordinary ``open``
would give (``0o666 & ~umask``), not ``mkstemp``'s private 0600, so a shared study is readable.
:func:`folder_lock` keeps two processes from writing one folder at once (``fcntl.flock``).

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = atomic_write_json(d / "a.json", {"b": 1, "a": (2, 3)})
>>> read_json(d / "a.json")
{'a': [2, 3], 'b': 1}
>>> param_hash({"a": 1}) == param_hash({"a": 1}) != param_hash({"a": 2})
True
>>> run_done(d, param_hash({"a": 1}))
False
>>> oct((d / "a.json").stat().st_mode & 0o777) == oct(0o666 & ~current_umask())
True
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from qfcn import __version__

ROOT = Path(__file__).resolve().parent.parent


class ArtifactError(RuntimeError):
    """A step's input artifact is missing, incomplete or built from other data."""


class FolderLocked(RuntimeError):
    """Another process holds the folder's lock (:func:`folder_lock`)."""


def current_umask() -> int:
    """The process's umask (read from /proc where possible: setting it to read it is not thread-safe)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


@contextmanager
def folder_lock(folder: str | os.PathLike, name: str = ".lock") -> Iterator[Path]:
    """Hold an exclusive ``flock`` on ``folder/name`` (folder created) for the ``with`` block;
    :class:`FolderLocked` at once (no waiting) when another process holds it. The lock file keeps
    the holder's pid; the lock itself ends with the process, even on ``kill -9``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise FolderLocked(f"{folder} is being written by another process (pid {holder}, lock {path})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; parents are created. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            os.fchmod(fh.fileno(), 0o666 & ~current_umask())
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


def run_done(run_dir: str | os.PathLike, params_hash: str) -> bool:
    """True when ``run_dir/done.json`` records a finished run with this parameter hash."""
    path = Path(run_dir) / "done.json"
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("params_hash") == params_hash
    except json.JSONDecodeError:
        return False
