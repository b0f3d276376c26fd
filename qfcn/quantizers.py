"""Quantizer controllers: attach a scheme to a model's conv weights, step it, detach it.

One interface for every scheme (:class:`WeightQuantizer`): :func:`attach_quantizer` returns a
:class:`FloatQuantizer` (bit-width 32), an :class:`INQQuantizer` (incremental partitions,
largest magnitudes first, frozen by gradient masks and an optimizer post-hook) or a
:class:`UniformQuantizer` (fake quantization through ``torch.nn.utils.parametrize`` with a
straight-through estimator). The quantizer functions themselves live in :mod:`qfcn.quant`,
which re-exports everything here.
"""
from __future__ import annotations

import weakref
from typing import Iterable

import torch
from torch import nn
from torch.nn.utils import parametrize

from qfcn.quant import (_qmax, _uniform_q, check_scheme, inq_encode, inq_n1, inq_quantize, layer_ch_axis, quantized_layers, uniform_quantize, uniform_scale)

# layer module -> the controller that quantizes it (weak: a dropped model frees its entry)
_REGISTRY: "weakref.WeakKeyDictionary[nn.Module, WeightQuantizer]" = weakref.WeakKeyDictionary()
_STRATEGIES = ("pruning", "random")


def attached_quantizer(model: nn.Module) -> "WeightQuantizer | None":
    """The quantizer controller attached to ``model``'s layers, or None (float controllers are never attached)."""
    found = {id(_REGISTRY[m]): _REGISTRY[m] for _, m in quantized_layers(model) if m in _REGISTRY}
    if len(found) > 1:
        raise ValueError("model's layers are quantized by several different controllers")
    return next(iter(found.values()), None)


def _check_iterative_steps(steps: Iterable[float]) -> tuple[float, ...]:
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
    """Common interface of the controllers returned by :func:`attach_quantizer`.

    Attributes: ``scheme`` (str), ``bits`` (int), ``layers`` (list of ``(name, module)``),
    ``n_steps`` (partition steps), ``step_index`` (steps done), ``attached`` (bool).
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
            if _REGISTRY.get(m) is self:
                del _REGISTRY[m]
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


def _kth_largest(bits: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k``-th largest of int32 ``bits`` (>= 0 where eligible, < 0 excluded), by radix select.

    One ``bincount`` over the top 16 bits finds the bucket holding the k-th largest value,
    then ``kthvalue`` runs on that bucket only: about 3x faster than ``kthvalue`` on the
    whole tensor (CPU), exact.
    """
    hi = bits.bitwise_right_shift(16).clamp_(min=-1).add_(1)  # excluded -> bucket 0
    counts = torch.bincount(hi, minlength=32769)
    above_or_in = counts.flip(0).cumsum(0)  # [i]: elements in buckets >= 32768 - i
    idx = int(torch.searchsorted(above_or_in, torch.tensor([k], device=bits.device)))
    bucket = 32768 - idx
    above = int(above_or_in[idx]) - int(counts[bucket])
    sub = bits[hi == bucket]
    return torch.kthvalue(sub.cpu() if sub.is_cuda else sub, sub.numel() - (k - above) + 1).values.to(bits.device)


class INQQuantizer(WeightQuantizer):
    """Incremental network quantization (see module docstring); use :func:`attach_quantizer`.

    Per layer: ``n1`` fixed from the float weights at attach time, a boolean ``mask`` of
    quantized (frozen) weights and their quantized values. :meth:`step` quantizes, per
    layer, the largest-magnitude (``strategy='pruning'``) or randomly chosen
    (``'random'``, seeded) not-yet-quantized weights up to the next cumulative fraction.
    Frozen weights get a zero gradient (tensor hook) and are rewritten after every
    ``optimizer.step()`` registered through :meth:`attach_optimizer` (weight decay and
    momentum cannot move them). ``fake_quant_enabled`` is True once a step was taken and
    cannot be toggled (the weights are quantized in place). Weights must be float32.

    Implementation: masks are also kept as int32 bit masks so that freezing, gradient
    masking and the rewrite are branch-free bitwise selects (``torch.where`` /
    ``masked_fill`` with a scattered boolean mask are several times slower on CPU).
    """

    scheme = "inq"

    def __init__(self, model: nn.Module, layers, bits: int, iterative_steps, strategy: str, seed: int) -> None:
        super().__init__(model, layers)
        for name, m in layers:
            if m.weight.dtype != torch.float32:
                raise ValueError(f"INQ needs float32 weights; layer {name!r} has {m.weight.dtype}")
        self.bits = bits
        self.iterative_steps = iterative_steps
        self.n_steps = len(iterative_steps)
        self.strategy = strategy
        self.seed = seed
        self._gen = torch.Generator().manual_seed(seed)
        self.n1 = {name: inq_n1(m.weight) for name, m in layers}
        self._mask = {name: torch.zeros_like(m.weight, dtype=torch.bool) for name, m in layers}
        # _keep: int32, -1 (all bits) where the weight is free, 0 where frozen
        # _fz:   int32 bit patterns of the frozen values, 0 where free
        self._keep = {name: torch.full_like(m.weight, -1, dtype=torch.int32) for name, m in layers}
        self._fz = {name: torch.zeros_like(m.weight, dtype=torch.int32) for name, m in layers}
        self._count = {name: 0 for name, _ in layers}
        self._grad_handles: list = []

    def _sync(self, name: str, device: torch.device) -> None:
        if self._keep[name].device != device:
            self._mask[name] = self._mask[name].to(device)
            self._keep[name] = self._keep[name].to(device)
            self._fz[name] = self._fz[name].to(device)

    def _set_layer(self, name: str, mask: torch.Tensor, q: torch.Tensor) -> None:
        """Install ``mask`` (bool) and the frozen values ``q`` (float32, read under the mask)."""
        self._mask[name] = mask
        self._keep[name] = mask.to(torch.int32).sub_(1)  # True -> 0, False -> -1
        self._fz[name] = q.contiguous().view(torch.int32).bitwise_and(self._keep[name].bitwise_not())
        self._count[name] = int(mask.sum())

    def _get_enabled(self) -> bool:
        return self.step_index > 0

    def _set_enabled(self, value: bool) -> None:
        if value != self.fake_quant_enabled:
            raise ValueError("INQ quantizes weights in place: use step() / quantize_all(), not fake_quant_enabled")

    def _register_grad_hooks(self) -> None:
        if self._grad_handles:
            return
        for name, m in self.layers:
            def hook(g: torch.Tensor, name: str = name) -> torch.Tensor:
                self._sync(name, g.device)
                if g.dtype == torch.float32:
                    return g.view(torch.int32).bitwise_and(self._keep[name]).view(torch.float32)
                return g.masked_fill(self._mask[name], 0)
            self._grad_handles.append(m.weight.register_hook(hook))

    def _select(self, name: str, w: torch.Tensor, k: int) -> torch.Tensor:
        """Boolean mask of the ``k`` not-yet-quantized weights to quantize now (vectorized)."""
        n = w.numel()
        keep = self._keep[name].flatten()
        if self.strategy == "pruning":
            score = w.detach().contiguous().view(torch.int32).flatten().bitwise_and(0x7FFFFFFF)  # |w| bits
        else:
            score = torch.rand(n, generator=self._gen).to(w.device).view(torch.int32)
        score.bitwise_or_(keep.bitwise_not())  # frozen -> -1: excluded (negative)
        # non-negative float32 values order like their int32 bit patterns
        thr = _kth_largest(score, k) if n > 4096 else torch.kthvalue(score, n - k + 1).values
        sel = score >= thr
        if int(sel.sum()) != k:  # ties at the threshold: keep the first ones in index order
            gt = score > thr
            eq = sel.logical_xor_(gt)
            sel = gt | (eq & (eq.cumsum(0) <= k - int(gt.sum())))
        return sel.view_as(w)

    def _quantize_to(self, fraction: float | None) -> None:
        self._check_attached()
        self.enforce()  # frozen weights exactly on their levels before the next partition
        with torch.no_grad():
            for name, m in self.layers:
                w = m.weight
                self._sync(name, w.device)
                n = w.numel()
                target = n if fraction is None or fraction >= 1.0 else int(round(fraction * n))
                k = target - self._count[name]
                if k <= 0:
                    continue
                mask = self._mask[name] | self._select(name, w, k) if k < n - self._count[name] \
                    else torch.ones_like(self._mask[name])
                # frozen weights are on their levels already, so quantizing the whole tensor keeps them
                self._set_layer(name, mask, inq_quantize(w, self.bits, self.n1[name]))
        self._register_grad_hooks()
        self.enforce()

    def step(self) -> None:
        if self.done:
            super().step()
        self._quantize_to(self.iterative_steps[self.step_index])
        self.step_index += 1

    def quantize_all(self) -> None:
        self._quantize_to(None)
        self.step_index = self.n_steps

    def enforce(self) -> None:
        with torch.no_grad():
            for name, m in self.layers:
                if self._count[name] == 0:
                    continue
                w = m.weight
                if w.dtype != torch.float32:
                    raise ValueError(f"INQ needs float32 weights; layer {name!r} now has {w.dtype}")
                self._sync(name, w.device)
                w.view(torch.int32).bitwise_and_(self._keep[name]).bitwise_or_(self._fz[name])

    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        self._check_attached()
        self._opt_handles.append(optimizer.register_step_post_hook(lambda opt, args, kwargs: self.enforce()))

    def detach(self) -> None:
        self.enforce()
        for h in self._grad_handles:
            h.remove()
        self._grad_handles.clear()
        super().detach()

    @property
    def quantized_fraction(self) -> float:
        """Fraction of the layers' weights quantized so far."""
        total = sum(m.weight.numel() for _, m in self.layers)
        return sum(self._count.values()) / max(total, 1)

    def state_dict(self) -> dict:
        return {
            "scheme": self.scheme, "bits": self.bits, "step_index": self.step_index,
            "iterative_steps": list(self.iterative_steps), "strategy": self.strategy, "seed": self.seed,
            "rng_state": self._gen.get_state(),
            "layers": {name: {"n1": self.n1[name], "mask": self._mask[name].detach().cpu().clone()}
                       for name, _ in self.layers},
        }

    def load_state_dict(self, state: dict) -> None:
        self._check_attached()
        self._check_state(state)
        steps = _check_iterative_steps(state["iterative_steps"])
        if state["strategy"] not in _STRATEGIES:
            raise ValueError(f"quantizer state has strategy {state['strategy']!r}, expected one of {_STRATEGIES}")
        with torch.no_grad():
            staged = {}
            for name, m in self.layers:
                entry = state["layers"][name]
                mask = entry["mask"].to(device=m.weight.device, dtype=torch.bool)
                if mask.shape != m.weight.shape:
                    raise ValueError(f"quantizer state mask of {name!r} has shape {tuple(mask.shape)}, "
                                     f"expected {tuple(m.weight.shape)}")
                n1 = int(entry["n1"])
                q = inq_quantize(m.weight, self.bits, n1)
                if bool((mask & (q != m.weight)).any()):
                    raise ValueError(f"frozen weights of {name!r} are not on the INQ grid: load the model's "
                                     "state dict before the quantizer's")
                staged[name] = (n1, mask, q)
            for name, (n1, mask, q) in staged.items():
                self.n1[name] = n1
                self._set_layer(name, mask, q)
        self.iterative_steps, self.n_steps = steps, len(steps)
        self.strategy, self.seed = state["strategy"], int(state["seed"])
        self._gen.set_state(state["rng_state"])
        self.step_index = int(state["step_index"])
        if self.step_index > 0 or any(self._count.values()):
            self._register_grad_hooks()

    def codes(self) -> dict[str, dict]:
        out = {}
        for name, m in self.layers:
            try:
                c = inq_encode(m.weight, self.bits, self.n1[name])
            except ValueError as e:
                raise ValueError(f"layer {name!r}: {e} (call quantize_all() first?)") from None
            out[name] = {"codes": c, "n1": self.n1[name]}
        return out


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
    """Uniform fixed-point fake quantization through ``torch.nn.utils.parametrize``.

    ``module.weight`` is the fake-quant view of the latent float weight
    ``module.parametrizations.weight.original`` (the same Parameter object the optimizer
    already holds). ``n_steps = 1``: :meth:`step` enables fake quantization.
    """

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
                q, s = _uniform_q(w, self.bits, scale, self.per_channel, ax, ste=False)
                out[name] = {"codes": (q + _qmax(self.bits)).to(torch.uint8), "scale": scale,
                             "ch_axis": ax, "per_channel": self.per_channel}
        return out


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

    ``scheme`` in :data:`SCHEMES`; ``bits == 32`` (or ``scheme == 'float'``) gives a no-op
    :class:`FloatQuantizer`. ``per_channel`` applies to 'uniform'; ``iterative_steps``
    (cumulative fractions ending at 1.0), ``strategy`` ('pruning' = largest |w| first, or
    'random') and ``seed`` apply to 'inq'. All are validated whatever the scheme.
    Attaching to a model that already has a quantizer attached raises ValueError.

    >>> from qfcn.models import SAFCN
    >>> q = attach_quantizer(SAFCN(width=0.25, n_stages=2), "inq", 5)
    >>> q.n_steps, q.done, q.step_index
    (4, False, 0)
    """
    scheme, bits = check_scheme(scheme, bits)
    steps = _check_iterative_steps(iterative_steps)
    if strategy not in _STRATEGIES:
        raise ValueError(f"strategy must be one of {_STRATEGIES}, got {strategy!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    if scheme == "float":
        return FloatQuantizer(model)
    layers = quantized_layers(model)
    if not layers:
        raise ValueError("model has no nn.Conv2d / nn.ConvTranspose2d layer to quantize")
    for name, m in layers:
        if m in _REGISTRY or parametrize.is_parametrized(m, "weight"):
            other = _REGISTRY.get(m)
            what = f"a {other.scheme} {other.bits}-bit quantizer" if other else "a parametrization"
            raise ValueError(f"layer {name!r} is already quantized by {what}: call .detach() before attaching again")
    if scheme == "inq":
        ctl: WeightQuantizer = INQQuantizer(model, layers, bits, steps, strategy, seed)
    else:
        ctl = UniformQuantizer(model, layers, bits, bool(per_channel))
    for _, m in layers:
        _REGISTRY[m] = ctl
    return ctl
