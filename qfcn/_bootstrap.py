"""Create the project's virtual environment on first use and re-run inside it.

Standard library only: this module runs under whatever ``python3`` the user typed, before
any dependency is importable. The rule:

1. If the running interpreter already has every requirement of ``pyproject.toml``
   (for example an activated conda environment from ``environment.yml``), use it.
2. Otherwise use ``<project>/.venv``, creating it (``python -m venv`` + ``pip install -e
   '.[test]'``) when it is missing or was built from another ``pyproject.toml``
   (a stamp file holds the hash of the one it was built from), and re-execute the same
   command line with the venv's interpreter.

Set ``QFCN_NO_BOOTSTRAP=1`` to skip all of this (the current interpreter is used as is).
"""
from __future__ import annotations

import hashlib
import importlib.metadata as md
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
STAMP = VENV / ".qfcn-pyproject.sha256"
_GUARD = "QFCN_BOOTSTRAPPED"


def _pyproject() -> Path | None:
    path = ROOT / "pyproject.toml"
    return path if path.is_file() else None


def _requirements(pyproject: Path) -> list[str]:
    meta = tomllib.loads(pyproject.read_text())["project"]
    return list(meta["dependencies"]) + list(meta.get("optional-dependencies", {}).get("test", []))


def _satisfied(requirements: list[str]) -> bool:
    """True when every named distribution is installed (and ``==`` pins match exactly)."""
    for req in requirements:
        m = re.match(r"^\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(==\s*([^,;\s]+))?", req)
        if not m:
            return False
        try:
            have = md.version(m.group(1))
        except md.PackageNotFoundError:
            return False
        if m.group(4) and have.split("+")[0] != m.group(4):
            return False
    try:
        md.version("qfcn")
    except md.PackageNotFoundError:
        return False
    return True


def _venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _build_venv(digest: str) -> None:
    if sys.version_info[:2] != (3, 11):
        raise SystemExit(
            f"qfcn needs Python 3.11 to build its environment; this is {sys.version.split()[0]}. "
            "Run the command with python3.11, or create the conda environment from environment.yml."
        )
    print(f"[qfcn] creating the project environment in {VENV} (first run only) ...", flush=True)
    if not _venv_python().exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    py = str(_venv_python())
    subprocess.run([py, "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
    subprocess.run([py, "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[test]"], check=True)
    STAMP.write_text(digest)


def ensure_environment(argv: list[str]) -> None:
    """Return when the current interpreter can run qfcn; otherwise re-exec inside ``.venv``."""
    pyproject = _pyproject()
    if pyproject is None or os.environ.get("QFCN_NO_BOOTSTRAP") == "1":
        return
    if _satisfied(_requirements(pyproject)):
        return
    if os.environ.get(_GUARD) == "1":
        raise SystemExit(f"[qfcn] the environment in {VENV} is incomplete; remove it and rerun.")
    digest = hashlib.sha256(pyproject.read_bytes()).hexdigest()
    if not (_venv_python().exists() and STAMP.is_file() and STAMP.read_text() == digest):
        _build_venv(digest)
    env = dict(os.environ, **{_GUARD: "1"})
    py = str(_venv_python())
    os.execve(py, [py, "-m", "qfcn", *argv], env)
