"""The controller interface shared by every scheme, and where a controller lives on the model.

A controller (:class:`WeightQuantizer`) quantizes the ``weight`` of a model's conv layers
(docs/method.md §4). It is kept ON the model: every layer it quantizes holds it as the
plain attribute ``weight_quantizer`` (:data:`LAYER_ATTR`), so ``copy.deepcopy(model)``
carries a copy of the controller (with its masks, levels and random stream) bound to the
copied layers, and :func:`layer_controller` finds it from any layer. It is a plain
attribute, not a submodule: ``model.parameters()``, ``model.state_dict()`` (keys and
metadata) and ``named_modules()`` are exactly those of the plain model.

>>> from torch import nn
>>> q = FloatQuantizer(nn.Conv2d(1, 1, 1))
>>> q.done, q.n_steps, q.layers
(True, 0, [])
"""

from __future__ import annotations

import copy
from typing import Iterable

import torch
from torch import nn

__all__ = ["LAYER_ATTR", "STRATEGIES", "WeightQuantizer", "FloatQuantizer", "layer_controller",
           "check_iterative_steps"]

#: attribute of a quantized layer that holds its controller
LAYER_ATTR = "weight_quantizer"
#: INQ partition strategies: largest |w| first, or seeded random
STRATEGIES = ("pruning", "random")
# attributes of a controller that are bound to objects outside the model (hooks): never copied
_HANDLES = ("_opt_handles", "_grad_handles")


def layer_controller(layer: nn.Module) -> "WeightQuantizer | None":
    """The controller that quantizes ``layer``'s weight, or None."""
    return vars(layer).get(LAYER_ATTR)


def check_iterative_steps(steps: Iterable[float]) -> tuple[float, ...]:
    """INQ cumulative fractions as a tuple of floats, strictly increasing in ``(0, 1]``, ending at 1.0.

    >>> check_iterative_steps([0.5, 0.75, 1])
    (0.5, 0.75, 1.0)
    """
    try:
        out = tuple(float(f) for f in steps)
    except (TypeError, ValueError):
        raise ValueError(f"iterative_steps must be a sequence of fractions, got {steps!r}") from None
    if not out or any(not 0 < f <= 1 for f in out) or any(b <= a for a, b in zip(out, out[1:])) or out[-1] != 1.0:
        raise ValueError(
            f"iterative_steps must be strictly increasing cumulative fractions in (0, 1] ending at 1.0, got {steps!r}"
        )
    return out


class WeightQuantizer:
    """Common interface of the controllers returned by ``attach_quantizer``.

    Attributes: ``scheme`` (str), ``bits`` (int), ``layers`` (list of ``(name, module)``),
    ``n_steps`` (partition steps), ``step_index`` (steps done), ``attached`` (bool).
    ``copy.deepcopy`` gives an independent controller: optimizer hooks are not copied
    (call :meth:`attach_optimizer` on the copy), gradient hooks are re-made on the copy's weights.
    """

    scheme: str = "float"
    bits: int = 32
    n_steps: int = 0

    def __init__(self, model: nn.Module, layers: list[tuple[str, nn.Module]]) -> None:
        self.model = model
        self.layers = layers
        self.step_index = 0
        self.attached = True
        self._opt_handles: list = []

    def bind(self) -> None:
        """Store this controller on each of its layers (:data:`LAYER_ATTR`)."""
        for _, m in self.layers:
            setattr(m, LAYER_ATTR, self)

    # -- to override
    def step(self) -> None:
        """Quantize the next partition (INQ) / enable fake quantization (uniform)."""
        raise ValueError(f"{self.scheme} quantizer has no step left (n_steps={self.n_steps})")

    def quantize_all(self) -> None:
        """Quantize every remaining weight at once (post-training quantization, no retraining)."""

    def enforce(self) -> None:
        """Rewrite frozen weights to their quantized values (INQ); no-op otherwise."""

    @property
    def done(self) -> bool:
        """True when every step has been taken."""
        return self.step_index >= self.n_steps

    @property
    def fake_quant_enabled(self) -> bool:
        """Whether quantized weights are in effect on the forward pass (settable for 'uniform')."""
        return self._get_enabled()

    @fake_quant_enabled.setter
    def fake_quant_enabled(self, value: bool) -> None:
        self._set_enabled(bool(value))

    def _get_enabled(self) -> bool:
        return False

    def _set_enabled(self, value: bool) -> None:
        pass  # float: nothing to enable, documented no-op

    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Register what keeps frozen weights fixed under ``optimizer`` (INQ); no-op otherwise."""
        self._check_attached()

    def detach(self) -> None:
        """Remove hooks / parametrizations; the quantized values stay in the weights."""
        for h in self._opt_handles:
            h.remove()
        self._opt_handles.clear()
        for _, m in self.layers:
            if layer_controller(m) is self:
                delattr(m, LAYER_ATTR)
        self.attached = False

    def state_dict(self) -> dict:
        """Plain python + tensors (loadable with ``torch.load(weights_only=True)``)."""
        return {"scheme": self.scheme, "bits": self.bits, "step_index": self.step_index, "layers": {}}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` output (load the model's own state dict FIRST)."""
        self._check_state(state)

    def codes(self) -> dict[str, dict]:
        """Per layer: integer codes (uint8, weight shape) and exponent ``n1`` or ``scale``."""
        return {}

    # -- copying
    def __deepcopy__(self, memo: dict) -> "WeightQuantizer":
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        for key, value in vars(self).items():
            setattr(new, key, [] if key in _HANDLES else copy.deepcopy(value, memo))
        new._after_deepcopy(self, memo)
        return new

    def _after_deepcopy(self, original: "WeightQuantizer", memo: dict) -> None:
        """Re-make what :meth:`__deepcopy__` did not copy (hooks); ``memo`` maps old objects to new."""

    # -- helpers
    def _check_attached(self) -> None:
        if not self.attached:
            raise ValueError(f"this {self.scheme} quantizer was detached; attach a new one")

    def _check_state(self, state: dict) -> None:
        if not isinstance(state, dict) or "scheme" not in state or "bits" not in state:
            raise ValueError("quantizer state must be a dict from WeightQuantizer.state_dict()")
        if (state["scheme"], state["bits"]) != (self.scheme, self.bits):
            raise ValueError(
                f"quantizer state is for scheme={state['scheme']!r} bits={state['bits']}, "
                f"expected scheme={self.scheme!r} bits={self.bits}"
            )
        names = set(state.get("layers", {}))
        mine = {n for n, _ in self.layers}
        if names != mine:
            raise ValueError(
                f"quantizer state layers do not match the model: missing {sorted(mine - names)[:5]}, "
                f"unexpected {sorted(names - mine)[:5]}"
            )

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(scheme={self.scheme!r}, bits={self.bits}, layers={len(self.layers)}, "
                f"step={self.step_index}/{self.n_steps}, attached={self.attached})")


class FloatQuantizer(WeightQuantizer):
    """No-op controller for ``scheme='float'`` or ``bits=32``: ``done=True``, ``n_steps=0``, no layers."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model, [])
