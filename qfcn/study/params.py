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

Papermill only warns on an unknown parameter, so a file is validated against a schema DERIVED
from the notebooks' parameters cells (:mod:`qfcn.study.schema`: pydantic models, strict, extra
keys forbidden, declared ranges and choices): an error names the file, the key's full path and
what was expected. Duplicate YAML keys, an empty file, an empty ``batch``, ``runs`` or grid axis,
and two batch points that share a name and seed are errors too (:class:`ParamsError`).
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
>>> check_training(ntq_scheme="inq", ntq_bits=5, n_members=1, variants=["nope"])
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
from pydantic import ValidationError

from qfcn import quant, suggest, train
from qfcn.train import VARIANTS
from qfcn.study import records, schema
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
LABELS = ("instances", "components")  # notebook 01's ``labels`` (docs/method.md §2)
CHOICES: dict[str, tuple] = {  # parameters with a fixed set of values, wherever a notebook declares them
    "selection": tuple(suggest.METHODS), "qsa_scheme": tuple(quant.SCHEMES), "ntq_scheme": tuple(quant.SCHEMES),
    "metric": tuple(records.HEADLINE), "labels": LABELS, "variants": tuple(VARIANTS),
}


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


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, but a key given twice in one mapping is an error (YAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise ParamsError(f"line {key_node.start_mark.line + 1}: key {key!r} is given twice")
            seen.add(key)
        return super().construct_mapping(node, deep)


def models(notebooks_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """The pydantic models of the params file of this notebook chain (:func:`qfcn.study.schema.build_models`)."""
    return _models(str(Path(notebooks_dir if notebooks_dir is not None else NOTEBOOKS).resolve()))


@lru_cache(maxsize=None)
def _models(notebooks_dir: str) -> dict[str, Any]:
    defaults = {sec: notebook_defaults(nb, notebooks_dir) for sec, nb in SECTIONS.items()}
    return schema.build_models(defaults, chain=CHAIN, choices=CHOICES, runner_keys=RUNNER_PARAMETERS)


def chain_defaults(notebooks_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Defaults of every parameter of the per-run notebooks (02, 03, 04), merged."""
    merged: dict[str, Any] = {}
    for section in CHAIN:
        merged.update(notebook_defaults(SECTIONS[section], notebooks_dir))
    return merged


def _runner_keys(source: str, params: dict[str, Any]) -> None:
    batch = params.get("batch") if isinstance(params.get("batch"), dict) else {}
    places = [(sec, v) for sec, v in params.items() if sec != "batch" and isinstance(v, dict)]
    run_list = batch.get("runs") if isinstance(batch.get("runs"), list) else []  # other types: the schema names them
    places += [(f"batch.runs[{i}]", p) for i, p in enumerate(run_list) if isinstance(p, dict)]
    places += [("batch.grid", batch["grid"])] if isinstance(batch.get("grid"), dict) else []
    for where, values in places:
        for key in sorted(set(values) & RUNNER_PARAMETERS):
            raise ParamsError(f"{source}: {where}.{key}: {key!r} is set by the runner (--out/--data), not by a params file")


def validate(params: Any, source: str = "params", notebooks_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Check a loaded params dict against the schema; return it with empty sections as {}.
    Raises :class:`ParamsError` (one line: the file, the key's full path, what was expected)."""
    if not isinstance(params, dict) or not params:
        raise ParamsError(f"{source}: expected a mapping of sections {sorted([*SECTIONS, 'batch'])}, got "
                          f"{'an empty file' if not params else type(params).__name__}")
    params = {k: ({} if v is None and k in SECTIONS else v) for k, v in params.items()}
    if "batch" in params and not params["batch"]:
        raise ParamsError(f"{source}: batch is empty; give seeds, runs or grid (or leave batch out for one run per seed 0)")
    grid = params["batch"].get("grid", 0) if isinstance(params.get("batch"), dict) else 0
    if grid is None or grid == {}:
        raise ParamsError(f"{source}: batch.grid is empty; give at least one parameter with a list of values")
    _runner_keys(source, params)
    try:
        models(notebooks_dir)["file"].model_validate(params)
    except ValidationError as exc:
        raise ParamsError(f"{source}: {schema.first_error(exc, models(notebooks_dir))}") from None
    points = batch_points(params)
    seen: dict[tuple, dict[str, Any]] = {}
    for p in points:
        other = seen.setdefault((p["name"], p["seed"]), p)
        if other is not p:
            how = "with other parameters" if other != p else "twice"
            raise ParamsError(f"{source}: batch: run name {p['name']!r} (seed {p['seed']}) is given {how}; "
                              "give every configuration its own name")
    return params


def load(path: str | os.PathLike, notebooks_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Read and validate a params YAML file."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file {path} does not exist")
    try:
        params = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except ParamsError as exc:
        raise ParamsError(f"params file {path}: {exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ParamsError(f"params file {path} is not valid YAML: {' '.join(str(exc).split())}") from None
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
    _bits("qsa_bits", qsa_scheme, qsa_bits)


def check_suggestion(n_pool: int, *, selection: str, budget: float, k_pick: int, k_candidates: int,
                     initial_fraction: float, k_members: int, seed: int = 0, **_: Any) -> dict[str, Any]:
    """Parameters of ``03-suggestion`` for a pool of ``n_pool`` training images; returns the
    resolved suggestion-loop settings (:func:`qfcn.suggest.validate_settings`)."""
    full = selection == "full"
    return suggest.validate_settings(
        n_pool, selection=selection, k_pick=k_pick, k_candidates=k_candidates if selection == "suggestive" else None,
        budget=budget, n_initial=None if full else max(1, suggest.count_from_fraction(initial_fraction, n_pool)),
        initial_fraction=None, seed=seed, k_members=k_members if selection in suggest.MODEL_METHODS else None)


def check_training(*, ntq_scheme: str, ntq_bits: int, n_members: int, variants: list[str] = (),
                   extra_ntq_bits: list[int] = (), **_: Any) -> None:
    """Parameters of ``04-quantized-training``."""
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise ValueError(f"variants: unknown {unknown}; expected a subset of {list(VARIANTS)}")
    _count("n_members", n_members, 1)
    _bits("ntq_bits", ntq_scheme, ntq_bits)
    train.check_extra_bits(ntq_scheme, extra_ntq_bits)


def _bits(name: str, scheme: str, bits: Any) -> None:
    """:func:`qfcn.quant.check_scheme`, with the parameter's name in the message."""
    try:
        quant.check_scheme(scheme, bits)
    except ValueError as exc:
        raise ValueError(f"{name}={bits!r}: {exc}") from None


def check_network(section: str, values: dict[str, Any], scheme: str, bits: int) -> None:
    """The training settings of a per-run notebook, as :class:`qfcn.train.TrainConfig` checks them,
    and its ``disagreement_bits`` / ``size_bits`` (INQ bit-widths); ValueError naming ``<section>.<key>``."""
    keys = ("crop_size", "batch_size", "lr", "float_steps", "retrain_steps", "retrain_lr", "bf16")
    try:
        train.TrainConfig(model=dict(width=values.get("width"), n_stages=values.get("n_stages")), scheme=scheme,
                          bits=bits, **{k: values[k] for k in keys if k in values})
    except ValueError as exc:
        raise ValueError(str(exc).replace("TrainConfig.", f"{section}.")) from None
    for key in ("disagreement_bits", "size_bits"):
        for b in values.get(key, []):
            _bits(f"{section}.{key}", "inq", b)
