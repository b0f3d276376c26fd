"""The suggestion loop's settings, checked and resolved before any training (``docs/method.md §5``).

:func:`validate_settings` turns the loop's arguments (``selection``, ``k_pick``,
``k_candidates``, ``budget``, the initial set, ``k_members``, ``similarity_form``...) into the settings dict that
:func:`qfcn.suggest.rounds.run_suggestion` persists in its state file; the dict keeps the
persisted keys ``method`` (= ``selection``), ``k`` (= ``k_pick``), ``k_c`` (=
``k_candidates``) and ``n_members`` (= ``k_members``), so state files of earlier runs resume.

>>> s = validate_settings(85, selection="suggestive", k_pick=8, k_candidates=16, budget=0.5,
...                       n_initial=None, initial_fraction=0.1, seed=0, k_members=4)
>>> s["n_budget"], s["n_initial"], s["k"], s["k_c"], s["n_rounds"]
(43, 9, 8, 16, 5)
>>> validate_settings(72, selection="suggestive", k_pick=8, k_candidates=16, budget=0.5,
...                   n_initial=None, initial_fraction=0.1, seed=0)["n_rounds"]  # 7 + 8+8+8+5
4
"""
from __future__ import annotations

import math

import numpy as np

from qfcn.suggest.select import METHODS
from qfcn.suggest.similarity import check_similarity_form
from qfcn.suggest.validate import check_count, check_floor

__all__ = ["count_from_fraction", "validate_settings"]


def count_from_fraction(fraction: float, n: int) -> int:
    """``fraction * n`` rounded half up, as used for budget and initial set.

    >>> count_from_fraction(0.5, 85)
    43
    """
    return int(math.floor(fraction * n + 0.5))


def _resolve_initial(n_pool: int, n_initial: int | None, initial_fraction: float | None,
                     n_budget: int, budget: float) -> int:
    """The size of the initial set, from exactly one of ``n_initial`` / ``initial_fraction``."""
    if (n_initial is None) == (initial_fraction is None):
        raise ValueError("n_initial / initial_fraction: give exactly one of them")
    if initial_fraction is not None:
        if not isinstance(initial_fraction, (int, float, np.floating)) \
                or not (0.0 < initial_fraction < 1.0):
            raise ValueError(f"initial_fraction: expected a fraction in (0, 1), "
                             f"got {initial_fraction!r}")
        n_initial = max(1, count_from_fraction(initial_fraction, n_pool))
    n_initial = check_count(n_initial, "n_initial")
    if n_initial >= n_budget:
        raise ValueError(f"n_initial / initial_fraction: the initial set ({n_initial} images) "
                         f"must be smaller than the budget ({n_budget} = {budget} x {n_pool})")
    return n_initial


def validate_settings(n_pool: int, *, selection: str, k_pick: int | None,
                      k_candidates: int | None, budget: float, n_initial: int | None,
                      initial_fraction: float | None, seed: int, k_members: int | None = None,
                      floor: float = 0.0, n_random_draws: int = 200,
                      similarity_form: str = "per_member_centred") -> dict:
    """Check the suggestion loop's settings before any training; return them resolved.

    Raises ValueError naming the parameter for: an unknown selection, ``k_members`` (K) < 2,
    k_pick < 1, k_candidates < k_pick, a budget outside (0, 1], an initial set that is empty
    or not smaller than the budget, a negative seed, an unknown ``similarity_form``
    (:data:`qfcn.suggest.similarity.SIMILARITY_FORMS`). 'full' needs no k_pick, k_candidates
    or initial set.

    Returns:
        dict with the persisted keys (see the module docstring) method, k, k_c, seed, budget,
        n_budget (images annotated at the end), n_initial, n_rounds (picking rounds after the
        initial set, ``ceil((n_budget - n_initial) / k)``; 0 for 'full'), n_members, floor,
        n_random_draws (R, random subsets per round in the coverage check), similarity_form.
    """
    if selection not in METHODS:
        raise ValueError(f"selection: expected one of {METHODS}, got {selection!r}")
    seed = check_count(seed, "seed", low=0)
    if k_members is not None:
        k_members = check_count(k_members, "k_members (K)", low=2)
    floor = check_floor(floor)
    n_random_draws = check_count(n_random_draws, "n_random_draws", low=0)
    similarity_form = check_similarity_form(similarity_form)
    if isinstance(budget, bool) or not isinstance(budget, (int, float, np.floating)) \
            or not (0.0 < budget <= 1.0):
        raise ValueError(f"budget: expected a fraction of the pool in (0, 1], got {budget!r}")
    out = {"method": selection, "k": None, "k_c": None, "seed": seed, "budget": float(budget),
           "n_budget": n_pool, "n_initial": n_pool, "n_members": k_members, "floor": floor,
           "n_rounds": 0, "n_random_draws": n_random_draws, "similarity_form": similarity_form}
    if selection == "full":
        return out
    k = check_count(k_pick, "k_pick")
    k_c = k_candidates
    if k_c is not None:
        k_c = check_count(k_c, "k_candidates")
        if k_c < k:
            raise ValueError(f"k_candidates: expected k_pick <= k_candidates, got k_pick={k}, "
                             f"k_candidates={k_c}")
    elif selection == "suggestive":
        raise ValueError("k_candidates: selection 'suggestive' needs the number of candidates")
    n_budget = count_from_fraction(budget, n_pool)
    n_initial = _resolve_initial(n_pool, n_initial, initial_fraction, n_budget, budget)
    out.update(k=k, k_c=k_c, n_budget=n_budget, n_initial=n_initial,
               n_rounds=math.ceil((n_budget - n_initial) / k))
    return out
