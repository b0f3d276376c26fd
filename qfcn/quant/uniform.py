"""Uniform symmetric fixed-point quantization of weights (docs/method.md §4).

``scale = max|w| / qmax`` with ``qmax = 2**(b-1) - 1``, per output channel (shape
``(w.shape[ch_axis],)``) or per tensor (shape ``()``), float32;
``q = clamp(round(w * (1/scale)), -qmax, qmax)``, ``w_q = q * scale``, rounding half to
even through a straight-through estimator (:func:`round_ste`). Bit-identical to
``torch.fake_quantize_per_channel_affine(w, scale, 0, ch_axis, -qmax, qmax)``. Codes are
uint8 ``q + qmax`` in ``[0, 2 * qmax]``. A channel of zeros has scale 0 and codes ``qmax``.

>>> w = torch.tensor([[0.6, -0.41, 0.05]])
>>> s = uniform_scale(w, 3)
>>> uniform_encode(uniform_quantize(w, 3), 3, s).tolist()  # q = 3, -2, 0 (+ qmax 3)
[[6, 1, 3]]
"""

from __future__ import annotations

import math

import torch

from qfcn.quant.common import check_bits

__all__ = ["round_ste", "qmax", "uniform_scale", "uniform_grid", "uniform_quantize", "uniform_encode",
           "uniform_decode", "recover_uniform_scale"]


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """``torch.round`` (half to even) forward, identity gradient (straight-through estimator).

    >>> round_ste(torch.tensor([0.5, 1.5, -0.6])).tolist()
    [0.0, 2.0, -1.0]
    """
    return _RoundSTE.apply(x)


def qmax(bits: int) -> int:
    """Largest code magnitude of the symmetric ``bits``-bit grid: ``2**(bits-1) - 1``.

    >>> qmax(5)
    15
    """
    return 2 ** (bits - 1) - 1


def uniform_scale(w: torch.Tensor, bits: int, per_channel: bool = True, ch_axis: int = 0) -> torch.Tensor:
    """Symmetric scale ``max|w| / (2**(bits-1) - 1)``: shape ``(w.shape[ch_axis],)`` or ``()``, float32.

    A channel (or tensor) of zeros gets scale 0 (its codes and values are all 0).
    """
    check_bits(bits)
    a = w.detach().abs().float()
    if per_channel:
        if not -w.dim() <= ch_axis < w.dim():
            raise ValueError(f"ch_axis={ch_axis} is out of range for a weight of shape {tuple(w.shape)}")
        m = a.transpose(0, ch_axis).reshape(w.shape[ch_axis], -1).amax(dim=1)
    else:
        m = a.amax()
    return m / qmax(bits)


def _bshape(w: torch.Tensor, ch_axis: int) -> list[int]:
    shape = [1] * w.dim()
    shape[ch_axis] = w.shape[ch_axis]
    return shape


def uniform_grid(w: torch.Tensor, bits: int, scale: torch.Tensor, per_channel: bool, ch_axis: int,
                 ste: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(q, s)``: integer-valued ``q`` (dtype of ``w``, in ``[-qmax, qmax]``) and ``scale``
    broadcastable to ``w``, so that ``q * s`` is the quantized ``w``. ``ste`` rounds through
    :func:`round_ste` (gradient flows to ``w``).

    >>> q, s = uniform_grid(torch.tensor([0.6, -0.41]), 3, torch.tensor(0.2), False, 0, ste=False)
    >>> q.tolist()
    [3.0, -2.0]
    """
    qm = qmax(bits)
    s = scale.to(w.dtype)
    if per_channel:
        s = s.reshape(_bshape(w, ch_axis))
    safe = torch.where(s > 0, s, torch.ones_like(s))
    inv = 1.0 / safe  # torch's fake-quant kernels multiply by 1/scale
    r = round_ste(w * inv) if ste else torch.round(w * inv)
    q = r.clamp(-qm, qm) + 0.0  # + 0.0 turns -0.0 into +0.0, as the torch op does
    return q, s


def uniform_quantize(
    w: torch.Tensor, bits: int, per_channel: bool = True, ch_axis: int = 0, scale: torch.Tensor | None = None
) -> torch.Tensor:
    """Fake-quantized ``w`` (same shape/dtype): ``clamp(round(w/scale), -qmax, qmax) * scale``.

    ``scale`` defaults to :func:`uniform_scale` of ``w`` (detached). The gradient with respect
    to ``w`` is straight-through (identity up to float rounding of ``scale * (1/scale)``).

    >>> uniform_quantize(torch.tensor([[0.6, -0.41, 0.05]]), 3).tolist()  # scale 0.2, q = 3, -2, 0
    [[0.6000000238418579, -0.4000000059604645, 0.0]]
    """
    if scale is None:
        scale = uniform_scale(w, bits, per_channel, ch_axis)
    q, s = uniform_grid(w, bits, scale, per_channel, ch_axis, ste=True)
    return q * s


def uniform_encode(
    w: torch.Tensor, bits: int, scale: torch.Tensor, per_channel: bool = True, ch_axis: int = 0
) -> torch.Tensor:
    """uint8 codes ``q + qmax`` (in ``[0, 2*qmax]``) of weights EXACTLY equal to ``q * scale``.

    A weight not reproduced bit for bit raises ValueError (never a silent rounding).
    """
    check_bits(bits)
    w = w.detach()
    q, s = uniform_grid(w, bits, scale, per_channel, ch_axis, ste=False)
    off = (q * s) != w
    if bool(off.any()):
        raise ValueError(f"{int(off.sum())} of {w.numel()} weights are not on the {bits}-bit uniform grid")
    return (q + qmax(bits)).to(torch.uint8)


def uniform_decode(
    codes: torch.Tensor, bits: int, scale: torch.Tensor, per_channel: bool = True, ch_axis: int = 0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Inverse of :func:`uniform_encode`."""
    check_bits(bits)
    qm = qmax(bits)
    c = codes.to(torch.int32)
    if bool((c > 2 * qm).any()):
        raise ValueError(f"uniform codes must be <= {2 * qm} for bits={bits}, got max {int(c.max())}")
    q = (c - qm).to(dtype)
    s = scale.to(dtype)
    if per_channel:
        s = s.reshape(_bshape(q, ch_axis))
    return q * s


def recover_uniform_scale(
    w: torch.Tensor, bits: int, per_channel: bool = True, ch_axis: int = 0, max_ulps: int = 4
) -> torch.Tensor:
    """A scale that reproduces ``w`` exactly (for weights baked onto the uniform grid).

    Starts from :func:`uniform_scale` of ``w`` and, per channel, tries neighbouring float32
    values (up to ``max_ulps`` steps each way) because ``max|w| / qmax`` of baked weights can
    differ from the original scale in the last bit. Raises ValueError when none fits.
    """
    s0 = uniform_scale(w, bits, per_channel, ch_axis)
    w = w.detach().float()
    best = s0.clone()
    found = torch.zeros(s0.shape, dtype=torch.bool)
    cands = [s0]
    up, down = s0, s0
    for _ in range(max_ulps):
        up = torch.nextafter(up, torch.full_like(up, math.inf))
        down = torch.nextafter(down, torch.zeros_like(down))
        cands += [up, down]

    def red(t: torch.Tensor) -> torch.Tensor:  # per channel (or tensor): every weight reproduced
        return t.transpose(0, ch_axis).reshape(t.shape[ch_axis], -1).all(dim=1) if per_channel else t.all()

    for cand in cands:
        q, s = uniform_grid(w, bits, cand, per_channel, ch_axis, ste=False)
        ok = red((q * s) == w)
        new = ok & ~found
        best = torch.where(new, cand, best)
        found |= ok
        if bool(found.all()):
            return best
    bad = (~found).nonzero().flatten().tolist() if per_channel else [0]
    raise ValueError(f"weights are not on any {bits}-bit uniform grid (channels {bad[:5]} ...)")
