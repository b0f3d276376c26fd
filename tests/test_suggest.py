"""Tests for qfcn.suggest: uncertainty, cosine similarity, greedy max-cover, picks, stage loop."""
from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict

import numpy as np
import pytest

from qfcn import stages, suggest


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


NAMES = [f"img{i:02d}" for i in range(30)]
DESC = np.random.default_rng(123).normal(size=(30, 6))


def make_fns(fail_at: int | None = None):
    """Deterministic train/predict: uncertainty = 1 - max cosine similarity to the annotated."""
    calls: list[tuple[int, list[str]]] = []

    def train_fn(stage, annotated):
        calls.append((stage, list(annotated)))
        if stage == fail_at:
            raise RuntimeError(f"simulated crash in stage {stage}")
        return list(annotated)

    def predict_fn(handle, names):
        idx = [NAMES.index(n) for n in names]
        ann = [NAMES.index(n) for n in handle]
        u = 1.0 - suggest.cosine_similarity(DESC[idx], DESC[ann]).max(axis=1)
        return u, DESC[idx], {"n": len(names)}

    return train_fn, predict_fn, calls


def picks(result):
    return [(r.stage, r.picked, r.uncertainty, r.gain, r.coverage, r.random_coverage,
             r.candidates) for r in result.stages]


SETTINGS = dict(method="suggestive", k=5, k_c=8, budget=0.5, n_initial=3, seed=7,
                progress=False)


# ------------------------------------------------------------------------- uncertainty
def test_uncertainty_hand_values():
    # pixel 0: members 0 and 1 -> std 0.5; pixel 1: both 1 -> 0; mean 0.25
    assert suggest.uncertainty([[[0.0, 1.0]], [[1.0, 1.0]]]) == pytest.approx(0.25)
    # three members 0.2, 0.5, 0.8: population variance 0.06 (ddof=0), not 0.09 (ddof=1)
    stack = np.array([0.2, 0.5, 0.8])[:, None, None] * np.ones((3, 4, 5))
    assert suggest.uncertainty(stack) == pytest.approx(math.sqrt(0.06))
    assert suggest.uncertainty(np.full((4, 3, 3), 0.3)) == 0.0
    assert suggest.uncertainty_map([[[0.0, 1.0]], [[1.0, 1.0]]]).tolist() == [[0.5, 0.0]]


def test_uncertainty_batch_matches_single():
    p = np.random.default_rng(0).random((6, 4, 7, 9))
    expected = [suggest.uncertainty(p[i]) for i in range(6)]
    np.testing.assert_allclose(suggest.uncertainty_batch(p), expected, rtol=1e-12)


@pytest.mark.parametrize("bad, match", [
    (np.full((1, 3, 3), 0.5), "K >= 2"),
    (np.full((2, 3, 3), 1.5), r"\[0, 1\]"),
    (np.array([[[0.1, np.nan]], [[0.2, 0.3]]]), "NaN"),
    (np.array([0.1, 0.2]), "dimensions"),
])
def test_uncertainty_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        suggest.uncertainty(bad)


def test_uncertainty_batch_bad_input():
    with pytest.raises(ValueError, match="K >= 2"):
        suggest.uncertainty_batch(np.zeros((3, 1, 2, 2)))


def test_ensemble_descriptor():
    d = np.array([[[1.0, 2.0]], [[3.0, 6.0]]])  # K=2, n=1, d=2
    assert suggest.ensemble_descriptor(d).tolist() == [[2.0, 4.0]]
    with pytest.raises(ValueError, match="member_descriptors"):
        suggest.ensemble_descriptor(np.zeros((2, 3)))


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
    # candidates (k_c=3): 1, 2, 3; gains 1.95, 1.95, 1.9 -> 1; then 2: 0.05, 3: 1.9 -> 3
    assert suggest.pick("suggestive", uncertainties=U4, similarity=SIM4, k=2, k_c=3) == [1, 3]
    assert suggest.pick("uncertainty", uncertainties=U4, k=2) == [1, 2]
    # k_c = k: the candidates are the picks
    assert suggest.pick("suggestive", uncertainties=U4, similarity=SIM4, k=2, k_c=2) == [1, 2]
    # k_c beyond the pool: every image is a candidate
    assert suggest.pick("suggestive", uncertainties=U4, similarity=SIM4, k=2, k_c=50) == [1, 3]
    assert suggest.top_uncertain([0.5, 0.7, 0.5, 0.1], 3) == [1, 0, 2]


def test_pick_random_seeded():
    a = suggest.pick("random", n_pool=20, k=6, rng=np.random.default_rng(3))
    b = suggest.pick("random", uncertainties=np.zeros(20), k=6, rng=np.random.default_rng(3))
    assert a == b and len(set(a)) == 6 and all(0 <= i < 20 for i in a)
    assert a != suggest.pick("random", n_pool=20, k=6, rng=np.random.default_rng(4))


@pytest.mark.parametrize("kwargs, match", [
    (dict(method="full", uncertainties=U4, k=2), "full"),
    (dict(method="bogus", uncertainties=U4, k=2), "method"),
    (dict(method="suggestive", uncertainties=U4, similarity=SIM4, k=3, k_c=2), "k_c"),
    (dict(method="suggestive", uncertainties=U4, similarity=SIM4, k=2), "k_c"),
    (dict(method="suggestive", uncertainties=U4, k=2, k_c=3), "similarity"),
    (dict(method="uncertainty", uncertainties=U4, k=5), "k: cannot pick 5"),
    (dict(method="uncertainty", k=2, n_pool=4), "uncertainties"),
    (dict(method="random", n_pool=4, k=2), "rng"),
    (dict(method="random", uncertainties=U4, n_pool=5, k=2,
          rng=np.random.default_rng(0)), "inconsistent"),
    (dict(method="suggestive", uncertainties=U4, similarity=SIM4[:, :3], k=2, k_c=3),
     "n_pool, n_pool"),
])
def test_pick_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        suggest.pick(**kwargs)


# --------------------------------------------------------------------------- stage loop
def test_count_from_fraction_rounds_half_up():
    assert stages.count_from_fraction(0.5, 85) == 43
    assert stages.count_from_fraction(0.5, 30) == 15
    assert stages.count_from_fraction(0.1, 24) == 2


def test_run_suggestion_reaches_budget(tmp_path):
    train_fn, predict_fn, calls = make_fns()
    res = stages.run_suggestion(NAMES, train_fn=train_fn, predict_fn=predict_fn,
                                 state_path=tmp_path / "state.json", **SETTINGS)
    ann = res.annotated
    assert len(ann) == 15 and len(set(ann)) == 15 and set(ann) <= set(NAMES)
    assert [len(r.picked) for r in res.stages] == [3, 5, 5, 2]  # last stage: what is left
    assert [r.n_annotated for r in res.stages] == [3, 8, 13, 15]
    assert [r.n_pool for r in res.stages] == [30, 27, 22, 17]
    assert res.train_calls == [1, 2, 3] and [c[0] for c in calls] == [1, 2, 3]
    assert calls[1][1] == res.annotated[:8]  # stage 2 trains on stages 0 and 1
    for rec in res.stages[1:]:
        pool = [n for n in NAMES if n not in set(res.annotated[:30 - rec.n_pool])]
        u, desc, _ = predict_fn(res.annotated[:30 - rec.n_pool], pool)
        expected = suggest.pick("suggestive", uncertainties=u,
                                similarity=suggest.cosine_similarity(desc, desc),
                                k=len(rec.picked), k_c=8)
        assert rec.picked == [pool[i] for i in expected]
        assert set(rec.picked) <= set(rec.candidates) and len(rec.candidates) == 8
        assert rec.uncertainty == pytest.approx([u[pool.index(n)] for n in rec.picked])
        assert sum(rec.gain) == pytest.approx(rec.coverage)
        assert rec.random_coverage is not None and rec.random_coverage_std >= 0
    assert res.extras[2] == {"n": 22}
    table = res.table()
    assert list(table.columns) == ["name", "stage", "uncertainty", "gain"]
    assert table["name"].tolist() == ann and table["stage"].tolist()[:4] == [0, 0, 0, 1]
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["done"] and len(state["stages"]) == 4
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary files left


def test_run_suggestion_resume_after_crash(tmp_path):
    full_train, full_predict, _ = make_fns()
    uninterrupted = stages.run_suggestion(NAMES, train_fn=full_train, predict_fn=full_predict,
                                           state_path=tmp_path / "a.json", **SETTINGS)
    state = tmp_path / "b.json"
    crash_train, predict_fn, _ = make_fns(fail_at=2)
    with pytest.raises(RuntimeError, match="stage 2"):
        stages.run_suggestion(NAMES, train_fn=crash_train, predict_fn=predict_fn,
                               state_path=state, **SETTINGS)
    saved = json.loads(state.read_text())
    assert [s["stage"] for s in saved["stages"]] == [0, 1] and not saved["done"]
    train_fn, predict_fn, calls = make_fns()
    resumed = stages.run_suggestion(NAMES, train_fn=train_fn, predict_fn=predict_fn,
                                     state_path=state, **SETTINGS)
    assert [c[0] for c in calls] == [2, 3]  # finished stages are not trained again
    assert resumed.resumed_stages == 2
    assert picks(resumed) == picks(uninterrupted)
    # a finished run: nothing is trained, the same result comes back
    train_fn, predict_fn, calls = make_fns()
    again = stages.run_suggestion(NAMES, train_fn=train_fn, predict_fn=predict_fn,
                                   state_path=state, **SETTINGS)
    assert calls == [] and picks(again) == picks(uninterrupted)


@pytest.mark.parametrize("change, match", [
    (dict(k=4), "k: saved 5, now 4"),
    (dict(seed=8), "seed"),
    (dict(method="uncertainty"), "method"),
    (dict(budget=0.6), "budget"),
    (dict(pool_names=list(reversed(NAMES))), "pool names differ"),
])
def test_run_suggestion_state_mismatch(tmp_path, change, match):
    train_fn, predict_fn, _ = make_fns()
    state = tmp_path / "state.json"
    stages.run_suggestion(NAMES, train_fn=train_fn, predict_fn=predict_fn, state_path=state,
                           **SETTINGS)
    kwargs = {**SETTINGS, "pool_names": NAMES, **change}
    with pytest.raises(stages.SuggestionStateError, match=match):
        stages.run_suggestion(train_fn=train_fn, predict_fn=predict_fn, state_path=state,
                               **kwargs)


def test_run_suggestion_corrupt_state(tmp_path):
    state = tmp_path / "state.json"
    state.write_text("{not json")
    train_fn, predict_fn, calls = make_fns()
    with pytest.raises(stages.SuggestionStateError, match="state.json"):
        stages.run_suggestion(NAMES, train_fn=train_fn, predict_fn=predict_fn,
                               state_path=state, **SETTINGS)
    assert calls == []


def test_run_suggestion_baselines():
    base = {**SETTINGS, "k_c": None}
    rand = stages.run_suggestion(NAMES, **{**base, "method": "random"})
    assert len(rand.annotated) == 15 and len(set(rand.annotated)) == 15
    assert rand.train_calls == [] and rand.stages[1].coverage is None
    assert rand.annotated == stages.run_suggestion(NAMES, **{**base, "method": "random"}).annotated
    other = stages.run_suggestion(NAMES, **{**base, "method": "random", "seed": 8})
    assert other.annotated != rand.annotated
    # with a model the random picks stay the same; the model only adds diagnostics
    train_fn, predict_fn, _ = make_fns()
    diag = stages.run_suggestion(NAMES, train_fn=train_fn, predict_fn=predict_fn,
                                  **{**base, "method": "random"})
    assert diag.annotated == rand.annotated and diag.stages[1].coverage is not None
    # uncertainty only: the k most uncertain of the pool
    train_fn, predict_fn, _ = make_fns()
    unc = stages.run_suggestion(NAMES, train_fn=train_fn, predict_fn=predict_fn,
                                 **{**base, "method": "uncertainty"})
    first = unc.stages[0].picked
    pool = [n for n in NAMES if n not in first]
    u = predict_fn(first, pool)[0]
    assert unc.stages[1].picked == [pool[i] for i in np.argsort(-u, kind="stable")[:5]]
    # same seed, same initial set for every method
    sug = stages.run_suggestion(NAMES, train_fn=train_fn, predict_fn=predict_fn, **SETTINGS)
    assert sug.stages[0].picked == unc.stages[0].picked == rand.stages[0].picked
    assert sug.annotated != unc.annotated
    # full: everything, no training
    full = stages.run_suggestion(NAMES, method="full", progress=False)
    assert full.annotated == NAMES and len(full.stages) == 1 and full.train_calls == []


def test_run_suggestion_initial_fraction():
    res = stages.run_suggestion(NAMES, method="random", k=4, initial_fraction=0.1, seed=1,
                                 progress=False)
    assert len(res.stages[0].picked) == 3 and len(res.annotated) == 15


@pytest.mark.parametrize("change, match", [
    (dict(budget=0.0), "budget"),
    (dict(budget=1.5), "budget"),
    (dict(k=0), "k: expected >= 1"),
    (dict(k_c=4), "k_c: expected k <= k_c"),
    (dict(k_c=None), "k_c"),
    (dict(n_initial=15), "n_initial"),
    (dict(n_initial=0), "n_initial"),
    (dict(initial_fraction=0.1), "exactly one"),
    (dict(n_members=1), r"n_members \(K\)"),
    (dict(method="nope"), "method"),
    (dict(seed=-1), "seed"),
    (dict(pool_names=NAMES + ["img00"]), "repeated"),
    (dict(pool_names=[]), "empty"),
    (dict(train_fn=None, predict_fn=None), "train_fn"),
])
def test_run_suggestion_bad_settings_before_training(tmp_path, change, match):
    train_fn, predict_fn, calls = make_fns()
    kwargs = {**SETTINGS, "pool_names": NAMES, "train_fn": train_fn,
              "predict_fn": predict_fn, "state_path": tmp_path / "s.json", **change}
    with pytest.raises(ValueError, match=match):
        stages.run_suggestion(**kwargs)
    assert calls == [] and not (tmp_path / "s.json").exists()


def test_run_suggestion_bad_predictions():
    train_fn, _, _ = make_fns()

    def bad_predict(handle, names):
        return np.zeros(len(names) + 1), np.zeros((len(names), 3)), {}

    with pytest.raises(ValueError, match="predict_fn: uncertainties shape"):
        stages.run_suggestion(NAMES, train_fn=train_fn, predict_fn=bad_predict, **SETTINGS)


def test_stage_record_roundtrip():
    rec = stages.StageRecord(stage=1, picked=["a"], n_pool=3, n_annotated=2, seconds=0.5,
                              uncertainty=[0.1], gain=[1.0], coverage=1.0)
    assert stages.StageRecord.from_dict(json.loads(json.dumps(asdict(rec)))) == rec


def test_validate_settings_resolves_counts():
    cfg = stages.validate_settings(85, method="suggestive", k=8, k_c=16, budget=0.5,
                                    n_initial=None, initial_fraction=0.1, seed=0, n_members=5)
    assert (cfg["n_budget"], cfg["n_initial"], cfg["n_members"]) == (43, 9, 5)
    full = stages.validate_settings(85, method="full", k=None, k_c=None, budget=0.5,
                                     n_initial=None, initial_fraction=None, seed=0)
    assert full["n_budget"] == full["n_initial"] == 85
    with pytest.raises(ValueError, match="initial set"):
        stages.validate_settings(4, method="random", k=1, k_c=None, budget=0.25,
                                  n_initial=1, initial_fraction=None, seed=0)
