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


def test_carve_validation_deterministic_stratified_and_bounded():
    names = [f"train_{i}" for i in range(1, 21)]
    grades = ["benign"] * 12 + ["malignant"] * 8
    val = data.carve_validation(names, grades, 0.25, seed=3)
    assert val == data.carve_validation(names, grades, 0.25, seed=3)
    assert val != data.carve_validation(names, grades, 0.25, seed=4)
    assert len(val) == 5 and val == [n for n in names if n in val]  # input order
    picked = [grades[names.index(n)] for n in val]
    assert picked.count("benign") == 3 and picked.count("malignant") == 2  # 12:8 -> 3:2
    assert data.carve_validation(names[:2], grades[:2], 0.01, seed=0) != []  # at least one
    assert len(data.carve_validation(names[:3], ["x"] * 3, 0.9, seed=0)) == 2  # leaves one in the pool
    assert data.carve_validation(names, grades, 0.0, seed=0) == []


@pytest.mark.parametrize("args, match", [
    ((["train_1"], ["benign"], 0.2), r"need at least 2 training images"),
    ((["train_1", "train_1"], ["a", "a"], 0.2), r"one grade per distinct name"),
    ((["train_1", "train_2"], ["a"], 0.2), r"one grade per distinct name"),
    ((["train_1", "train_2"], ["a", "a"], 1.0), r"fraction must be in \[0, 1\)"),
])
def test_carve_validation_refuses(args, match):
    with pytest.raises(ValueError, match=match):
        data.carve_validation(*args, seed=0)
