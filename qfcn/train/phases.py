"""The phases of a training run, in order (docs/method.md §4).

``float`` (unless skipped), ``control`` (a float control's extra steps), then one phase per
quantization step ``<scheme>_<i>``, each starting with ``quantizer.step()``.

>>> cfg = TrainConfig(scheme="inq", bits=5, float_steps=20, retrain_steps=10)
>>> [(p.name, p.steps) for p in _plan(cfg, skip_float=False)]
[('float', 20), ('inq_1', 10), ('inq_2', 10), ('inq_3', 10), ('inq_4', 0)]

A history (``history.json``: ``{"step", "phase", ...}`` per step) numbers its steps across
phases; :func:`phase_starts` finds where each phase after ``float`` begins, the boundaries the
loss plots mark (:func:`qfcn.figures.mark_phases`):

>>> phase_starts([{"step": 1, "phase": "float"}, {"step": 21, "phase": "inq_1"}, {"step": 31, "phase": "inq_2"}])
[(21, 'inq_1'), (31, 'inq_2')]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qfcn.train.config import TrainConfig, extra_steps


@dataclass
class _Phase:
    name: str
    steps: int
    lr: float
    quant_step: bool  # call quantizer.step() when the phase starts


def _plan(cfg: TrainConfig, skip_float: bool) -> list[_Phase]:
    phases = [] if skip_float else [_Phase("float", cfg.float_steps, cfg.lr, False)]
    if cfg.scheme == "float":
        if cfg.control_steps:
            phases.append(_Phase("control", cfg.control_steps, cfg.retrain_lr, False))
        return phases
    if cfg.scheme == "inq":
        n = len(cfg.iterative_steps)
        segments = [cfg.retrain_steps] * (n - 1) + [0]
    else:  # one step (fake quant on), then all the extra steps
        segments = [extra_steps(cfg)]
    phases += [_Phase(f"{cfg.scheme}_{i + 1}", s, cfg.retrain_lr, True) for i, s in enumerate(segments)]
    return phases


def phase_starts(rows: Sequence[Mapping[str, Any]]) -> list[tuple[int, str]]:
    """``(step, phases)`` where each phase other than ``float`` starts (the float control's
    ``control``, each ``<scheme>_<i>`` retraining phase): the earliest ``step`` of the phase over
    ``rows`` (one history, or the rows of several members or variants on one step axis), in
    step order; phases that start at the same step share one entry (``"control, inq_1"``)."""
    starts: dict[str, int] = {}
    for r in rows:
        if r["phase"] != "float" and (r["phase"] not in starts or r["step"] < starts[r["phase"]]):
            starts[r["phase"]] = int(r["step"])
    by_step: dict[int, list[str]] = {}
    for phase, step in sorted(starts.items(), key=lambda kv: (kv[1], kv[0])):
        by_step.setdefault(step, []).append(phase)
    return [(step, ", ".join(phases)) for step, phases in sorted(by_step.items())]
