"""Tests for qfcn.suggest.select: uncertainty, cosine similarity, greedy max-cover, picks."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from qfcn import suggest


# ----------------------------------------------------------------------------- helpers
def loop_greedy(sim: np.ndarray, k: int, floor: float = 0.0) -> list[int]:
    """Plain reference greedy: evaluate F(A + c) for every candidate with Python loops."""
    n_c, n_p = sim.shape

    def F(sel):
        return sum(max([floor] + [sim[s, x] for s in sel]) for x in range(n_p))

    picked: list[int] = []
    for _ in range(k):
        best_c, best_val = None, -math.inf
        for c in range(n_c):
            if c in picked:
                continue
            val = F(picked + [c])
            if val > best_val:  # strict: the smallest index wins ties
                best_c, best_val = c, val
        picked.append(best_c)
    return picked


def brute_force_best(sim: np.ndarray, k: int, floor: float) -> float:
    return max(suggest.coverage(sim, list(c), floor=floor)
               for c in itertools.combinations(range(sim.shape[0]), k))


# ------------------------------------------------------------------------- uncertainty
def test_uncertainty_hand_values():
    # pixel 0: members 0 and 1 -> std 0.5; pixel 1: both 1 -> 0; mean 0.25
    assert suggest.uncertainty([[[0.0, 1.0]], [[1.0, 1.0]]]) == pytest.approx(0.25)
    # three members 0.2, 0.5, 0.8: population variance 0.06 (ddof=0), not 0.09 (ddof=1)
    stack = np.array([0.2, 0.5, 0.8])[:, None, None] * np.ones((3, 4, 5))
    assert suggest.uncertainty(stack) == pytest.approx(math.sqrt(0.06))
    assert suggest.uncertainty(np.full((4, 3, 3), 0.3)) == 0.0
    assert suggest.uncertainty_map([[[0.0, 1.0]], [[1.0, 1.0]]]).tolist() == [[0.5, 0.0]]


@pytest.mark.parametrize("bad, match", [
    (np.full((1, 3, 3), 0.5), "K >= 2"),
    (np.full((2, 3, 3), 1.5), r"\[0, 1\]"),
    (np.array([[[0.1, np.nan]], [[0.2, 0.3]]]), "NaN"),
    (np.array([0.1, 0.2]), "dimensions"),
])
def test_uncertainty_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        suggest.uncertainty(bad)


# --------------------------------------------------------------------------- similarity
def test_cosine_similarity_hand_values():
    a = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]]
    b = [[1.0, 0.0], [3.0, 4.0], [-2.0, 0.0]]
    expected = [[1.0, 0.6, -1.0],
                [0.0, 0.8, 0.0],
                [1 / math.sqrt(2), 7 / (5 * math.sqrt(2)), -1 / math.sqrt(2)],
                [0.0, 0.0, 0.0]]  # zero vector -> 0
    np.testing.assert_allclose(suggest.cosine_similarity(a, b), expected, atol=1e-12)


def test_cosine_similarity_bad_input():
    with pytest.raises(ValueError, match="cosine_similarity"):
        suggest.cosine_similarity(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        suggest.cosine_similarity([[np.nan, 1.0]], [[1.0, 1.0]])


# ---------------------------------------------------------------------- greedy max-cover
def test_select_representative_hand_example():
    sim = [[1.0, 0.9, 0.0], [0.9, 1.0, 0.1], [0.0, 0.1, 1.0]]
    # gains: c0 = 1.9, c1 = 2.0, c2 = 1.1 -> 1; then c0 = 0.1, c2 = 0.9 -> 2
    chosen, gains = suggest.select_representative(sim, 2, return_gains=True)
    assert chosen == [1, 2]
    np.testing.assert_allclose(gains, [2.0, 0.9])
    assert suggest.coverage(sim, chosen) == pytest.approx(2.9)


def test_select_representative_ties_smallest_index():
    sim = np.tile([[0.5, 0.25, 0.0]], (4, 1))  # four identical candidates
    assert suggest.select_representative(sim, 3) == [0, 1, 2]
    assert suggest.select_representative(np.zeros((3, 5)), 3) == [0, 1, 2]


@pytest.mark.parametrize("floor", [0.0, -1.0])
def test_select_representative_matches_loop_greedy(floor):
    rng = np.random.default_rng(2024)
    for trial in range(150):
        n_c, n_p = rng.integers(1, 10), rng.integers(1, 25)
        if trial % 2:  # dyadic values: many exact ties, sums exact in any order
            sim = rng.integers(-8, 9, size=(n_c, n_p)) / 8.0
        else:
            sim = np.tanh(rng.normal(size=(n_c, n_p)))
        k = int(rng.integers(1, n_c + 1))
        assert suggest.select_representative(sim, k, floor=floor) == \
            loop_greedy(sim, k, floor), (trial, sim, k)


@pytest.mark.parametrize("floor", [0.0, -1.0])
def test_select_representative_reaches_1_minus_1_over_e(floor):
    rng = np.random.default_rng(11)
    for _ in range(60):
        n_c, n_p = int(rng.integers(2, 9)), int(rng.integers(3, 20))
        desc = rng.normal(size=(n_p, 4))
        cand = rng.choice(n_p, size=min(n_c, n_p), replace=False)
        sim = suggest.cosine_similarity(desc[cand], desc)
        k = int(rng.integers(1, sim.shape[0] + 1))
        base = sim.shape[1] * floor  # F(empty)
        greedy = suggest.coverage(sim, suggest.select_representative(sim, k, floor=floor),
                                  floor=floor)
        best = brute_force_best(sim, k, floor)
        assert greedy - base >= (1 - 1 / math.e) * (best - base) - 1e-12
        assert greedy <= best + 1e-12


def test_floor_empty_set_and_negative_similarity():
    sim = [[-0.5, -0.25], [0.5, -1.0]]
    assert suggest.coverage(sim, []) == 0.0
    assert suggest.coverage(sim, [], floor=-1.0) == -2.0
    assert suggest.coverage(sim, [0]) == 0.0  # negative similarity earns nothing at floor 0
    # floor -1 (the smallest cosine) reproduces SA's sum_x max_{s in A} sim(s, x)
    assert suggest.coverage(sim, [0], floor=-1.0) == -0.75
    assert suggest.coverage(sim, [0, 1], floor=-1.0) == 0.5 - 0.25
    # at floor 0 the candidate with a positive similarity is picked first
    assert suggest.select_representative(sim, 1) == [1]


def test_coverage_monotone_and_gains_sum():
    rng = np.random.default_rng(5)
    sim = np.tanh(rng.normal(size=(6, 12)))
    order = [3, 0, 5, 1]
    values = [suggest.coverage(sim, order[:i]) for i in range(len(order) + 1)]
    assert all(b >= a for a, b in zip(values, values[1:]))
    gains = suggest.marginal_gains(sim, order)
    np.testing.assert_allclose(np.diff(values), gains)
    chosen, g = suggest.select_representative(sim, 4, return_gains=True)
    np.testing.assert_allclose(suggest.marginal_gains(sim, chosen), g)
    np.testing.assert_allclose(g.sum(), suggest.coverage(sim, chosen))
    assert np.all(np.diff(g) <= 1e-12)  # submodular: greedy gains never increase


@pytest.mark.parametrize("sim, k, match", [
    (np.ones((3, 4)), 4, "n_candidates"),
    (np.ones((3, 4)), 0, "k: expected >= 1"),
    (np.ones((3, 4)), True, "k: expected an integer"),
    (np.ones(4), 1, "2-D"),
    (np.ones((2, 3, 4)), 1, "2-D"),
    (np.array([[0.1, np.nan]]), 1, "NaN"),
    (np.zeros((0, 4)), 1, "empty"),
])
def test_select_representative_bad_input(sim, k, match):
    with pytest.raises(ValueError, match=match):
        suggest.select_representative(sim, k)


def test_coverage_bad_selected():
    with pytest.raises(ValueError, match="selected"):
        suggest.coverage(np.ones((2, 3)), [0, 2])
    with pytest.raises(ValueError, match="selected"):
        suggest.marginal_gains(np.ones((2, 3)), [1, 1])


# ------------------------------------------------------------------------------- pick
U4 = np.array([0.1, 0.9, 0.8, 0.7])
SIM4 = np.array([[1.0, 0.0, 0.0, 0.9],
                 [0.0, 1.0, 0.95, 0.0],
                 [0.0, 0.95, 1.0, 0.0],
                 [0.9, 0.0, 0.0, 1.0]])


def test_pick_methods_hand_example():
    # candidates (k_candidates=3): 1, 2, 3; gains 1.95, 1.95, 1.9 -> 1; then 2: 0.05, 3: 1.9 -> 3
    assert suggest.pick("suggestive", uncertainties=U4, similarity=SIM4, k_pick=2, k_candidates=3) == [1, 3]
    assert suggest.pick("uncertainty", uncertainties=U4, k_pick=2) == [1, 2]
    # k_c = k: the candidates are the picks
    assert suggest.pick("suggestive", uncertainties=U4, similarity=SIM4, k_pick=2, k_candidates=2) == [1, 2]
    # k_c beyond the pool: every image is a candidate
    assert suggest.pick("suggestive", uncertainties=U4, similarity=SIM4, k_pick=2, k_candidates=50) == [1, 3]
    assert suggest.top_uncertain([0.5, 0.7, 0.5, 0.1], 3) == [1, 0, 2]


def test_pick_random_seeded():
    a = suggest.pick("random", n_pool=20, k_pick=6, rng=np.random.default_rng(3))
    b = suggest.pick("random", uncertainties=np.zeros(20), k_pick=6, rng=np.random.default_rng(3))
    assert a == b and len(set(a)) == 6 and all(0 <= i < 20 for i in a)
    assert a != suggest.pick("random", n_pool=20, k_pick=6, rng=np.random.default_rng(4))


@pytest.mark.parametrize("kwargs, match", [
    (dict(selection="full", uncertainties=U4, k_pick=2), "full"),
    (dict(selection="bogus", uncertainties=U4, k_pick=2), "selection"),
    (dict(selection="suggestive", uncertainties=U4, similarity=SIM4, k_pick=3, k_candidates=2), "k_candidates"),
    (dict(selection="suggestive", uncertainties=U4, similarity=SIM4, k_pick=2), "k_candidates"),
    (dict(selection="suggestive", uncertainties=U4, k_pick=2, k_candidates=3), "similarity"),
    (dict(selection="uncertainty", uncertainties=U4, k_pick=5), "k_pick: cannot pick 5"),
    (dict(selection="uncertainty", k_pick=2, n_pool=4), "uncertainties"),
    (dict(selection="random", n_pool=4, k_pick=2), "rng"),
    (dict(selection="random", uncertainties=U4, n_pool=5, k_pick=2,
          rng=np.random.default_rng(0)), "inconsistent"),
    (dict(selection="suggestive", uncertainties=U4, similarity=SIM4[:, :3], k_pick=2, k_candidates=3),
     "n_pool, n_pool"),
])
def test_pick_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        suggest.pick(**kwargs)
