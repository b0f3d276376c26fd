"""The uniform controller: fake quantization through ``torch.nn.utils.parametrize`` (docs/method.md §4).

``module.weight`` becomes the fake-quant view (:func:`~qfcn.quant.uniform.uniform_quantize`,
straight-through gradient) of the latent float weight
``module.parametrizations.weight.original`` (the same Parameter object the optimizer
already holds). ``n_steps = 1``: :meth:`UniformQuantizer.step` enables fake quantization.

>>> from torch import nn
>>> layer = nn.Conv2d(1, 1, 1, bias=False)
>>> with torch.no_grad():
...     _ = layer.weight.fill_(0.3)
>>> q = UniformQuantizer(layer, [("", layer)], 4, per_channel=True)
>>> q.step(); q.codes()[""]["codes"].flatten().tolist()  # q = 7 (+ qmax 7)
[14]
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from qfcn.quant.base import WeightQuantizer
from qfcn.quant.common import layer_ch_axis
from qfcn.quant.uniform import qmax, uniform_grid, uniform_quantize, uniform_scale

__all__ = ["UniformFakeQuant", "UniformQuantizer"]


class UniformFakeQuant(nn.Module):
    """Parametrization: ``weight -> uniform_quantize(weight, bits, per_channel, ch_axis)`` when enabled."""

    def __init__(self, bits: int, per_channel: bool, ch_axis: int) -> None:
        super().__init__()
        self.bits, self.per_channel, self.ch_axis = bits, per_channel, ch_axis
        self.enabled = False

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return w
        return uniform_quantize(w, self.bits, self.per_channel, self.ch_axis)


class UniformQuantizer(WeightQuantizer):
    """Uniform fixed-point fake quantization of every layer's weight (see module docstring)."""

    scheme = "uniform"
    n_steps = 1

    def __init__(self, model: nn.Module, layers, bits: int, per_channel: bool) -> None:
        super().__init__(model, layers)
        self.bits, self.per_channel = bits, per_channel
        self._pz: dict[str, UniformFakeQuant] = {}
        for name, m in layers:
            pz = UniformFakeQuant(bits, per_channel, layer_ch_axis(m))
            parametrize.register_parametrization(m, "weight", pz)
            self._pz[name] = pz

    def _get_enabled(self) -> bool:
        return any(pz.enabled for pz in self._pz.values())

    def _set_enabled(self, value: bool) -> None:
        self._check_attached()
        for pz in self._pz.values():
            pz.enabled = value

    def step(self) -> None:
        if self.done:
            super().step()
        self.quantize_all()

    def quantize_all(self) -> None:
        self._set_enabled(True)
        self.step_index = self.n_steps

    def _latent(self, m: nn.Module) -> torch.Tensor:
        return m.parametrizations.weight.original

    def detach(self) -> None:
        if self.attached:
            for _, m in self.layers:
                parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
        super().detach()

    def state_dict(self) -> dict:
        layers = {}
        for name, m in self.layers:
            w = self._latent(m) if self.attached else m.weight
            layers[name] = {"scale": uniform_scale(w, self.bits, self.per_channel, layer_ch_axis(m)).cpu(),
                            "ch_axis": layer_ch_axis(m)}
        return {"scheme": self.scheme, "bits": self.bits, "step_index": self.step_index,
                "per_channel": self.per_channel, "fake_quant_enabled": self.fake_quant_enabled, "layers": layers}

    def load_state_dict(self, state: dict) -> None:
        self._check_attached()
        self._check_state(state)
        if bool(state["per_channel"]) != self.per_channel:
            raise ValueError(f"quantizer state has per_channel={state['per_channel']}, expected {self.per_channel}")
        self._set_enabled(bool(state["fake_quant_enabled"]))
        self.step_index = int(state["step_index"])

    def codes(self) -> dict[str, dict]:
        self._check_attached()
        if not self.fake_quant_enabled:
            raise ValueError("uniform fake quantization is not enabled: call step() or quantize_all() first")
        out = {}
        with torch.no_grad():
            for name, m in self.layers:
                ax = layer_ch_axis(m)
                w = self._latent(m)
                scale = uniform_scale(w, self.bits, self.per_channel, ax)
                q, s = uniform_grid(w, self.bits, scale, self.per_channel, ax, ste=False)
                out[name] = {"codes": (q + qmax(self.bits)).to(torch.uint8), "scale": scale,
                             "ch_axis": ax, "per_channel": self.per_channel}
        return out
