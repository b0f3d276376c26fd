"""INQ levels, the INQ rounding rule and INQ integer codes (docs/method.md §4).

INQ (Zhou et al. 2017), per layer with ``s = max|W|`` and bit-width ``b``:
``n1 = floor(log2(4 s / 3))``, ``n2 = n1 + 1 - 2**(b-1) / 2``; levels ``0`` and
``±2**n`` for ``n2 <= n <= n1`` (``2**(b-2)`` magnitudes per sign). A weight becomes
``sign(w) * beta`` when ``(alpha + beta) / 2 <= |w| < 3 beta / 2`` for adjacent levels
``alpha < beta`` (``alpha`` may be 0), zero below ``2**n2 / 2``, and the TOP level when it
is ``>= 3 * 2**n1 / 2`` (a weight that grew during retraining never becomes zero).
Boundaries are computed exactly with ``torch.frexp`` (no floating ``log2`` rounding).
Tensors keep their shape; codes are uint8 of the weight's shape.

>>> w = torch.tensor([0.1, -0.3, 0.8])
>>> q = inq_quantize(w, 3, n1=0)
>>> q.tolist(), inq_encode(q, 3, 0).tolist(), inq_decode(inq_encode(q, 3, 0), 3, 0).tolist()
([0.0, -0.5, 1.0], [0, 4, 1], [0.0, -0.5, 1.0])
"""

from __future__ import annotations

import math

import torch

from qfcn.quant.common import check_bits

__all__ = ["inq_n1", "inq_levels", "inq_quantize", "inq_encode", "inq_decode", "inq_n1_from_grid"]


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
    check_bits(bits)
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
    check_bits(bits)
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
    check_bits(bits)
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
    check_bits(bits)
    K = 2 ** (bits - 2)
    c = codes.to(torch.int32)
    if bool((c > 2 * K).any()):
        raise ValueError(f"INQ codes must be <= {2 * K} for bits={bits}, got max {int(c.max())}")
    k = torch.where(c > K, c - 1 - K, c - 1)
    mag = torch.ldexp(torch.ones(c.shape, dtype=dtype), (int(n1) - k).to(dtype))
    val = torch.where(c > K, -mag, mag)
    return torch.where(c == 0, torch.zeros_like(val), val)


def inq_n1_from_grid(w: torch.Tensor, bits: int) -> int:
    """``n1`` for weights already on an INQ grid (0 if all zero).

    The largest exponent present, raised if needed so that the smallest magnitude present
    is still a level (a layer whose top level ended up unused keeps a valid grid).

    >>> inq_n1_from_grid(torch.tensor([0.5, -0.25, 0.0]), 5), inq_n1_from_grid(torch.tensor([2.0**-8]), 3)
    (5, -7)
    """
    nz = w[w != 0].abs()
    if nz.numel() == 0:
        return 0
    _, e_max = torch.frexp(nz.max())
    _, e_min = torch.frexp(nz.min())
    return max(int(e_max) - 1, int(e_min) - 1 + 2 ** (bits - 2) - 1)
