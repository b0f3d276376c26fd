"""The phases of a training run, in order (docs/method.md §4).

``float`` (unless skipped), ``control`` (a float control's extra steps), then one phase per
quantization step ``<scheme>_<i>``, each starting with ``quantizer.step()``.

>>> cfg = TrainConfig(scheme="inq", bits=5, float_steps=20, retrain_steps=10)
>>> [(p.name, p.steps) for p in _plan(cfg, skip_float=False)]
[('float', 20), ('inq_1', 10), ('inq_2', 10), ('inq_3', 10), ('inq_4', 0)]
"""

from __future__ import annotations

from dataclasses import dataclass

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
