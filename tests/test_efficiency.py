"""The annotation-efficiency curve: budgets -> annotated sets read off a suggestion record
(qfcn.train.budgets), and qfcn.score.efficiency_rows training and scoring a tiny ensemble per budget."""
import dataclasses

import numpy as np
import pytest

from qfcn import data, figures, score, train
from qfcn.train.budgets import budget_count, budget_sets, round_sets

POOL = [f"train_{i}" for i in range(1, 21)]  # 20 images
# round 0: 2 random images, then 3 per round, the last round the remainder of a 50% budget (10)
RECORD = {"stages": [{"stage": 0, "picked": ["train_5", "train_9"], "n_pool": 20},
                     {"stage": 1, "picked": ["train_1", "train_2", "train_3"]},
                     {"stage": 2, "picked": ["train_20", "train_11", "train_7"]},
                     {"stage": 3, "picked": ["train_4", "train_6"]}]}


def test_round_sets_are_cumulative_in_pick_order():
    sets = round_sets(RECORD, POOL)
    assert [len(s) for s in sets] == [2, 5, 8, 10]
    assert sets[2] == ["train_5", "train_9", "train_1", "train_2", "train_3", "train_20", "train_11", "train_7"]


def test_budget_takes_the_last_round_within_it_and_the_whole_pool_at_one():
    got = budget_sets(RECORD, POOL, [0.1, 0.25, 0.4, 0.5, 1.0])
    # 0.1 -> 2 (round 0); 0.25 -> 5 (round 1 exactly); 0.4 -> 8 (round 2); 0.5 -> 10; 1.0 -> the pool
    assert {b: len(s) for b, s in got.items()} == {0.1: 2, 0.25: 5, 0.4: 8, 0.5: 10, 1.0: 20}
    assert got[1.0] == POOL and got[0.5] == round_sets(RECORD, POOL)[-1]
    assert len(budget_sets(RECORD, POOL, [0.35])[0.35]) == 5  # 7 images asked: round 2 (8) is over it
    assert budget_count(0.125, 20) == 3  # 2.5 rounded half up


@pytest.mark.parametrize("budgets, match", [
    ([0.05], "below the suggestion run's initial set"),
    ([0.7], "beyond the suggestion run's last round"),
    ([0.0], r"in \(0, 1\]"), ([1.5], r"in \(0, 1\]"), ([0.5, 0.5], "distinct"), ([True], r"in \(0, 1\]"),
])
def test_budget_sets_rejects_budgets_the_run_holds_no_set_for(budgets, match):
    with pytest.raises(ValueError, match=match):
        budget_sets(RECORD, POOL, budgets)


def test_budget_sets_rejects_a_record_of_another_pool():
    with pytest.raises(ValueError, match="its pool had 20 images"):
        budget_sets(RECORD, POOL[:19], [0.5])
    with pytest.raises(ValueError, match="not in the pool or were picked before"):
        budget_sets({"stages": [{"stage": 0, "picked": ["a", "a"]}]}, ["a", "b"], [1.0])
    with pytest.raises(ValueError, match="non-empty list under 'stages'"):
        budget_sets({"annotated": ["a"]}, ["a"], [1.0])


def _samples(n, split, seed):
    """Dark squares (glands) on a pale background, 48x48."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        inst = np.zeros((48, 48), np.int32)
        img = np.full((48, 48, 3), 225, np.uint8)
        for g in range(1, 3):
            y, x = rng.integers(4, 30, 2)
            inst[y:y + 12, x:x + 12] = g
            img[y:y + 12, x:x + 12] = (160, 70, 150)
        out.append(data.Sample(name=f"{split}_{k + 1}", split=split, image=img, instances=inst))
    return out


def test_efficiency_rows_train_and_score_each_budget_and_reuse_the_run_s_own(tmp_path):
    pool, val = _samples(4, "train", 0), _samples(1, "val", 1)
    tests = {"test_a": _samples(1, "testA", 2), "test_b": _samples(1, "testB", 3)}
    record = {"annotated": ["train_3", "train_1"],
              "stages": [{"stage": 0, "picked": ["train_3"]}, {"stage": 1, "picked": ["train_1"]}]}
    cfg = train.TrainConfig(model={"width": 0.125, "n_stages": 3}, crop_size=32, batch_size=2, n_crops=4,
                            float_steps=2, retrain_steps=1, ckpt_every=2, device="cpu", augment=False)
    ntq = dataclasses.replace(cfg, scheme="inq", bits=5)
    kw = dict(budgets=[0.25, 1.0], n_members=1, val=val, tests=tests, out_dir=tmp_path, selection="random", seed=0)
    with pytest.raises(ValueError, match="tests: expected the keys test_a and test_b"):
        score.efficiency_rows(record, pool, cfg, ntq, **{**kw, "tests": {"test_a": tests["test_a"]}})
    rows = score.efficiency_rows(record, pool, cfg, ntq, **kw)
    assert [(r["budget"], r["quantized"], r["n_images"], r["n_pool"]) for r in rows] == \
        [(0.25, False, 1, 4), (0.25, True, 1, 4), (1.0, False, 4, 4), (1.0, True, 4, 4)]
    assert all(set(r) == {"selection", "quantized", "budget", "n_images", "n_pool", "seed", "f1_a", "f1_b"}
               and 0 <= r["f1_a"] <= 1 and 0 <= r["f1_b"] <= 1 for r in rows)
    assert (tmp_path / "b0.25" / "float" / "member_0" / "done.json").is_file()
    assert (tmp_path / "b1" / "ntq" / "member_0" / "done.json").is_file()
    assert score.efficiency_rows(record, pool, cfg, ntq, **kw) == rows  # finished members are reused
    # the budget whose set is the run's own annotated list (0.5 of 4 = 2) takes the run's ensembles: given
    # the (finished, reloaded) whole-pool networks as 'main', it scores exactly what the 1.0 budget scored
    fl = train.train_ensemble(pool, cfg, k=1, out_dir=tmp_path / "b1" / "float", bootstrap=False)
    main = train.derive_variants(fl, pool, ntq, n_members=1, variants=[], out_dir=tmp_path / "b1")
    half = score.efficiency_rows(record, pool, cfg, ntq, **{**kw, "budgets": [0.5]}, main=main)
    assert not (tmp_path / "b0.5").exists()
    assert [(r["n_images"], r["f1_a"], r["f1_b"]) for r in half] == [(2, r["f1_a"], r["f1_b"]) for r in rows[2:]]


def test_efficiency_lines_draws_one_line_per_selection_and_states_n(tmp_path):
    pts = [dict(line=f"{sel}, float", panel=panel, share=share, mean=0.5 + share / 3, low=0.4 + share / 3,
                high=0.6 + share / 3, n=3) for sel in ("suggestive", "random") for panel in ("Test A", "Test B")
           for share in (0.1, 0.3, 0.5, 1.0)]
    pts.append(dict(line="random, quantized", panel="Test A", share=0.5, mean=0.6, low=None, high=None, n=1))
    cap = figures.efficiency_lines(pts, tmp_path / "eff.png")
    assert (tmp_path / "eff.png").stat().st_size > 1000
    assert "n = 1, 3 seeds" in cap and "share of the training pool annotated" in cap
