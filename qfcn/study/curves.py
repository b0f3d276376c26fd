"""Training curves of a study's final networks, read from the members' ``history.json``.

:mod:`qfcn.train` writes one ``history.json`` per trained member (``final/<variant>/member_<m>/``):
a list of ``{"step", "phase", "loss", "lr"}`` per gradient step, with phase-end validation entries
that carry no ``loss``. A derived variant (the float control, NTQ) starts from its float member's
weights with its own step counter, so its steps are shifted here by that member's float steps:
the x axis is the total number of gradient steps the network has had.

Only the variants that train are read: ``float``, ``float_control`` and the NTQ variant ``ntq``
(the other scheme retrains too but is left out of the figure; PTQ does not train). Rows:
``{"variant", "member", "step", "phase", "loss"}``; :func:`study_curves` adds the batch-point
``name`` and ``seed``.

>>> import json, pathlib, tempfile
>>> run = pathlib.Path(tempfile.mkdtemp())
>>> for variant, hist in (("float", [{"step": 1, "phase": "float", "loss": 0.9}, {"step": 2, "phase": "float",
...                        "loss": 0.7}, {"step": 2, "phase": "float", "val_loss": 0.8}]),
...                       ("ntq", [{"step": 1, "phase": "inq_1", "loss": 0.8}])):
...     (run / "final" / variant / "member_0").mkdir(parents=True)
...     _ = (run / "final" / variant / "member_0" / "history.json").write_text(json.dumps(hist))
>>> [(r["variant"], r["step"], r["loss"]) for r in run_curves(run)]
[('float', 1, 0.9), ('float', 2, 0.7), ('ntq', 3, 0.8)]
>>> from qfcn.train import phase_starts  # where the figure marks each phase
>>> phase_starts(run_curves(run))
[(3, 'inq_1')]
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from qfcn.study import records, runs

CURVE_VARIANTS = ("float", "float_control", "ntq")


def _history(path: Path) -> list[dict[str, Any]]:
    return [h for h in json.loads(path.read_text()) if "loss" in h]


def run_curves(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Per-step training loss of every member of :data:`CURVE_VARIANTS` in ``run_dir/final``
    (module docstring); members without a history are skipped."""
    final = Path(run_dir) / "final"
    rows, float_steps = [], {}
    for variant in CURVE_VARIANTS:
        for member_dir in sorted((final / variant).glob("member_*")):
            path = member_dir / "history.json"
            if not path.is_file():
                continue
            member = int(member_dir.name.rsplit("_", 1)[1])
            hist = _history(path)
            offset = 0 if variant == "float" else float_steps.get(member, 0)
            rows += [dict(variant=variant, member=member, step=int(h["step"]) + offset, phase=h["phase"],
                          loss=float(h["loss"])) for h in hist]
            if variant == "float":
                float_steps[member] = max((int(h["step"]) for h in hist), default=0)
    return rows


def study_curves(study_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """:func:`run_curves` of every finished run of a study, with the batch point's ``name`` and
    ``seed`` (runs without a quantized variant contribute their float members only)."""
    out = []
    for run_dir in records.run_dirs(study_dir):
        point = runs.done_point(run_dir) or {}
        name, seed = point.get("name", Path(run_dir).name), point.get("seed")
        out += [{**r, "name": name, "seed": seed} for r in run_curves(run_dir)]
    return out
