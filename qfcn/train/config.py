"""Training configuration: every parameter of a training run as literals, checked on creation.

:class:`TrainConfig` is what notebooks build from their parameters; :func:`extra_steps` and
:func:`float_control_config` define the float control of a quantized run (docs/method.md §7);
:func:`lr_at` is the learning-rate schedule within a phase. Part of :mod:`qfcn.train`'s API.

>>> cfg = TrainConfig(scheme="inq", bits=5, retrain_steps=10)
>>> extra_steps(cfg), float_control_config(cfg).control_steps
(30, 30)
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from qfcn import infer, quant
from qfcn.io import to_jsonable

_OPTIMIZERS = ("adam", "sgd")
_SCHEDULES = ("cosine", "poly", "constant")
_STRATEGIES = ("pruning", "random")
_SELECT = ("val_loss", "val_dice")
#: fields that change how a run executes but not what it computes (not hashed).
_RUNTIME_FIELDS = ("device", "num_workers", "ckpt_every")


def _default_model() -> dict[str, Any]:
    return {"width": 0.25, "n_stages": 4}


def _need_int(cfg: Any, name: str, lo: int) -> None:
    v = getattr(cfg, name)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"TrainConfig.{name}: expected an int >= {lo}, got {v!r}")


def _need_float(cfg: Any, name: str, lo: float, lo_open: bool, hi: float = math.inf) -> None:
    """Check a finite number in (lo, hi] or [lo, hi] and store it as a float."""
    v = getattr(cfg, name)
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if ok:
        ok = (v > lo if lo_open else v >= lo) and v <= hi
    if not ok:
        rel = ">" if lo_open else ">="
        raise ValueError(f"TrainConfig.{name}: expected a finite number {rel} {lo}, got {v!r}")
    object.__setattr__(cfg, name, float(v))


def _need_choice(cfg: Any, name: str, choices: Sequence[str]) -> None:
    if getattr(cfg, name) not in choices:
        raise ValueError(f"TrainConfig.{name}: expected one of {list(choices)}, got {getattr(cfg, name)!r}")


def _need_bool(cfg: Any, name: str) -> None:
    if not isinstance(getattr(cfg, name), bool):
        raise ValueError(f"TrainConfig.{name}: expected True or False, got {getattr(cfg, name)!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Every training parameter, as literals (defaults: a small CPU run).

    Steps are optimizer steps of ``batch_size`` crops of ``crop_size`` pixels; an epoch is
    one pass over ``GlasCrops(samples, n_crops=n_crops)`` (``n_crops`` None: one crop per
    sample, rounded up to whole batches) in an order drawn from ``(seed, epoch)``;
    incomplete last batches are dropped.
    """

    model: dict[str, Any] = field(default_factory=_default_model)  # SAFCN keyword arguments
    crop_size: int = 128
    batch_size: int = 4
    n_crops: int | None = None
    optimizer: str = "adam"  # 'adam' | 'sgd'
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9  # sgd only
    schedule: str = "cosine"  # 'cosine' | 'poly' | 'constant', within each phase
    float_steps: int = 200
    retrain_steps: int = 50  # per quantization step (see extra_steps)
    retrain_lr: float = 1e-4
    control_steps: int = 0  # scheme 'float' only: extra float steps at retrain_lr
    contour_weight: float = 1.0
    scheme: str = "float"  # 'float' | 'inq' | 'uniform'
    bits: int = 32
    iterative_steps: tuple[float, ...] = (0.5, 0.75, 0.875, 1.0)
    per_channel: bool = True
    strategy: str = "pruning"  # INQ partition: 'pruning' (largest first) | 'random'
    seed: int = 0
    device: str = "auto"
    bf16: bool = False  # autocast bfloat16 in training; evaluation is always fp32
    channels_last: bool = True  # NHWC: 1.5-2x faster bf16 steps on CPU (benchmarks/results/throughput.json)
    val_every: int = 0  # 0: validate only at phase ends
    ckpt_every: int = 50
    contour_width: int = 3
    augment: bool = True
    select_best: bool = False  # restore the best-validation float weights after the float phase
    select_metric: str = "val_loss"  # 'val_loss' (lower is better) | 'val_dice' (higher)
    num_workers: int | None = None  # loader processes; None: from the device (train.batches.resolve_workers)

    def __post_init__(self) -> None:
        if not isinstance(self.model, dict):
            raise ValueError(f"TrainConfig.model: expected a dict of SAFCN arguments, got {self.model!r}")
        object.__setattr__(self, "model", dict(self.model))
        for name in ("crop_size", "batch_size", "ckpt_every", "contour_width"):
            _need_int(self, name, 1)
        for name in ("float_steps", "retrain_steps", "control_steps", "val_every", "seed"):
            _need_int(self, name, 0)
        if self.num_workers is not None:
            _need_int(self, "num_workers", 0)
        if self.n_crops is not None:
            _need_int(self, "n_crops", 1)
        _need_float(self, "lr", 0.0, True)
        _need_float(self, "retrain_lr", 0.0, True)
        _need_float(self, "weight_decay", 0.0, False)
        _need_float(self, "momentum", 0.0, False, 0.999999)
        _need_float(self, "contour_weight", 0.0, False)
        _need_choice(self, "optimizer", _OPTIMIZERS)
        _need_choice(self, "schedule", _SCHEDULES)
        _need_choice(self, "strategy", _STRATEGIES)
        _need_choice(self, "select_metric", _SELECT)
        for name in ("per_channel", "bf16", "channels_last", "augment", "select_best"):
            _need_bool(self, name)
        steps = self.iterative_steps
        if not isinstance(steps, (list, tuple)) or not steps or not all(
                isinstance(f, (int, float)) and not isinstance(f, bool) for f in steps):
            raise ValueError(f"TrainConfig.iterative_steps: expected a non-empty list of fractions, got {steps!r}")
        steps = tuple(float(f) for f in steps)
        if any(not 0.0 < f <= 1.0 for f in steps) or any(b <= a for a, b in itertools.pairwise(steps)) or steps[-1] != 1.0:
            raise ValueError(f"TrainConfig.iterative_steps: expected increasing fractions in (0, 1] ending at 1.0, got {steps!r}")
        object.__setattr__(self, "iterative_steps", steps)
        scheme, bits = quant.check_scheme(self.scheme, self.bits)
        object.__setattr__(self, "scheme", scheme)
        object.__setattr__(self, "bits", bits)
        if self.control_steps and scheme != "float":
            raise ValueError(f"TrainConfig.control_steps: only for scheme 'float' (a float control), got scheme {scheme!r}")
        if not isinstance(self.device, str):
            raise ValueError(f"TrainConfig.device: expected 'auto', 'cpu' or 'cuda[:i]', got {self.device!r}")
        infer.resolve_device(self.device)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a dict (e.g. a params file); unknown keys are a ValueError."""
        if not isinstance(d, dict):
            raise ValueError(f"TrainConfig.from_dict: expected a dict, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"TrainConfig: unknown keys {unknown}; expected a subset of {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists); ``from_dict`` inverts it."""
        return to_jsonable(dataclasses.asdict(self))

    def identity(self) -> dict[str, Any]:
        """The fields that decide the result (not device, workers or checkpoint cadence)."""
        d = self.to_dict()
        for k in _RUNTIME_FIELDS:
            d.pop(k)
        return d


def extra_steps(cfg: TrainConfig) -> int:
    """Retraining steps a quantized run adds after the float phase:
    ``retrain_steps * (len(iterative_steps) - 1)`` for every scheme (0 for float)."""
    return 0 if cfg.scheme == "float" else cfg.retrain_steps * (len(cfg.iterative_steps) - 1)


def float_control_config(cfg: TrainConfig) -> TrainConfig:
    """The float control of a quantized config: scheme 'float', same everything else, and
    ``control_steps = extra_steps(cfg)`` extra float steps at ``retrain_lr``. Train it with
    the same ``init`` as the quantized run: it is then the quantized run's step-matched float
    comparison (the same gradient steps, learning rates and crops, without quantization;
    docs/method.md §7). The extra steps do not depend on ``cfg.bits``."""
    return dataclasses.replace(cfg, scheme="float", bits=32, control_steps=extra_steps(cfg))


def lr_at(schedule: str, base_lr: float, step: int, total: int) -> float:
    """Learning rate of step ``step`` (0-based) of a phase of ``total`` steps.

    'constant': base_lr; 'cosine': base_lr * (1 + cos(pi * step / total)) / 2;
    'poly': base_lr * (1 - step / total) ** 0.9.

    >>> lr_at("cosine", 1.0, 5, 10), lr_at("poly", 1.0, 0, 10), lr_at("constant", 0.1, 9, 10)
    (0.5, 1.0, 0.1)
    """
    if schedule not in _SCHEDULES:
        raise ValueError(f"schedule: expected one of {list(_SCHEDULES)}, got {schedule!r}")
    t = min(max(step, 0), total) / max(total, 1)
    if schedule == "constant":
        return base_lr
    if schedule == "cosine":
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * t))
    return base_lr * (1.0 - t) ** 0.9
