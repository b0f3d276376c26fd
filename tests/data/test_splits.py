"""Tests for qfcn.data.splits that the train tests do not cover: ``is_test`` (public now).

split_validation / bootstrap_resample / member_seed are tested in tests/test_train.py
(test_split_validation, test_bootstrap_resample_is_deterministic), which the train area owns.
"""

from __future__ import annotations

import pytest

from qfcn import data


@pytest.mark.parametrize("split, expected", [("test_a", True), ("testB", True), ("TEST_b", True),
                                             ("train", False), ("", False)])
def test_is_test_by_split_prefix(split, expected):
    assert data.is_test(data.Sample("x", split, None, None)) is expected


def test_is_test_without_split_attribute():
    assert data.is_test(object()) is False


def test_split_validation_refuses_test_samples_named():
    samples = [data.Sample(f"train_{i}", "train", None, None) for i in range(3)]
    samples.append(data.Sample("testA_1", "test_a", None, None))
    with pytest.raises(ValueError, match=r"never be used for validation, got \['testA_1'\]"):
        data.split_validation(samples, 0.3, seed=0)
