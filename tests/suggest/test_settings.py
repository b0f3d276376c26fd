"""Tests for qfcn.suggest.settings: the suggestion loop's settings, checked and resolved."""
from __future__ import annotations

import pytest

from qfcn.suggest import settings


def test_count_from_fraction_rounds_half_up():
    assert settings.count_from_fraction(0.5, 85) == 43
    assert settings.count_from_fraction(0.5, 30) == 15
    assert settings.count_from_fraction(0.1, 24) == 2


def test_validate_settings_resolves_counts():
    cfg = settings.validate_settings(85, selection="suggestive", k_pick=8, k_candidates=16, budget=0.5,
                                      n_initial=None, initial_fraction=0.1, seed=0, k_members=5)
    assert (cfg["n_budget"], cfg["n_initial"], cfg["n_members"]) == (43, 9, 5)
    full = settings.validate_settings(85, selection="full", k_pick=None, k_candidates=None, budget=0.5,
                                      n_initial=None, initial_fraction=None, seed=0)
    assert full["n_budget"] == full["n_initial"] == 85
    with pytest.raises(ValueError, match="initial set"):
        settings.validate_settings(4, selection="random", k_pick=1, k_candidates=None, budget=0.25,
                                    n_initial=1, initial_fraction=None, seed=0)


def test_validate_settings_rounds_and_similarity_form():
    # a pool of ~70 (the training images without the validation set): 10% initial, k_pick 8, 4+ rounds
    for n_pool in (68, 70, 72, 75):
        cfg = settings.validate_settings(n_pool, selection="suggestive", k_pick=8, k_candidates=16, budget=0.5,
                                          n_initial=None, initial_fraction=0.1, seed=0, k_members=4)
        assert cfg["n_initial"] == settings.count_from_fraction(0.1, n_pool) and cfg["n_rounds"] >= 4
        assert cfg["n_initial"] + (cfg["n_rounds"] - 1) * 8 < cfg["n_budget"] <= cfg["n_initial"] + cfg["n_rounds"] * 8
        assert cfg["similarity_form"] == "per_member_centred" and cfg["n_random_draws"] == 200
    full = settings.validate_settings(85, selection="full", k_pick=None, k_candidates=None, budget=0.5,
                                      n_initial=None, initial_fraction=None, seed=0)
    assert full["n_rounds"] == 0
    with pytest.raises(ValueError, match="similarity_form"):
        settings.validate_settings(85, selection="random", k_pick=8, k_candidates=None, budget=0.5, n_initial=4,
                                    initial_fraction=None, seed=0, similarity_form="plain")
