"""Tests of qfcn.quant.inq: INQ levels, the INQ rule, codes."""

from __future__ import annotations

import pytest
import torch

from qfcn.quant import inq_decode, inq_encode, inq_levels, inq_n1, inq_quantize

from .helpers import bits_of


def test_inq_n1_hand_computed() -> None:
    assert inq_n1(torch.tensor([0.3, -1.0])) == 0  # floor(log2(4/3)) = 0
    assert inq_n1(torch.tensor([0.3])) == -2  # 4*0.3/3 = 0.4 -> floor(-1.32) = -2
    assert inq_n1(torch.tensor([2.0, -0.1])) == 1  # max exactly a power of two: 8/3 -> 1
    assert inq_n1(torch.tensor([0.5])) == -1  # 2/3 -> -1
    assert inq_n1(torch.tensor([1.5])) == 1  # 4*1.5/3 = 2 exactly -> 1 (boundary is exact)
    assert inq_n1(torch.tensor([1.4999999])) == 0
    assert inq_n1(torch.tensor([-0.75])) == 0  # 1 exactly -> 0
    assert inq_n1(torch.zeros(2, 3)) == 0  # all-zero layer: documented convention
    with pytest.raises(ValueError, match="inf or NaN"):
        inq_n1(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="empty"):
        inq_n1(torch.zeros(0))


def test_inq_levels_hand_computed() -> None:
    # b = 3: n2 = n1 + 1 - 2 = n1 - 1 -> zero plus 2 magnitudes
    assert inq_levels(3, 0).tolist() == [0.0, 0.5, 1.0]
    # b = 5: n2 = n1 - 7 -> zero plus 8 magnitudes
    assert inq_levels(5, -2).tolist() == [0.0] + [2.0**n for n in range(-9, -1)]
    assert len(inq_levels(5, 3)) == 9
    # b = 7: 32 magnitudes; b = 2: one
    assert inq_levels(7, 1).tolist() == [0.0] + [2.0**n for n in range(-30, 2)]
    assert inq_levels(2, 4).tolist() == [0.0, 16.0]
    with pytest.raises(ValueError, match="bits"):
        inq_levels(9, 0)


def test_inq_rule_b3_hand_computed() -> None:
    # levels {0, 0.5, 1}: 0.5 for [0.25, 0.75), 1 for [0.75, 1.5) and above (top level, never 0)
    w = torch.tensor([0.0, 0.2, 0.25, -0.3, 0.74, 0.75, -1.0, 1.49, 1.6, -7.0])
    expected = [0.0, 0.0, 0.5, -0.5, 0.5, 1.0, -1.0, 1.0, 1.0, -1.0]
    assert inq_quantize(w, 3, n1=0).tolist() == expected
    # levels from w itself: s = 7 -> n1 = floor(log2(28/3)) = 3, levels {0, 4, 8}
    assert inq_quantize(w, 3).tolist() == [0.0, 0, 0, 0, 0, 0, 0, 0, 0, -8.0]


def test_inq_rule_b5_hand_computed() -> None:
    # s = 0.3 -> n1 = -2, n2 = -9; zero below 2**-10 = 0.0009765625
    w = torch.tensor([0.3, -0.1, 0.01, 0.0009, 0.0009765625, -0.0015, 0.2, 0.14])
    expected = [0.25, -0.125, 0.0078125, 0.0, 0.001953125, -0.001953125, 0.25, 0.125]
    assert inq_n1(w) == -2
    assert inq_quantize(w, 5).tolist() == expected


def test_inq_rule_b7_max_power_of_two() -> None:
    # s = 2 exactly -> n1 = 1, n2 = 1 + 1 - 32 = -30; zero below 2**-31
    w = torch.tensor([2.0, -1.0, 0.75, 2.0**-31, 2.0**-32, 3e-10, -1.5, 1.2])
    expected = [2.0, -1.0, 1.0, 2.0**-30, 0.0, 0.0, -2.0, 1.0]
    assert inq_quantize(w, 7).tolist() == expected
    q = inq_quantize(w, 7)
    assert torch.equal(inq_quantize(q, 7), q)  # idempotent on the grid


def test_inq_all_zero_layer() -> None:
    w = torch.zeros(3, 2, 3, 3)
    q = inq_quantize(w, 5)
    assert torch.equal(bits_of(q), bits_of(torch.zeros_like(w)))  # +0.0 everywhere
    assert inq_encode(w, 5, inq_n1(w)).sum() == 0


def test_inq_quantize_matches_nearest_level_search() -> None:
    """The vectorized rule equals a brute-force search of the INQ interval table."""
    torch.manual_seed(1)
    w = torch.randn(5000) * 0.1
    for bits in (2, 3, 5, 7, 8):
        n1 = inq_n1(w)
        lv = inq_levels(bits, n1)
        a = w.double().abs()
        out = torch.zeros_like(a)
        for lo, beta in zip(lv[:-1], lv[1:]):
            out = torch.where(((lo + beta) / 2 <= a) & (a < 1.5 * beta), beta, out)
        out = torch.where(a >= 1.5 * lv[-1], lv[-1], out)
        assert torch.equal(inq_quantize(w, bits).double(), torch.sign(w.double()) * out), bits


@pytest.mark.parametrize("bits", range(2, 9))
def test_inq_codes_round_trip(bits: int) -> None:
    torch.manual_seed(bits)
    w = torch.randn(7, 5, 3, 3)
    n1 = inq_n1(w)
    q = inq_quantize(w, bits, n1)
    codes = inq_encode(q, bits, n1)
    assert codes.dtype == torch.uint8 and int(codes.max()) < 2**bits
    assert torch.equal(bits_of(inq_decode(codes, bits, n1)), bits_of(q))
    with pytest.raises(ValueError, match="not on the"):
        inq_encode(w, bits, n1)
