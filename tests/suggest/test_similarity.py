"""Tests for qfcn.suggest.similarity: per-member centred similarity and the coverage z-score."""
from __future__ import annotations

import numpy as np
import pytest

from qfcn import suggest
from qfcn.suggest import similarity


def relu_like(rng, n, d, offset=3.0):
    """Non-negative descriptors sharing a large common part, as spatial means of ReLU maps are."""
    return offset + np.abs(rng.normal(size=(n, d)))


def clustered(rng, n_per=6, d=16):
    """Two clusters of non-negative descriptors; labels 0/1."""
    centres = relu_like(rng, 2, d, offset=2.0)
    x = np.concatenate([c + 0.15 * rng.normal(size=(n_per, d)) for c in centres])
    return np.abs(x), np.repeat([0, 1], n_per)


# ------------------------------------------------------------------ similarity forms
def test_channel_correspondence_does_not_matter():
    rng = np.random.default_rng(0)
    one = relu_like(rng, 7, 10)
    perm = rng.permutation(10)
    two = np.stack([one, one[:, perm]], axis=1)  # (7, 2, 10): member 1 = member 0, channels permuted
    np.testing.assert_allclose(suggest.descriptor_similarity(two), suggest.descriptor_similarity(one[:, None]),
                               atol=1e-12)
    np.testing.assert_allclose(suggest.descriptor_similarity(one), suggest.descriptor_similarity(one[:, None]))


def test_centred_form_recovers_structure_that_member_averaging_loses():
    rng = np.random.default_rng(1)
    x, label = clustered(rng)
    # two independently initialised members: the same image content on unrelated channels
    members = np.stack([x, x[:, rng.permutation(x.shape[1])] * 1.7], axis=1)
    same = label[:, None] == label[None, :]
    off = ~np.eye(len(label), dtype=bool)
    new = suggest.descriptor_similarity(members)
    old = suggest.descriptor_similarity(members, "mean_descriptor")
    assert new[same & off].min() > new[~same].max()  # every within-cluster pair beats every across pair
    assert new[~same].max() < 0.0
    assert old[off].min() > 0.8  # non-negative descriptors: every plain cosine is high
    assert np.ptp(new[off]) > 5 * np.ptp(old[off])


def test_non_negative_descriptors_no_longer_all_similar():
    rng = np.random.default_rng(2)
    d = relu_like(rng, 12, 32)[:, None]
    old = suggest.descriptor_similarity(d, "mean_descriptor")
    new = suggest.descriptor_similarity(d)
    assert old.min() > 0.9
    off = ~np.eye(12, dtype=bool)
    # centred vectors sum to zero: each image is negatively similar to at least one other
    assert np.all(np.where(off, new, np.inf).min(axis=1) < 0)
    np.testing.assert_allclose(new, new.T)
    np.testing.assert_allclose(np.diag(new), 1.0)
    assert -1.0 <= new.min() and new.max() <= 1.0


def test_centring_uses_the_images_compared_and_degenerate_rows():
    d = np.array([[1.0, 2.0], [3.0, 2.0], [2.0, 2.0]])  # the third equals the mean
    sim = suggest.descriptor_similarity(d)
    assert sim[0, 1] == pytest.approx(-1.0) and sim[2].tolist() == [0.0, 0.0, 0.0]
    assert suggest.descriptor_similarity(d[:2])[0, 1] == pytest.approx(-1.0)


@pytest.mark.parametrize("bad, form, match", [
    (np.zeros((3,)), "per_member_centred", "descriptors: expected"),
    (np.zeros((3, 0, 4)), "per_member_centred", "descriptors: expected"),
    (np.array([[np.nan, 1.0]]), "per_member_centred", "NaN"),
    (np.zeros((3, 4)), "cosine", "similarity_form"),
])
def test_descriptor_similarity_bad_input(bad, form, match):
    with pytest.raises(ValueError, match=match):
        suggest.descriptor_similarity(bad, form)


# ------------------------------------------------------------------ coverage z-score
def test_coverage_against_random_matches_explicit_draws():
    rng = np.random.default_rng(3)
    sim = suggest.descriptor_similarity(relu_like(rng, 20, 8))
    ref, picked = list(range(2, 14)), [3, 9, 12]
    out = suggest.coverage_against_random(sim, picked, ref, n_draws=50, rng=np.random.default_rng(7))
    again = suggest.coverage_against_random(sim, picked, ref, n_draws=50, rng=np.random.default_rng(7))
    assert out == again  # seeded
    draws_rng = np.random.default_rng(7)
    order = np.argsort(draws_rng.random((50, len(ref))), axis=1)[:, :3]
    values = [suggest.coverage(sim, [ref[i] for i in row]) for row in order]
    assert out["coverage"] == pytest.approx(suggest.coverage(sim, picked))
    assert out["coverage_random_mean"] == pytest.approx(np.mean(values))
    assert out["coverage_random_sd"] == pytest.approx(np.std(values, ddof=1))
    assert out["coverage_z"] == pytest.approx((out["coverage"] - np.mean(values)) / np.std(values, ddof=1))
    assert all(set(ref[i] for i in row) <= set(ref) and len(set(row)) == 3 for row in order)


def test_greedy_pick_beats_random_subsets_of_its_candidates():
    rng = np.random.default_rng(4)
    x, _ = clustered(rng, n_per=10)
    sim = suggest.descriptor_similarity(x)
    cands = list(range(9)) + [10]  # 9 of cluster 0, 1 of cluster 1: 4 in 5 random pairs miss cluster 1
    chosen = [cands[j] for j in suggest.select_representative(sim[cands], 2)]
    assert sorted(_ for _ in chosen if _ >= 10) == [10]
    out = suggest.coverage_against_random(sim, chosen, cands, n_draws=200, rng=np.random.default_rng(0))
    assert out["coverage_z"] > 1.5  # about 2 (= 0.8 / 0.4) for a two-valued F


def test_coverage_against_random_edge_cases():
    sim = np.eye(4)
    none = suggest.coverage_against_random(sim, [1], [0, 1, 2], n_draws=0, rng=np.random.default_rng(0))
    assert none == {"coverage": 1.0, "coverage_random_mean": None, "coverage_random_sd": None,
                    "coverage_z": None}
    whole = suggest.coverage_against_random(sim, [0, 2], [2, 0], n_draws=5, rng=np.random.default_rng(0))
    assert whole["coverage_random_sd"] == pytest.approx(0.0) and whole["coverage_z"] is None
    with pytest.raises(ValueError, match="picked: expected a subset of reference"):
        suggest.coverage_against_random(sim, [3], [0, 1], n_draws=5, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="n_draws"):
        suggest.coverage_against_random(sim, [0], [0, 1], n_draws=-1, rng=np.random.default_rng(0))


def test_similarity_forms_listed():
    assert similarity.SIMILARITY_FORMS[0] == "per_member_centred"
    assert similarity.check_similarity_form("mean_descriptor") == "mean_descriptor"


def test_centred_form_is_the_mean_of_per_member_cosines():
    rng = np.random.default_rng(5)
    d = relu_like(rng, 9, 6)[:, None] * np.array([1.0, 2.0, 0.5])[None, :, None] + rng.random((9, 3, 6))
    d[4, 1] = d[:, 1].mean(axis=0)  # member 1 sees image 4 at the mean: zero centred vector
    by_hand = np.mean([suggest.cosine_similarity(d[:, k] - d[:, k].mean(0), d[:, k] - d[:, k].mean(0))
                       for k in range(3)], axis=0)
    np.testing.assert_allclose(suggest.descriptor_similarity(d), by_hand, atol=1e-12)
