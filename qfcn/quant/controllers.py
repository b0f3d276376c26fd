"""Attach a weight quantizer to a model, find the one attached (docs/method.md §4).

One controller interface for every scheme (:class:`~qfcn.quant.base.WeightQuantizer`)::

    q = attach_quantizer(model, "inq", 5)      # or ("uniform", 5), ("float", 32)
    q.attach_optimizer(optimizer)
    for _ in range(q.n_steps):
        q.step()                                # quantize + freeze the next partition
        train_some_epochs(model, optimizer)     # retrain the float rest
    q.detach()                                  # plain model, weights on the grid

Bit-width 32 with any scheme means float (a no-op controller that is never attached).
The controller lives on the model's layers, so ``copy.deepcopy(model)`` carries it:

>>> import copy
>>> from qfcn.models import SAFCN
>>> net = SAFCN(width=0.25, n_stages=2)
>>> q = attach_quantizer(net, "inq", 5); q.step()
>>> twin = copy.deepcopy(net)
>>> attached_quantizer(twin) is not q, attached_quantizer(twin).step_index
(True, 1)
"""

from __future__ import annotations

from typing import Iterable

from torch import nn
from torch.nn.utils import parametrize

from qfcn.quant.base import STRATEGIES, FloatQuantizer, WeightQuantizer, check_iterative_steps, layer_controller
from qfcn.quant.common import check_scheme, quantized_layers
from qfcn.quant.inq_controller import INQQuantizer
from qfcn.quant.uniform_controller import UniformQuantizer

__all__ = ["attach_quantizer", "attached_quantizer"]


def attached_quantizer(model: nn.Module) -> WeightQuantizer | None:
    """The quantizer controller attached to ``model``'s layers, or None (float controllers are never attached)."""
    found = {}
    for _, m in quantized_layers(model):
        ctl = layer_controller(m)
        if ctl is not None:
            found[id(ctl)] = ctl
    if len(found) > 1:
        raise ValueError("model's layers are quantized by several different controllers")
    return next(iter(found.values()), None)


def _check_options(model: nn.Module, steps: Iterable[float], strategy: str, seed: int) -> tuple[float, ...]:
    steps = check_iterative_steps(steps)
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    return steps


def _check_free(layers: list[tuple[str, nn.Module]]) -> None:
    if not layers:
        raise ValueError("model has no nn.Conv2d / nn.ConvTranspose2d layer to quantize")
    for name, m in layers:
        other = layer_controller(m)
        if other is not None or parametrize.is_parametrized(m, "weight"):
            what = f"a {other.scheme} {other.bits}-bit quantizer" if other else "a parametrization"
            raise ValueError(f"layer {name!r} is already quantized by {what}: call .detach() before attaching again")


def attach_quantizer(
    model: nn.Module,
    scheme: str,
    bits: int,
    *,
    per_channel: bool = True,
    iterative_steps: Iterable[float] = (0.5, 0.75, 0.875, 1.0),
    strategy: str = "pruning",
    seed: int = 0,
) -> WeightQuantizer:
    """Attach a weight quantizer to every Conv2d / ConvTranspose2d of ``model``; return its controller.

    ``scheme`` in :data:`~qfcn.quant.common.SCHEMES`; ``bits == 32`` (or ``scheme == 'float'``)
    gives a no-op :class:`FloatQuantizer`. ``per_channel`` applies to 'uniform';
    ``iterative_steps`` (cumulative fractions ending at 1.0), ``strategy`` ('pruning' =
    largest |w| first, or 'random') and ``seed`` apply to 'inq'. All are validated whatever
    the scheme. Attaching to a model that already has a quantizer attached raises ValueError.

    >>> from qfcn.models import SAFCN
    >>> q = attach_quantizer(SAFCN(width=0.25, n_stages=2), "inq", 5)
    >>> q.n_steps, q.done, q.step_index
    (4, False, 0)
    """
    scheme, bits = check_scheme(scheme, bits)
    steps = _check_options(model, iterative_steps, strategy, seed)
    if scheme == "float":
        return FloatQuantizer(model)
    layers = quantized_layers(model)
    _check_free(layers)
    if scheme == "inq":
        ctl: WeightQuantizer = INQQuantizer(model, layers, bits, steps, strategy, seed)
    else:
        ctl = UniformQuantizer(model, layers, bits, bool(per_channel))
    ctl.bind()
    return ctl
