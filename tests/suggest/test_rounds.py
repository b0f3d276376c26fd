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
    return [(r.round, r.picked, r.uncertainty, r.gain, r.coverage, r.coverage_random_mean,
             r.coverage_z, r.candidates) for r in result.rounds]


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
                                similarity=suggest.descriptor_similarity(desc),
                                k_pick=len(rec.picked), k_candidates=8)
        assert rec.picked == [pool[i] for i in expected]
        assert set(rec.picked) <= set(rec.candidates) and len(rec.candidates) == 8
        assert rec.uncertainty == pytest.approx([u[pool.index(n)] for n in rec.picked])
        assert sum(rec.gain) == pytest.approx(rec.coverage)
        assert rec.coverage_random_mean is not None and rec.coverage_random_sd >= 0
        assert rec.coverage_reference == "candidates" and rec.coverage_z is not None
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
    assert [c["coverage"] for c in cov] == [r.coverage for r in res.rounds[1:]]
    assert all(c["coverage_random_sd"] >= 0 for c in cov)
    assert [c["coverage_z"] for c in cov] == [r.coverage_z for r in res.rounds[1:]]
    assert [c["n_picked"] for c in cov] == [5, 5, 2]


# ------------------------------------------------------------- coverage check per round
def test_coverage_z_recorded_and_seeded_from_its_own_stream():
    train_fn, predict_fn, _ = make_fns()
    res = rounds.run_suggestion(NAMES, train_fn=train_fn, predict_fn=predict_fn, **SETTINGS)
    again = rounds.run_suggestion(NAMES, train_fn=train_fn, predict_fn=predict_fn, **SETTINGS)
    assert picks(res) == picks(again)
    for rec in res.rounds[1:]:
        pool = [n for n in NAMES if n not in set(res.annotated[:30 - rec.n_pool])]
        desc = DESC[[NAMES.index(n) for n in pool]]
        sim = suggest.descriptor_similarity(desc)
        expected = suggest.coverage_against_random(
            sim, [pool.index(n) for n in rec.picked], [pool.index(n) for n in rec.candidates],
            n_draws=200, rng=np.random.default_rng([SETTINGS["seed"], rec.round, 3]))
        assert rec.coverage == pytest.approx(expected["coverage"])
        assert rec.coverage_z == pytest.approx(expected["coverage_z"])
        assert rec.coverage_random_sd == pytest.approx(expected["coverage_random_sd"])
    # the check draws from a stream of its own: no draws, same picks
    train_fn, predict_fn, _ = make_fns()
    bare = rounds.run_suggestion(NAMES, train_fn=train_fn, predict_fn=predict_fn, n_random_draws=0,
                                 **SETTINGS)
    assert bare.annotated == res.annotated and bare.rounds[1].coverage_z is None
    assert bare.rounds[1].coverage == res.rounds[1].coverage


@pytest.mark.parametrize("draws", [0, 7, 200])
def test_random_picks_unchanged_by_the_coverage_check(draws):
    base = {**SETTINGS, "selection": "random", "k_candidates": None}
    bare = rounds.run_suggestion(NAMES, **base)
    train_fn, predict_fn, _ = make_fns()
    diag = rounds.run_suggestion(NAMES, train_fn=train_fn, predict_fn=predict_fn, n_random_draws=draws, **base)
    assert diag.annotated == bare.annotated
    assert all(r.coverage_z is None and r.coverage_reference is None for r in bare.rounds)
    rec = diag.rounds[1]
    assert rec.coverage_reference == "pool" and (rec.coverage_z is None) == (draws == 0)
    # uncertainty only: compared with random subsets of the whole pool as well
    unc = rounds.run_suggestion(NAMES, train_fn=train_fn, predict_fn=predict_fn, n_random_draws=draws,
                                **{**base, "selection": "uncertainty"})
    assert unc.rounds[1].coverage_reference == "pool" and (unc.rounds[1].coverage_z is None) == (draws == 0)


def test_similarity_form_is_a_setting(tmp_path):
    train_fn, predict_fn, _ = make_fns()
    state = tmp_path / "state.json"
    old = rounds.run_suggestion(NAMES, train_fn=train_fn, predict_fn=predict_fn, state_path=state,
                                similarity_form="mean_descriptor", **SETTINGS)
    new = rounds.run_suggestion(NAMES, train_fn=train_fn, predict_fn=predict_fn, **SETTINGS)
    assert old.settings["similarity_form"] == "mean_descriptor"
    assert new.settings["similarity_form"] == "per_member_centred"
    pool = [n for n in NAMES if n not in old.rounds[0].picked]
    u, desc, _ = predict_fn(old.rounds[0].picked, pool)
    expected = suggest.pick("suggestive", uncertainties=u, similarity=suggest.cosine_similarity(desc, desc),
                            k_pick=5, k_candidates=8)
    assert old.rounds[1].picked == [pool[i] for i in expected]
    with pytest.raises(rounds.SuggestionStateError, match="similarity_form: saved 'mean_descriptor'"):
        rounds.run_suggestion(NAMES, train_fn=train_fn, predict_fn=predict_fn, state_path=state, **SETTINGS)
    # a state file from before the setting existed does not resume silently
    saved = json.loads(state.read_text())
    del saved["settings"]["similarity_form"]
    state.write_text(json.dumps(saved))
    with pytest.raises(rounds.SuggestionStateError, match="similarity_form: saved None"):
        rounds.run_suggestion(NAMES, train_fn=train_fn, predict_fn=predict_fn, state_path=state, **SETTINGS)
    with pytest.raises(ValueError, match="similarity_form: expected one of"):
        rounds.run_suggestion(NAMES, train_fn=train_fn, predict_fn=predict_fn, similarity_form="cos",
                              **SETTINGS)


def test_per_member_descriptors_accepted():
    members = np.stack([DESC, DESC[:, ::-1] * 2.0], axis=1)  # (30, 2, 6), channels of member 1 permuted

    def train_fn(round_, annotated):
        return list(annotated)

    def predict_fn(handle, names):
        idx = [NAMES.index(n) for n in names]
        return make_fns()[1](handle, names)[0], members[idx], {}

    train_2d, predict_2d, _ = make_fns()
    two = rounds.run_suggestion(NAMES, train_fn=train_fn, predict_fn=predict_fn, **SETTINGS)
    one = rounds.run_suggestion(NAMES, train_fn=train_2d, predict_fn=predict_2d, **SETTINGS)
    assert two.annotated == one.annotated  # the same content on unrelated channels picks the same


def test_small_initial_set_gives_four_picking_rounds():
    names = [f"t{i:02d}" for i in range(72)]  # a GlaS-sized pool without the validation images
    res = rounds.run_suggestion(names, selection="random", k_pick=8, initial_fraction=0.1, budget=0.5,
                                seed=0, progress=False)
    assert [len(r.picked) for r in res.rounds] == [7, 8, 8, 8, 5]
    assert res.settings["n_rounds"] == 4
