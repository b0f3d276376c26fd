"""Params files (``params/*.yaml``), batch points and every up-front check of a step's parameters.

A params file has one section per notebook plus the batch of runs::

    data:        {...}   # parameters of notebooks/01-data.ipynb
    ensemble:    {...}   # notebooks/02-ensemble-quantization.ipynb
    suggestion:  {...}   # notebooks/03-suggestion.ipynb
    training:    {...}   # notebooks/04-quantized-training.ipynb
    ablations:   {...}   # notebooks/05-ablations.ipynb
    batch:
      seeds: [0, 1]      # every point runs once per seed
      runs:              # explicit points: {name: ..., <chain parameter>: value, ...}
        - {name: sa-float, qsa_bits: 32, ntq_bits: 32}
      grid:              # and/or a cartesian grid: <chain parameter>: [values]
        ntq_bits: [32, 7, 5]

Papermill only warns on an unknown parameter, so every key is checked here against
``papermill.inspect_notebook`` and every value against the type of the notebook's default
(an ``int`` is accepted where the default is a ``float``; ``None`` defaults accept anything).
Parameters that the runner sets itself (:data:`RUNNER_PARAMETERS`) may not appear in a file.

The value checks of the per-run notebooks (:func:`check_ensemble`, :func:`check_suggestion`,
:func:`check_training`) are called by the notebooks in their first cell and by the runner for
every batch point before the first run starts, so that a bad value (K < 2, a budget outside
(0, 1], k larger than K_c, a bit-width the scheme does not support) fails before any training
(docs/method.md §4, §5). Each raises ``ValueError`` naming the parameter and what was expected.

``notebooks_dir`` arguments default to the project's ``notebooks/`` (:data:`qfcn.study.runs.NOTEBOOKS`).

>>> pts = batch_points({"batch": {"seeds": [0, 1], "grid": {"ntq_bits": [7, 5]}}})
>>> [(p["name"], p["seed"]) for p in pts]
[('ntq_bits7', 0), ('ntq_bits5', 0), ('ntq_bits7', 1), ('ntq_bits5', 1)]
>>> check_training(ntq_scheme="inq", ntq_bits=5, n_members=1, val_fraction=0.2, variants=["nope"])
Traceback (most recent call last):
    ...
ValueError: variants: unknown ['nope']; expected a subset of ['float_control', 'other_scheme', 'ptq', 'ptq_bn']
"""
from __future__ import annotations

import ast
import itertools
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from qfcn import quant, suggest
from qfcn.train import VARIANTS
from qfcn.study.runs import NOTEBOOKS

SECTIONS: dict[str, str] = {
    "data": "01-data.ipynb",
    "ensemble": "02-ensemble-quantization.ipynb",
    "suggestion": "03-suggestion.ipynb",
    "training": "04-quantized-training.ipynb",
    "ablations": "05-ablations.ipynb",
}
CHAIN = ("ensemble", "suggestion", "training")  # the per-run notebooks a batch point parameterises
RUNNER_PARAMETERS = frozenset({"study_dir", "run_dir", "glas_dir"})
BATCH_KEYS = frozenset({"seeds", "runs", "grid"})


class ParamsError(ValueError):
    """A params file is unreadable, has an unknown key or a value of the wrong type."""


def notebook_defaults(notebook: str, notebooks_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Parameter name -> default value (a Python literal) of a notebook's ``parameters`` cell."""
    return _defaults(Path(notebooks_dir if notebooks_dir is not None else NOTEBOOKS) / notebook)


@lru_cache(maxsize=None)
def _defaults(path: Path) -> dict[str, Any]:
    import papermill  # heavy (about 4 s to import): only when a notebook is inspected

    info = papermill.inspect_notebook(str(path))
    if not info:
        raise ParamsError(f"{path} has no cell tagged 'parameters'")
    out = {}
    for name, meta in info.items():
        try:
            out[name] = ast.literal_eval(meta["default"])
        except (ValueError, SyntaxError) as exc:
            raise ParamsError(f"{path}: parameter {name} = {meta['default']} is not a literal") from exc
    return out


def _type_ok(value: Any, default: Any) -> bool:
    if default is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, type(default))


def _check_values(where: str, values: dict[str, Any], defaults: dict[str, Any], *, as_list: bool = False) -> None:
    for key, value in values.items():
        if key in RUNNER_PARAMETERS:
            raise ParamsError(f"{where}: {key!r} is set by the runner (--out/--data), not by a params file")
        if key not in defaults:
            raise ParamsError(f"{where}: unknown key {key!r}; expected one of {sorted(set(defaults) - RUNNER_PARAMETERS)}")
        items = value if as_list else [value]
        if as_list and not isinstance(value, list):
            raise ParamsError(f"{where}: {key!r} must be a list of values, got {value!r}")
        for item in items:
            if not _type_ok(item, defaults[key]):
                raise ParamsError(f"{where}: {key!r} = {item!r} has type {type(item).__name__}, "
                                  f"expected {type(defaults[key]).__name__} (like the default {defaults[key]!r})")


def chain_defaults(notebooks_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Defaults of every parameter of the per-run notebooks (02, 03, 04), merged."""
    merged: dict[str, Any] = {}
    for section in CHAIN:
        merged.update(notebook_defaults(SECTIONS[section], notebooks_dir))
    return merged


def _check_batch(source: str, batch: dict[str, Any], chain: dict[str, Any]) -> None:
    unknown = set(batch) - BATCH_KEYS
    if unknown:
        raise ParamsError(f"{source} [batch]: unknown key {sorted(unknown)[0]!r}; expected {sorted(BATCH_KEYS)}")
    seeds = batch.get("seeds", [0])
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        raise ParamsError(f"{source} [batch]: 'seeds' must be a non-empty list of integers, got {seeds!r}")
    for i, point in enumerate(batch.get("runs", []) or []):
        if not isinstance(point, dict):
            raise ParamsError(f"{source} [batch.runs][{i}]: expected a mapping, got {point!r}")
        _check_values(f"{source} [batch.runs][{i}]", {k: v for k, v in point.items() if k != "name"}, chain)
    _check_values(f"{source} [batch.grid]", batch.get("grid", {}) or {}, chain, as_list=True)


def validate(params: dict[str, Any], source: str = "params",
             notebooks_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Check a loaded params dict; return it unchanged. Raises :class:`ParamsError`."""
    if not isinstance(params, dict):
        raise ParamsError(f"{source}: expected a mapping of sections, got {type(params).__name__}")
    for section, values in params.items():
        if section == "batch":
            continue
        if section not in SECTIONS:
            raise ParamsError(f"{source}: unknown section {section!r}; expected one of {sorted(SECTIONS) + ['batch']}")
        if not isinstance(values, dict):
            raise ParamsError(f"{source}: section {section!r} must be a mapping, got {values!r}")
        _check_values(f"{source} [{section}]", values, notebook_defaults(SECTIONS[section], notebooks_dir))
    batch = params.get("batch", {}) or {}
    _check_batch(source, batch, chain_defaults(notebooks_dir))
    return params


def load(path: str | os.PathLike, notebooks_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Read and validate a params YAML file."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file {path} does not exist")
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"params file {path} is not valid YAML: {exc}") from exc
    return validate(params, str(path), notebooks_dir)


def notebook_parameters(params: dict[str, Any], section: str, point: dict[str, Any] | None = None,
                        notebooks_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """The parameters to pass to one notebook: its section, overridden by a batch point's keys
    that the notebook declares."""
    defaults = notebook_defaults(SECTIONS[section], notebooks_dir)
    out = dict(params.get(section, {}) or {})
    for key, value in (point or {}).items():
        if key in defaults:
            out[key] = value
    return out


def batch_points(params: dict[str, Any]) -> list[dict[str, Any]]:
    """Expand ``batch`` into points (dicts of chain parameters, with ``name`` and ``seed``).

    Explicit ``runs`` come first, then the cartesian ``grid``; each is crossed with ``seeds``.
    A file without ``runs`` or ``grid`` gives one point per seed with the sections' values.
    """
    batch = params.get("batch", {}) or {}
    base = [dict(p) for p in batch.get("runs", []) or []]
    grid = batch.get("grid", {}) or {}
    if grid:
        keys = sorted(grid)
        for combo in itertools.product(*(grid[k] for k in keys)):
            base.append(dict(zip(keys, combo)))
    if not base:
        base = [{}]
    points = []
    for seed in batch.get("seeds", [0]):
        for p in base:
            point = {**p, "seed": seed}
            if "name" not in point:
                point["name"] = "-".join(f"{k}{v}" for k, v in sorted(p.items())) or "run"
            points.append(point)
    return points


def _fraction(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        raise ValueError(f"{name}={value!r}: expected a fraction in (0, 1)")


def _count(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}={value!r}: expected an integer >= {low}")


def check_ensemble(*, selection: str, qsa_scheme: str, qsa_bits: int, k_members: int, initial_fraction: float,
                   **_: Any) -> None:
    """Parameters of ``02-ensemble-quantization``."""
    if selection not in suggest.METHODS:
        raise ValueError(f"selection={selection!r}: expected one of {list(suggest.METHODS)}")
    _count("k_members", k_members, 2)
    _fraction("initial_fraction", initial_fraction)
    quant.check_scheme(qsa_scheme, qsa_bits)


def check_suggestion(n_pool: int, *, selection: str, budget: float, k_pick: int, k_candidates: int,
                     initial_fraction: float, k_members: int, seed: int = 0, **_: Any) -> dict[str, Any]:
    """Parameters of ``03-suggestion`` for a pool of ``n_pool`` training images; returns the
    resolved suggestion-loop settings (:func:`qfcn.suggest.validate_settings`)."""
    full = selection == "full"
    return suggest.validate_settings(
        n_pool, selection=selection, k_pick=k_pick, k_candidates=k_candidates if selection == "suggestive" else None,
        budget=budget, n_initial=None if full else max(1, suggest.count_from_fraction(initial_fraction, n_pool)),
        initial_fraction=None, seed=seed, k_members=k_members if selection in suggest.MODEL_METHODS else None)


def check_training(*, ntq_scheme: str, ntq_bits: int, n_members: int, val_fraction: float,
                   variants: list[str] = (), **_: Any) -> None:
    """Parameters of ``04-quantized-training``."""
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise ValueError(f"variants: unknown {unknown}; expected a subset of {list(VARIANTS)}")
    _count("n_members", n_members, 1)
    _fraction("val_fraction", val_fraction)
    quant.check_scheme(ntq_scheme, ntq_bits)
