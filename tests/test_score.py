import numpy as np
import pytest

from qfcn import evaluate
from qfcn.data import Sample


def test_scaled_areas_follow_the_square_of_the_scale():
    assert evaluate.scaled_areas(1.0) == {"min_area": 50, "hole_area": 500}
    assert evaluate.scaled_areas(0.5, 40, 400) == {"min_area": 10, "hole_area": 100}
    assert evaluate.scaled_areas(0.01) == {"min_area": 1, "hole_area": 1}
    with pytest.raises(ValueError, match="scale=0"):
        evaluate.scaled_areas(0)


def test_n_glands_counts_instances_over_samples():
    inst = np.zeros((8, 8), np.int32)
    inst[1:3, 1:3], inst[1:3, 3:5], inst[5:7, 5:7] = 1, 2, 3
    s = [Sample("train_1", "train", np.zeros((8, 8, 3), np.uint8), inst),
         Sample("train_2", "train", np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.int32))]
    assert evaluate.n_glands(s) == 3


def test_evaluate_ensemble_needs_a_validation_split():
    with pytest.raises(ValueError, match="validation split is empty"):
        evaluate.evaluate_ensemble([], {}, val=[])
