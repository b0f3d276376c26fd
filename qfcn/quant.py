"""Weight quantizers of the study: INQ (powers of two) and uniform fixed-point.

Only the ``weight`` of ``nn.Conv2d`` and ``nn.ConvTranspose2d`` layers is quantized;
biases and batch-norm stay float. Activations stay float. The output-channel axis
(``ch_axis``) is 0 for ``Conv2d`` weights ``(out, in/groups, kh, kw)`` and 1 for
``ConvTranspose2d`` weights ``(in, out/groups, kh, kw)``.

INQ (Zhou et al. 2017), per layer with ``s = max|W|`` and bit-width ``b``:
``n1 = floor(log2(4 s / 3))``, ``n2 = n1 + 1 - 2**(b-1) / 2``; levels ``0`` and
``±2**n`` for ``n2 <= n <= n1`` (``2**(b-2)`` magnitudes per sign). A weight becomes
``sign(w) * beta`` when ``(alpha + beta) / 2 <= |w| < 3 beta / 2`` for adjacent levels
``alpha < beta`` (``alpha`` may be 0), zero below ``2**n2 / 2``, and the TOP level when it
is ``>= 3 * 2**n1 / 2`` (a weight that grew during retraining never becomes zero).
Boundaries are computed exactly with ``torch.frexp`` (no floating ``log2`` rounding).

Uniform: symmetric, ``scale = max|w| / (2**(b-1) - 1)`` per output channel (or per
tensor), ``q = clamp(round(w * (1/scale)), -qmax, qmax)``, ``w_q = q * scale``, rounding
through a straight-through estimator (``round_ste``). Bit-identical to
``torch.fake_quantize_per_channel_affine(w, scale, 0, ch_axis, -qmax, qmax)``.

One controller interface for every scheme (:mod:`qfcn.quantizers`, re-exported here)::

    q = attach_quantizer(model, "inq", 5)      # or ("uniform", 5), ("float", 32)
    q.attach_optimizer(optimizer)
    for _ in range(q.n_steps):
        q.step()                                # quantize + freeze the next partition
        train_some_epochs(model, optimizer)     # retrain the float rest
    q.detach()                                  # plain model, weights on the grid

Bit-width 32 with any scheme means float. Packed export is in :mod:`qfcn.packing`
(re-exported here as :func:`save_packed` / :func:`load_packed`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = [
    "SCHEMES",
    "check_scheme",
    "quantized_layers",
    "layer_ch_axis",
    "round_ste",
    "inq_n1",
    "inq_levels",
    "inq_quantize",
    "inq_encode",
    "inq_decode",
    "uniform_scale",
    "uniform_quantize",
    "uniform_encode",
    "uniform_decode",
    "recover_uniform_scale",
    "attach_quantizer",
    "attached_quantizer",
    "WeightQuantizer",
    "FloatQuantizer",
    "INQQuantizer",
    "UniformQuantizer",
    "save_packed",
    "load_packed",
    "packed_size_report",
]

#: scheme name -> supported bit-widths (32 with any scheme means float).
SCHEMES: dict[str, frozenset[int]] = {
    "float": frozenset({32}),
    "inq": frozenset(range(2, 9)),
    "uniform": frozenset(range(2, 9)),
}

QUANT_LAYER_TYPES = (nn.Conv2d, nn.ConvTranspose2d)


def check_scheme(scheme: str, bits: int) -> tuple[str, int]:
    """Validate a (scheme, bits) pair; return the effective pair (``bits == 32`` -> ``("float", 32)``).

    Raises ValueError naming the parameter and what was expected.

    >>> check_scheme("inq", 5), check_scheme("uniform", 32)
    (('inq', 5), ('float', 32))
    """
    if not isinstance(scheme, str) or scheme not in SCHEMES:
        raise ValueError(f"unknown quantization scheme {scheme!r}; expected one of {sorted(SCHEMES)}")
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise ValueError(f"bits must be an int, got {bits!r}")
    if bits == 32:
        return "float", 32
    if bits not in SCHEMES[scheme]:
        raise ValueError(
            f"bits={bits} is not supported by scheme {scheme!r}; expected one of "
            f"{sorted(SCHEMES[scheme])} (or 32 for float)"
        )
    return scheme, bits


def _check_bits(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
        raise ValueError(f"bits must be an int in [2, 8], got {bits!r}")
    return bits


def layer_ch_axis(module: nn.Module) -> int:
    """Output-channel axis of a quantizable layer's weight: 0 for Conv2d, 1 for ConvTranspose2d."""
    if isinstance(module, nn.ConvTranspose2d):
        return 1
    if isinstance(module, nn.Conv2d):
        return 0
    raise ValueError(f"expected nn.Conv2d or nn.ConvTranspose2d, got {type(module).__name__}")


def quantized_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers whose ``weight`` is quantized: every Conv2d / ConvTranspose2d, in module order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, QUANT_LAYER_TYPES)]


# ---------------------------------------------------------------------------- rounding
class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """``torch.round`` (half to even) forward, identity gradient (straight-through estimator)."""
    return _RoundSTE.apply(x)


# ---------------------------------------------------------------------------- INQ
def _level_exponent(a: torch.Tensor) -> torch.Tensor:
    """For ``a > 0``: the ``n`` with ``3/4 * 2**n <= a < 3/2 * 2**n`` (exact, via frexp), int32."""
    mant, exp = torch.frexp(a)  # a = mant * 2**exp, mant in [0.5, 1)
    return torch.where(mant >= 0.75, exp, exp - 1)


def inq_n1(w: torch.Tensor) -> int:
    """INQ top exponent ``n1 = floor(log2(4 s / 3))`` with ``s = max|w|``, computed exactly.

    An all-zero tensor has no scale: ``n1 = 0`` is returned by convention (its weights
    quantize to exactly 0 whatever the levels). Non-finite or empty weights raise ValueError.

    >>> inq_n1(torch.tensor([0.3, -1.0])), inq_n1(torch.tensor([0.75])), inq_n1(torch.zeros(3))
    (0, 0, 0)
    """
    if w.numel() == 0:
        raise ValueError("inq_n1: weight tensor is empty")
    s = w.detach().abs().max().double()
    if not torch.isfinite(s):
        raise ValueError("inq_n1: weight tensor contains inf or NaN")
    if s == 0:
        return 0
    return int(_level_exponent(s))


def _n2(bits: int, n1: int) -> int:
    return n1 + 1 - 2 ** (bits - 1) // 2


def inq_levels(bits: int, n1: int) -> torch.Tensor:
    """Non-negative INQ magnitudes, ascending, including 0: ``[0, 2**n2, ..., 2**n1]`` (float64).

    >>> inq_levels(3, 0).tolist()
    [0.0, 0.5, 1.0]
    """
    _check_bits(bits)
    n2 = _n2(bits, int(n1))
    return torch.tensor([0.0] + [2.0**n for n in range(n2, int(n1) + 1)], dtype=torch.float64)


def _float32_fast_path(w: torch.Tensor, n2: int, n1: int) -> bool:
    """Bit tricks apply: float32 weights and every level (and half the lowest) a normal float32."""
    return w.dtype == torch.float32 and -125 <= n2 and n1 <= 127


def _inq_exponents(w: torch.Tensor, bits: int, n1: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(exponent of each weight's level clamped to [n2, n1], nonzero mask)."""
    n2 = _n2(bits, n1)
    if _float32_fast_path(w, n2, n1):
        # |w| = (1 + f) * 2**k has level exponent k + (f >= 1/2): adding half the mantissa
        # range to the bit pattern carries into the exponent field exactly when f >= 1/2.
        ab = w.contiguous().view(torch.int32).bitwise_and(0x7FFFFFFF)
        nonzero = ab >= ((n2 - 1 + 127) << 23)  # |w| >= 2**(n2-1); positive floats order as ints
        e = ab.add_(0x00400000).bitwise_right_shift_(23).sub_(127).clamp_(n2, n1)
        return e, nonzero
    a = w.abs()
    nonzero = a >= math.ldexp(1.0, n2 - 1)  # |w| >= 2**n2 / 2
    e = _level_exponent(torch.where(nonzero, a, torch.ones_like(a))).clamp_(n2, n1)
    return e, nonzero


def inq_quantize(w: torch.Tensor, bits: int, n1: int | None = None) -> torch.Tensor:
    """Quantize the whole tensor ``w`` by the INQ levels and rule (same shape and dtype).

    Levels come from ``w`` itself (``n1 = inq_n1(w)``) unless ``n1`` fixes them. Weights
    above the top level take the top level (never zero). No gradient flows through.

    >>> inq_quantize(torch.tensor([0.1, 0.2, -0.3, 0.45, 0.8, 2.0]), 3, n1=0).tolist()
    [0.0, 0.0, -0.5, 0.5, 1.0, 1.0]
    """
    _check_bits(bits)
    w = w.detach()
    if n1 is None:
        n1 = inq_n1(w)
    n1 = int(n1)
    e, nonzero = _inq_exponents(w, bits, n1)
    if _float32_fast_path(w, _n2(bits, n1), n1):
        # build sign | exponent field | zero mantissa directly (in place: big CPU allocations are slow)
        out = e.add_(127).bitwise_left_shift_(23)
        out.bitwise_or_(w.contiguous().view(torch.int32).bitwise_and(-0x80000000))
        return out.mul_(nonzero).view(torch.float32).view_as(w)  # mul, not masked_fill: branch-free
    mag = torch.ldexp(torch.ones_like(w), e.to(w.dtype))
    return torch.where(nonzero, torch.copysign(mag, w), torch.zeros_like(w))


def inq_encode(w: torch.Tensor, bits: int, n1: int) -> torch.Tensor:
    """Integer codes (uint8, same shape) of weights that lie EXACTLY on the INQ grid.

    Code 0 is zero; ``1 + k`` is ``+2**(n1-k)`` and ``1 + K + k`` is ``-2**(n1-k)``
    (``K = 2**(bits-2)`` magnitudes), so every code is ``< 2**bits``. A weight that is not
    on the grid raises ValueError (never a silent rounding).
    """
    _check_bits(bits)
    w = w.detach()
    n1 = int(n1)
    q = inq_quantize(w, bits, n1)
    off = q != w
    if bool(off.any()):
        raise ValueError(
            f"{int(off.sum())} of {w.numel()} weights are not on the {bits}-bit INQ grid with n1={n1} "
            f"(e.g. {w[off].flatten()[0].item()!r})"
        )
    e, nonzero = _inq_exponents(w, bits, n1)
    k = (n1 - e).to(torch.int16)
    neg = (w < 0).to(torch.int16) * (2 ** (bits - 2))
    codes = torch.where(nonzero, 1 + k + neg, torch.zeros_like(k))
    return codes.to(torch.uint8)


def inq_decode(codes: torch.Tensor, bits: int, n1: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Inverse of :func:`inq_encode`: weights of ``dtype`` from uint8 codes."""
    _check_bits(bits)
    K = 2 ** (bits - 2)
    c = codes.to(torch.int32)
    if bool((c > 2 * K).any()):
        raise ValueError(f"INQ codes must be <= {2 * K} for bits={bits}, got max {int(c.max())}")
    k = torch.where(c > K, c - 1 - K, c - 1)
    mag = torch.ldexp(torch.ones(c.shape, dtype=dtype), (int(n1) - k).to(dtype))
    val = torch.where(c > K, -mag, mag)
    return torch.where(c == 0, torch.zeros_like(val), val)


# ---------------------------------------------------------------------------- uniform
def _qmax(bits: int) -> int:
    return 2 ** (bits - 1) - 1


def uniform_scale(w: torch.Tensor, bits: int, per_channel: bool = True, ch_axis: int = 0) -> torch.Tensor:
    """Symmetric scale ``max|w| / (2**(bits-1) - 1)``: shape ``(w.shape[ch_axis],)`` or ``()``, float32.

    A channel (or tensor) of zeros gets scale 0 (its codes and values are all 0).
    """
    _check_bits(bits)
    a = w.detach().abs().float()
    if per_channel:
        if not -w.dim() <= ch_axis < w.dim():
            raise ValueError(f"ch_axis={ch_axis} is out of range for a weight of shape {tuple(w.shape)}")
        m = a.transpose(0, ch_axis).reshape(w.shape[ch_axis], -1).amax(dim=1)
    else:
        m = a.amax()
    return m / _qmax(bits)


def _bshape(w: torch.Tensor, ch_axis: int) -> list[int]:
    shape = [1] * w.dim()
    shape[ch_axis] = w.shape[ch_axis]
    return shape


def _uniform_q(w: torch.Tensor, bits: int, scale: torch.Tensor, per_channel: bool, ch_axis: int, ste: bool):
    qmax = _qmax(bits)
    s = scale.to(w.dtype)
    if per_channel:
        s = s.reshape(_bshape(w, ch_axis))
    safe = torch.where(s > 0, s, torch.ones_like(s))
    inv = 1.0 / safe  # torch's fake-quant kernels multiply by 1/scale
    r = round_ste(w * inv) if ste else torch.round(w * inv)
    q = r.clamp(-qmax, qmax) + 0.0  # + 0.0 turns -0.0 into +0.0, as the torch op does
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
    q, s = _uniform_q(w, bits, scale, per_channel, ch_axis, ste=True)
    return q * s


def uniform_encode(
    w: torch.Tensor, bits: int, scale: torch.Tensor, per_channel: bool = True, ch_axis: int = 0
) -> torch.Tensor:
    """uint8 codes ``q + qmax`` (in ``[0, 2*qmax]``) of weights EXACTLY equal to ``q * scale``.

    A weight not reproduced bit for bit raises ValueError (never a silent rounding).
    """
    _check_bits(bits)
    w = w.detach()
    q, s = _uniform_q(w, bits, scale, per_channel, ch_axis, ste=False)
    off = (q * s) != w
    if bool(off.any()):
        raise ValueError(f"{int(off.sum())} of {w.numel()} weights are not on the {bits}-bit uniform grid")
    return (q + _qmax(bits)).to(torch.uint8)


def uniform_decode(
    codes: torch.Tensor, bits: int, scale: torch.Tensor, per_channel: bool = True, ch_axis: int = 0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Inverse of :func:`uniform_encode`."""
    _check_bits(bits)
    qmax = _qmax(bits)
    c = codes.to(torch.int32)
    if bool((c > 2 * qmax).any()):
        raise ValueError(f"uniform codes must be <= {2 * qmax} for bits={bits}, got max {int(c.max())}")
    q = (c - qmax).to(dtype)
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
        q, s = _uniform_q(w, bits, cand, per_channel, ch_axis, ste=False)
        ok = red((q * s) == w)
        new = ok & ~found
        best = torch.where(new, cand, best)
        found |= ok
        if bool(found.all()):
            return best
    bad = (~found).nonzero().flatten().tolist() if per_channel else [0]
    raise ValueError(f"weights are not on any {bits}-bit uniform grid (channels {bad[:5]} ...)")


# ---------------------------------------------------------------------------- controllers (re-export)
from qfcn.quantizers import (  # noqa: E402, F401  (after the functions the controllers import)
    FloatQuantizer, INQQuantizer, UniformFakeQuant, UniformQuantizer, WeightQuantizer, attach_quantizer,
    attached_quantizer)

# ---------------------------------------------------------------------------- packed export (re-export)
def save_packed(model: nn.Module, path, scheme: str | None = None, bits: int | None = None) -> dict:
    """Save ``model`` as real n-bit codes; see :func:`qfcn.packing.save_packed`."""
    from qfcn import packing

    return packing.save_packed(model, path, scheme=scheme, bits=bits)


def load_packed(model: nn.Module, path) -> dict:
    """Load a packed file into ``model``; see :func:`qfcn.packing.load_packed`."""
    from qfcn import packing

    return packing.load_packed(model, path)


def packed_size_report(model: nn.Module, scheme: str | None = None, bits: int | None = None) -> dict:
    """Measured on-disk bytes of ``model`` packed; see :func:`qfcn.packing.packed_size_report`."""
    from qfcn import packing

    return packing.packed_size_report(model, scheme=scheme, bits=bits)
