"""Schemes, bit-width checks and the layers the study quantizes (docs/method.md §4).

Only the ``weight`` of ``nn.Conv2d`` and ``nn.ConvTranspose2d`` layers is quantized;
biases and batch-norm stay float, activations stay float. The output-channel axis
(``ch_axis``) is 0 for ``Conv2d`` weights ``(out, in/groups, kh, kw)`` and 1 for
``ConvTranspose2d`` weights ``(in, out/groups, kh, kw)``.

>>> from torch import nn
>>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ConvTranspose2d(4, 2, 2))
>>> [(name, layer_ch_axis(m)) for name, m in quantized_layers(net)]
[('0', 0), ('2', 1)]
"""

from __future__ import annotations

from torch import nn

__all__ = ["SCHEMES", "QUANT_LAYER_TYPES", "check_scheme", "check_bits", "layer_ch_axis", "quantized_layers"]

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


def check_bits(bits: int) -> int:
    """``bits`` if it is an int in ``[2, 8]`` (a quantized bit-width), else ValueError.

    >>> check_bits(5)
    5
    """
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
