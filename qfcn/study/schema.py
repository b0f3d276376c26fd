"""The params-file schema: pydantic models DERIVED from the notebooks' parameters cells.

Every section model (``data``, ``ensemble``, ...) has one optional field per parameter of its
notebook, typed after the parameter's default (``bool``, ``int``, ``float`` (an int is accepted),
``str``, ``list[<type of the first element>]``; a ``None`` default accepts anything); models are
strict and forbid extra keys, so a new notebook parameter flows through without an edit here.
A few parameters also get a declared range or set of choices (:data:`BOUNDS`, the ``choices``
argument), applied where a notebook declares them. The batch model accepts, per run point and
per grid axis, every parameter of the per-run notebooks (the chain: docs/method.md §5, §6).

:func:`first_error` turns a pydantic ``ValidationError`` into one line: the key's full path
(``batch.runs[0].ntq_bits``), the value and what was expected.

>>> models = build_models({"data": {"n_train": 24, "scale": 0.5}}, chain=("data",), choices={})
>>> from pydantic import ValidationError
>>> try:
...     models["file"].model_validate({"data": {"n_train": "3"}})
... except ValidationError as exc:
...     print(first_error(exc, models))
data.n_train = '3': expected int (like the notebook default 24)
"""
from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationError, create_model

from qfcn.data.prepare import SCALE_RANGE, VAL_FRACTION_MAX

STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
# declared ranges, applied to a parameter of this name wherever a notebook declares it
BOUNDS: dict[str, dict[str, float]] = {
    "width": {"gt": 0.0}, "n_stages": {"ge": 1, "le": 8}, "crop_size": {"ge": 16}, "batch_size": {"ge": 1},
    "lr": {"gt": 0.0}, "float_steps": {"ge": 1}, "retrain_steps": {"ge": 0}, "round_float_steps": {"ge": 0},
    "k_members": {"ge": 2}, "n_members": {"ge": 1}, "k_pick": {"ge": 1}, "k_candidates": {"ge": 1},
    "n_train": {"ge": 1}, "n_test_a": {"ge": 1}, "n_test_b": {"ge": 1}, "scale": {"ge": SCALE_RANGE[0], "le": SCALE_RANGE[1]},
    "difficulty": {"ge": 0.0, "le": 1.0}, "contour_width": {"ge": 1}, "min_area": {"ge": 0},
    "min_glands": {"ge": 0}, "n_preview": {"ge": 0}, "n_show": {"ge": 0}, "n_overlays": {"ge": 0},
    "n_disagreement_images": {"ge": 0}, "seed": {"ge": 0},
    "budget": {"gt": 0.0, "le": 1.0}, "initial_fraction": {"gt": 0.0, "lt": 1.0}, "val_fraction": {"gt": 0.0, "le": VAL_FRACTION_MAX},
}
BATCH_KEYS = ("seeds", "runs", "grid")


def _type_of(default: Any) -> Any:
    """The strict type of a parameter with this default (a list: typed after its first element)."""
    if default is None:
        return Any
    if isinstance(default, list):
        return list[_type_of(default[0]) if default else Any]
    if isinstance(default, dict):
        return dict[str, Any]
    return type(default)


def _field(name: str, default: Any, choices: dict[str, tuple]) -> Any:
    typ = _type_of(default)
    if name in choices:
        lit = Literal[tuple(choices[name])]
        typ = list[lit] if isinstance(default, list) else lit
    elif name in BOUNDS and typ in (int, float):
        typ = Annotated[typ, Field(**BOUNDS[name])]
    return (typ, None)  # optional: a missing key keeps the notebook default; None itself is refused


def build_models(defaults: dict[str, dict[str, Any]], *, chain: tuple[str, ...], choices: dict[str, tuple],
                 runner_keys: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Models of one notebook chain: ``defaults`` is section -> {parameter: default}; ``chain``
    the sections a batch point parameterises. Returns {section: model, "run": one batch point,
    "grid": the grid, "batch": the batch, "file": the whole file, "defaults": defaults}."""
    models: dict[str, Any] = {"defaults": defaults}
    for sec, params in defaults.items():
        fields = {k: _field(k, v, choices) for k, v in params.items() if k not in runner_keys}
        models[sec] = create_model(f"Section_{sec}", __config__=STRICT, **fields)
    merged: dict[str, Any] = {}
    for sec in chain:
        merged.update({k: v for k, v in defaults[sec].items() if k not in runner_keys})
    point = {k: _field(k, v, choices) for k, v in merged.items()}
    models["run"] = create_model("RunPoint", __config__=STRICT, name=(str, None), **point)
    grid = {k: (Annotated[list[t[0]], Field(min_length=1)], None) for k, t in point.items()}
    models["grid"] = create_model("Grid", __config__=STRICT, **grid)
    models["batch"] = create_model(
        "Batch", __config__=STRICT, seeds=(Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)], None),
        runs=(Annotated[list[models["run"]], Field(min_length=1)], None), grid=(models["grid"], None))
    models["file"] = create_model("ParamsFile", __config__=STRICT, batch=(models["batch"], None),
                                  **{sec: (models[sec], None) for sec in defaults})
    return models


def _path(loc: tuple) -> str:
    """Where a value sits in a params file, on one line: a key that is empty or has characters
    that don't print (a newline) is shown as its repr.

    >>> _path(("training", "variants", 1)), _path(("",))
    ('training.variants[1]', "''")
    >>> print(_path(("data", "a\\nb")))
    data.'a\\nb'
    """
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        name = str(part)
        if not name or not name.isprintable():
            name = repr(part)
        out += f".{name}" if out else name
    return out


def _expected_keys(models: dict[str, Any], loc: tuple) -> list[str]:
    """The keys allowed at the mapping that holds ``loc[-1]``."""
    model = models["file"]
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part)
        model = {"batch": models["batch"], "runs": models["run"], "grid": models["grid"]}.get(part, models.get(part))
        if info is None or model is None:
            return []
    return sorted(model.model_fields)


_WANT = {"int_type": "int", "float_type": "float", "bool_type": "bool (true or false)", "string_type": "str",
         "list_type": "a list", "model_type": "a mapping", "dict_type": "a mapping"}


def _default_of(models: dict[str, Any], loc: tuple) -> Any:
    """The notebook default of the parameter named last in ``loc`` (NaN when none is)."""
    names = [p for p in loc if isinstance(p, str)]
    for params in ([models["defaults"][names[0]]] if names and names[0] in models["defaults"] else []) + list(
            models["defaults"].values()):
        if names and names[-1] in params:
            return params[names[-1]]
    return math.nan


def first_error(exc: ValidationError, models: dict[str, Any]) -> str:
    """One line for the first error of ``exc`` (and how many more there are)."""
    errors = exc.errors(include_url=False)
    err = errors[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal["))))
    where = _path(loc)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    if err["type"] == "extra_forbidden":
        what = "section" if len(loc) == 1 else "key"
        return f"{where}: unknown {what} {loc[-1]!r}; expected one of {_expected_keys(models, loc)}{more}"
    value = err.get("input")
    if err["type"] in _WANT:
        default = _default_of(models, loc)
        like = "" if err["type"] in ("list_type", "model_type", "dict_type") or default is math.nan \
            else f" (like the notebook default {default!r})"
        return f"{where} = {value!r}: expected {_WANT[err['type']]}{like}{more}"
    return f"{where} = {value!r}: {err['msg'][0].lower()}{err['msg'][1:]}{more}"
