"""Tests for qfcn.suggest.rounds: the resumable suggestion loop and its records."""
from __future__ import annotations

import json

import numpy as np
import pytest

from qfcn import suggest
from qfcn.suggest import rounds


NAMES = [f"img{i:02d}" for i in range(30)]
DESC = np.random.default_rng(123).normal(size=(30, 6))


def make_fns(fail_at: int | None = None):
    """Deterministic train/predict: uncertainty = 1 - max cosine similarity to the annotated."""
    calls: list[tuple[int, list[str]]] = []

    def train_fn(round_, annotated):
        calls.append((round_, list(annotated)))
        if round_ == fail_at:
            raise RuntimeError(f"simulated crash in round {round_}")
        return list(annotated)

    def predict_fn(handle, names):
        idx = [NAMES.index(n) for n in names]
        ann = [NAMES.index(n) for n in handle]
        u = 1.0 - suggest.cosine_similarity(DESC[idx], DESC[ann]).max(axis=1)
        return u, DESC[idx], {"n": len(names)}

    return train_fn, predict_fn, calls


def picks(result):
    return [(r.round, r.picked, r.uncertainty, r.gain, r.coverage, r.random_coverage,
             r.candidates) for r in result.rounds]


SETTINGS = dict(selection="suggestive", k_pick=5, k_candidates=8, budget=0.5, n_initial=3, seed=7,
                progress=False)


# --------------------------------------------------------------------------- round loop
def test_run_suggestion_reaches_budget(tmp_path):
    train_fn, predict_fn, calls = make_fns()
    res = rounds.run_suggestion(NAMES, train_fn=train_fn, predict_fn=predict_fn,
                                 state_path=tmp_path / "state.json", **SETTINGS)
    ann = res.annotated
    assert len(ann) == 15 and len(set(ann)) == 15 and set(ann) <= set(NAMES)
    assert [len(r.picked) for r in res.rounds] == [3, 5, 5, 2]  # last round: what is left
    assert [r.n_annotated for r in res.rounds] == [3, 8, 13, 15]
    assert [r.n_pool for r in res.rounds] == [30, 27, 22, 17]
    assert res.train_calls == [1, 2, 3] and [c[0] for c in calls] == [1, 2, 3]
    assert calls[1][1] == res.annotated[:8]  # round 2 trains on rounds 0 and 1
    for rec in res.rounds[1:]:
        pool = [n for n in NAMES if n not in set(res.annotated[:30 - rec.n_pool])]
        u, desc, _ = predict_fn(res.annotated[:30 - rec.n_pool], pool)
        expected = suggest.pick("suggestive", uncertainties=u,
                                similarity=suggest.cosine_similarity(desc, desc),
                                k_pick=len(rec.picked), k_candidates=8)
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
    uninterrupted = rounds.run_suggestion(NAMES, train_fn=full_train, predict_fn=full_predict,
                                           state_path=tmp_path / "a.json", **SETTINGS)
    state = tmp_path / "b.json"
    crash_train, predict_fn, _ = make_fns(fail_at=2)
    with pytest.raises(RuntimeError, match="round 2"):
        rounds.run_suggestion(NAMES, train_fn=crash_train, predict_fn=predict_fn,
                               state_path=state, **SETTINGS)
    saved = json.loads(state.read_text())
    assert [s["stage"] for s in saved["stages"]] == [0, 1] and not saved["done"]
    train_fn, predict_fn, calls = make_fns()
    resumed = rounds.run_suggestion(NAMES, train_fn=train_fn, predict_fn=predict_fn,
                                     state_path=state, **SETTINGS)
    assert [c[0] for c in calls] == [2, 3]  # finished rounds are not trained again
    assert resumed.resumed_rounds == 2
    assert picks(resumed) == picks(uninterrupted)
    # a finished run: nothing is trained, the same result comes back
    train_fn, predict_fn, calls = make_fns()
    again = rounds.run_suggestion(NAMES, train_fn=train_fn, predict_fn=predict_fn,
                                   state_path=state, **SETTINGS)
    assert calls == [] and picks(again) == picks(uninterrupted)


@pytest.mark.parametrize("change, match", [
    (dict(k_pick=4), "k: saved 5, now 4"),
    (dict(seed=8), "seed"),
    (dict(selection="uncertainty"), "method"),
    (dict(budget=0.6), "budget"),
    (dict(pool_names=list(reversed(NAMES))), "pool names differ"),
])
def test_run_suggestion_state_mismatch(tmp_path, change, match):
    train_fn, predict_fn, _ = make_fns()
    state = tmp_path / "state.json"
    rounds.run_suggestion(NAMES, train_fn=train_fn, predict_fn=predict_fn, state_path=state,
                           **SETTINGS)
    kwargs = {**SETTINGS, "pool_names": NAMES, **change}
    with pytest.raises(rounds.SuggestionStateError, match=match):
        rounds.run_suggestion(train_fn=train_fn, predict_fn=predict_fn, state_path=state,
                               **kwargs)


def test_run_suggestion_corrupt_state(tmp_path):
    state = tmp_path / "state.json"
    state.write_text("{not json")
    train_fn, predict_fn, calls = make_fns()
    with pytest.raises(rounds.SuggestionStateError, match="state.json"):
        rounds.run_suggestion(NAMES, train_fn=train_fn, predict_fn=predict_fn,
                               state_path=state, **SETTINGS)
    assert calls == []


def test_run_suggestion_baselines():
    base = {**SETTINGS, "k_candidates": None}
    rand = rounds.run_suggestion(NAMES, **{**base, "selection": "random"})
    assert len(rand.annotated) == 15 and len(set(rand.annotated)) == 15
    assert rand.train_calls == [] and rand.rounds[1].coverage is None
    assert rand.annotated == rounds.run_suggestion(NAMES, **{**base, "selection": "random"}).annotated
    other = rounds.run_suggestion(NAMES, **{**base, "selection": "random", "seed": 8})
    assert other.annotated != rand.annotated
    # with a model the random picks stay the same; the model only adds diagnostics
    train_fn, predict_fn, _ = make_fns()
    diag = rounds.run_suggestion(NAMES, train_fn=train_fn, predict_fn=predict_fn,
                                  **{**base, "selection": "random"})
    assert diag.annotated == rand.annotated and diag.rounds[1].coverage is not None
    # uncertainty only: the k most uncertain of the pool
    train_fn, predict_fn, _ = make_fns()
    unc = rounds.run_suggestion(NAMES, train_fn=train_fn, predict_fn=predict_fn,
                                 **{**base, "selection": "uncertainty"})
    first = unc.rounds[0].picked
    pool = [n for n in NAMES if n not in first]
    u = predict_fn(first, pool)[0]
    assert unc.rounds[1].picked == [pool[i] for i in np.argsort(-u, kind="stable")[:5]]
    # same seed, same initial set for every method
    sug = rounds.run_suggestion(NAMES, train_fn=train_fn, predict_fn=predict_fn, **SETTINGS)
    assert sug.rounds[0].picked == unc.rounds[0].picked == rand.rounds[0].picked
    assert sug.annotated != unc.annotated
    # full: everything, no training
    full = rounds.run_suggestion(NAMES, selection="full", progress=False)
    assert full.annotated == NAMES and len(full.rounds) == 1 and full.train_calls == []


def test_run_suggestion_initial_fraction():
    res = rounds.run_suggestion(NAMES, selection="random", k_pick=4, initial_fraction=0.1, seed=1,
                                 progress=False)
    assert len(res.rounds[0].picked) == 3 and len(res.annotated) == 15


@pytest.mark.parametrize("change, match", [
    (dict(budget=0.0), "budget"),
    (dict(budget=1.5), "budget"),
    (dict(k_pick=0), "k_pick: expected >= 1"),
    (dict(k_candidates=4), "k_candidates: expected k_pick <= k_candidates"),
    (dict(k_candidates=None), "k_candidates"),
    (dict(n_initial=15), "n_initial"),
    (dict(n_initial=0), "n_initial"),
    (dict(initial_fraction=0.1), "exactly one"),
    (dict(k_members=1), r"k_members \(K\)"),
    (dict(selection="nope"), "selection"),
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
        rounds.run_suggestion(**kwargs)
    assert calls == [] and not (tmp_path / "s.json").exists()


def test_run_suggestion_bad_predictions():
    train_fn, _, _ = make_fns()

    def bad_predict(handle, names):
        return np.zeros(len(names) + 1), np.zeros((len(names), 3)), {}

    with pytest.raises(ValueError, match="predict_fn: uncertainties shape"):
        rounds.run_suggestion(NAMES, train_fn=train_fn, predict_fn=bad_predict, **SETTINGS)


def test_round_record_roundtrip():
    rec = rounds.RoundRecord(round=1, picked=["a"], n_pool=3, n_annotated=2, seconds=0.5,
                              uncertainty=[0.1], gain=[1.0], coverage=1.0)
    assert rounds.RoundRecord.from_dict(json.loads(json.dumps(rec.to_dict()))) == rec
    assert list(rec.to_dict())[:2] == ["stage", "picked"]  # the persisted key, as before


def test_result_record_and_coverage_rows():
    train_fn, predict_fn, _ = make_fns()
    res = rounds.run_suggestion(NAMES, train_fn=train_fn, predict_fn=predict_fn, **SETTINGS)
    record = res.record()  # what suggestion.json stores besides the selection
    assert record["annotated"] == res.annotated
    assert json.dumps(record["table"]) == json.dumps(res.table().to_dict("records"))  # NaN-safe
    assert [r["stage"] for r in record["stages"]] == [0, 1, 2, 3]
    assert [rounds.RoundRecord.from_dict(r) for r in record["stages"]] == res.rounds
    cov = res.coverage_rows()
    assert [c["round"] for c in cov] == [1, 2, 3]
    assert [c["picked"] for c in cov] == [r.coverage for r in res.rounds[1:]]
    assert all(c["random_std"] >= 0 for c in cov)
