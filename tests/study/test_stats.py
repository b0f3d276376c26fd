import math

import pytest

from qfcn.study import stats


def test_mean_ci_hand_values():
    # values 1, 2, 3: mean 2, sd 1, t(0.975, 2) = 4.302653 -> half width 4.302653 / sqrt(3)
    m, lo, hi = stats.mean_ci([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)
    assert m == 2.0 and lo == pytest.approx(2 - half) and hi == pytest.approx(2 + half)


def test_mean_ci_single_value_has_no_interval():
    m, lo, hi = stats.mean_ci([0.7])
    assert m == 0.7 and math.isnan(lo) and math.isnan(hi)


def test_paired_difference_verdicts():
    big = stats.paired_difference([0.9, 0.91, 0.92], [0.8, 0.80, 0.81])
    assert big["diff"] == pytest.approx((0.1 + 0.11 + 0.11) / 3) and "larger than" in big["verdict"]
    small = stats.paired_difference([0.9, 0.8, 0.85], [0.85, 0.86, 0.84])
    assert "within" in small["verdict"]
    one = stats.paired_difference([0.9], [0.8])
    assert one["n"] == 1 and "cannot tell" in one["verdict"]
    with pytest.raises(ValueError, match="one per seed"):
        stats.paired_difference([1, 2], [1])
