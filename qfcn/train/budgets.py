"""Annotated sets at smaller budgets, read off one suggestion run's rounds (docs/method.md §5).

The suggestion loop annotates in rounds until its budget (e.g. half the pool): round 0 a seeded
random initial set, then ``k_pick`` images per round. On its way it passes through every smaller
budget, so the annotation-efficiency curve (object F1 against the share of the pool annotated)
needs no selection run per budget: final networks trained on the annotated set after an earlier
round give the curve's smaller points (issue 10, "Share work where the method allows").

The rule (:func:`budget_sets`): a budget ``b`` (a fraction of the pool) asks for
``n_b = b * n_pool`` images rounded half up (as the loop rounds its own budget); its annotated set
is the cumulative set after the LAST round whose cumulative size is at most ``n_b``. So the set
never exceeds the budget, and it equals it exactly when ``n_b`` is one of the rounds' cumulative
sizes (choose the budgets as the rounds' shares to get exact points; the actual size is returned
and recorded beside the budget). ``b = 1.0`` is the whole pool, which the loop never reaches:
it is the same set for every selection. A budget below round 0's size, or above the run's last
round (other than 1.0), is an error: the run holds no such set.

The record is ``suggestion.json`` as notebook 03 writes it (:meth:`qfcn.suggest.SuggestionResult.record`):
``{"stages": [{"stage": r, "picked": [names], "n_annotated": int, ...}, ...], ...}``; earlier
records under ``"rounds"`` are read too.

>>> rec = {"stages": [{"stage": 0, "picked": ["a", "b"]}, {"stage": 1, "picked": ["c", "d"]},
...                   {"stage": 2, "picked": ["e"]}]}
>>> pool = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]
>>> {b: s for b, s in budget_sets(rec, pool, [0.2, 0.3, 0.4, 0.5, 1.0]).items()}  # doctest: +NORMALIZE_WHITESPACE
{0.2: ['a', 'b'], 0.3: ['a', 'b'], 0.4: ['a', 'b', 'c', 'd'], 0.5: ['a', 'b', 'c', 'd', 'e'],
 1.0: ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j']}
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["budget_count", "budget_sets", "round_sets"]


def budget_count(budget: float, n_pool: int) -> int:
    """``budget * n_pool`` rounded half up (the suggestion loop's own rounding of its budget).

    >>> budget_count(0.5, 85), budget_count(0.1, 68)
    (43, 7)
    """
    return int(math.floor(budget * n_pool + 0.5))


def round_sets(record: Mapping[str, Any], pool: Sequence[str]) -> list[list[str]]:
    """The cumulative annotated set after each round of ``record`` (round 0 first), in the order
    the names were added; checked against ``pool`` (the suggestion run's pool, ``ds.train`` names).

    >>> round_sets({"stages": [{"stage": 0, "picked": ["b"]}, {"stage": 1, "picked": ["a"]}]}, ["a", "b"])
    [['b'], ['b', 'a']]
    """
    stages = record.get("stages", record.get("rounds"))
    if not isinstance(stages, list) or not stages:
        raise ValueError("suggestion record: expected a non-empty list under 'stages' (suggestion.json of notebook 03)")
    n0 = stages[0].get("n_pool") if isinstance(stages[0], Mapping) else None
    if n0 is not None and n0 != len(pool):
        raise ValueError(f"suggestion record: its pool had {n0} images, the pool given has {len(pool)}")
    known, seen, out, acc = set(pool), set(), [], []
    for i, st in enumerate(stages):
        picked = st.get("picked") if isinstance(st, Mapping) else None
        if st.get("stage", i) != i or not isinstance(picked, list):
            raise ValueError(f"suggestion record: stage {i} must have 'stage' {i} and a list 'picked'")
        bad = [n for j, n in enumerate(picked) if n not in known or n in seen or n in picked[:j]]
        if bad:
            raise ValueError(f"suggestion record: stage {i} picks {bad[:3]} that are not in the pool or were "
                             "picked before (is this the run's suggestion.json and the data step's pool?)")
        seen.update(picked)
        acc = acc + [str(n) for n in picked]
        out.append(acc)
    return out


def budget_sets(record: Mapping[str, Any], pool: Sequence[str], budgets: Sequence[float]) -> dict[float, list[str]]:
    """``{budget: annotated names}`` for each budget (a fraction of ``pool`` in (0, 1]) by the rule
    of the module docstring: the set after the last round of at most ``budget_count(b, len(pool))``
    images; 1.0 = the whole ``pool``. All budgets are checked before any is returned."""
    pool = [str(n) for n in pool]
    sets = round_sets(record, pool)
    bad = [b for b in budgets if isinstance(b, bool) or not isinstance(b, (int, float)) or not 0 < b <= 1]
    if bad or len(set(budgets)) != len(budgets):
        raise ValueError(f"efficiency_budgets: expected distinct fractions of the pool in (0, 1], got {list(budgets)}")
    out: dict[float, list[str]] = {}
    for b in budgets:
        if b == 1:
            out[b] = pool
            continue
        n_b = budget_count(b, len(pool))
        fits = [s for s in sets if len(s) <= n_b]
        if not fits:
            raise ValueError(f"efficiency_budgets: {b} of {len(pool)} images ({n_b}) is below the suggestion "
                             f"run's initial set ({len(sets[0])} images)")
        if n_b > len(sets[-1]):
            raise ValueError(f"efficiency_budgets: {b} of {len(pool)} images ({n_b}) is beyond the suggestion "
                             f"run's last round ({len(sets[-1])} images); use at most its budget, or 1.0 (whole pool)")
        out[b] = fits[-1]
    return out
