"""The contrast engine: paired Student-t statistics, MDE, verdict direction, and the contrasts
declared as data, on hand-made tidy rows."""
import math

import pandas as pd
import pytest

from qfcn.study import contrasts as C

T975 = {2: 4.302652729911275, 4: 2.7764451051977987}  # t.ppf(0.975, df), from tables
T80 = {2: 1.0606601717798212, 4: 0.9409645003252013}  # t.ppf(0.8, df)


def test_known_interval_mde_and_seed_count():
    s = C.paired_stats([0.01, 0.02, 0.03], "f1")  # mean 0.02, sd 0.01, n 3
    half = T975[2] * 0.01 / math.sqrt(3)
    assert s["diff"] == pytest.approx(0.02) and s["sd"] == pytest.approx(0.01) and s["n"] == 3
    assert (s["low"], s["high"]) == pytest.approx((0.02 - half, 0.02 + half))
    assert s["mde"] == pytest.approx((T975[2] + T80[2]) * 0.01 / math.sqrt(3))
    assert s["verdict"] == "inconclusive" and s["values"] == [0.01, 0.02, 0.03]
    # MDE 0.01 at sd 0.01: n = 10 gives (2.262 + 0.883) / sqrt(10) = 0.9946 <= 1, n = 9 gives 1.065
    assert s["seeds_for_mde_0.01"] == 10
    assert C.mde(0.01, 10) <= 0.01 < C.mde(0.01, 9)
    five = C.paired_stats([0.1, 0.2, 0.3, 0.4, 0.5], "object_dice")
    assert five["mde"] == pytest.approx((T975[4] + T80[4]) * five["sd"] / math.sqrt(5))
    assert five["seeds_for_mde_0.01"] is not None and C.mde(five["sd"], five["seeds_for_mde_0.01"]) <= 0.01


@pytest.mark.parametrize("values, metric, verdict", [
    ([0.10, 0.11, 0.12], "f1", "a better"),
    ([-0.10, -0.11, -0.12], "f1", "b better"),
    ([-0.10, -0.11, -0.12], "object_dice", "b better"),
    ([3.0, 4.0, 5.0], "object_hausdorff", "b better"),  # a is farther from the truth
    ([-3.0, -4.0, -5.0], "object_hausdorff", "a better"),
    ([0.1, -0.1, 0.05], "f1", "inconclusive"),
    ([0.0, 0.0], "f1", "inconclusive"),  # interval [0, 0] contains 0
    ([0.02, 0.02], "f1", "a better"),  # no spread, interval [0.02, 0.02] excludes 0
])
def test_verdict_sides_and_direction(values, metric, verdict):
    assert C.paired_stats(values, metric)["verdict"] == verdict


def test_verdict_is_inconclusive_exactly_when_the_interval_contains_zero():
    for vals in ([0.01, 0.05], [0.01, 0.02, 0.03], [0.03, 0.04, 0.05, 0.02], [-0.2, 0.01, 0.3]):
        s = C.paired_stats(vals, "f1")
        assert (s["verdict"] == "inconclusive") == (s["low"] <= 0 <= s["high"])


def test_one_seed_and_none_need_more_seeds():
    one = C.paired_stats([0.1], "f1")
    assert one["verdict"] == "needs more seeds" and one["n"] == 1 and one["diff"] == 0.1
    assert one["low"] is None and one["high"] is None and one["mde"] is None
    assert C.paired_stats([float("nan")], "f1")["n"] == 0
    with pytest.raises(ValueError, match="metric='iou'"):
        C.paired_stats([0.1, 0.2], "iou")


def test_arm_interval_clips_bounded_metrics_only():
    f1 = C.arm_interval([0.99, 0.9], "f1")
    half = 12.706204736174707 * math.sqrt(0.00405) / math.sqrt(2)  # t(0.975, 1) * sd / sqrt(2)
    assert f1["high"] == 1.0 and f1["low"] == pytest.approx(0.945 - half) and f1["clipped"]
    assert f1["mean"] == pytest.approx(0.945) and f1["values"] == [0.99, 0.9] and f1["n"] == 2
    h = C.arm_interval([40.0, 50.0], "object_hausdorff")
    assert h["low"] < 0 and not h["clipped"]


def _rows(name, seed, variants, *, ntq_bits=5, selection="suggestive", main="ntq"):
    """Tidy rows of one run: ``variants`` = {variant: (scheme, test_a f1, test_a hausdorff)}."""
    return [dict(name=name, seed=seed, run_dir=f"{name}-s{seed}", variant=v, main=v == main, scheme=sch,
                 bits=32 if sch == "float" else ntq_bits, ntq_bits=ntq_bits, selection=selection, split="test_a",
                 f1=f, object_dice=f, object_hausdorff=h)
            for v, (sch, f, h) in variants.items()]


@pytest.fixture
def tidy():
    rows = []
    for s in range(3):
        rows += _rows("qsa5-ntq5", s, {"ntq": ("inq", 0.80 + s / 100, 20.0), "float_control": ("float", 0.82, 18.0),
                                      "uniform": ("uniform", 0.70, 30.0), "single": ("inq", 0.75, 25.0)})
        rows += _rows("qsa7-ntq7", s, {"ntq": ("inq", 0.90, 10.0), "float_control": ("float", 0.85 + s / 100, 11.0)},
                      ntq_bits=7)
        rows += _rows("sa-float", s, {"float": ("float", 0.81, 19.0)}, ntq_bits=32, main="float")
    rows += _rows("random-float", 1, {"float": ("float", 0.70, 40.0)}, ntq_bits=32, selection="random", main="float")
    # a run whose NTQ is uniform: its other scheme is INQ, under the variant name "inq"
    rows += _rows("qsa5-uni5", 0, {"ntq": ("uniform", 0.6, 1.0), "inq": ("inq", 0.7, 1.0)})
    return pd.DataFrame(rows)


def _get(entries, cid, metric="f1", run=None):
    return [e for e in entries if e["id"] == cid and e["metric"] == metric and e["split"] == "test_a"
            and (run is None or e["run"] == run)]


def test_within_contrasts_per_configuration_never_pooled(tidy):
    out = C.evaluate(tidy, splits=("test_a",))
    ntq = {e["run"]: e for e in _get(out, "ntq_vs_float_control")}
    assert set(ntq) == {"qsa5-ntq5", "qsa7-ntq7"}
    assert ntq["qsa5-ntq5"]["values"] == pytest.approx([-0.02, -0.01, 0.0]) and ntq["qsa5-ntq5"]["seeds"] == [0, 1, 2]
    assert ntq["qsa5-ntq5"]["label"] == "NTQ-5 vs its float control (same extra steps)"
    assert ntq["qsa7-ntq7"]["label"].startswith("NTQ-7") and ntq["qsa7-ntq7"]["verdict"] == "a better"
    haus = _get(out, "ntq_vs_float_control", "object_hausdorff", "qsa5-ntq5")[0]
    assert haus["diff"] == pytest.approx(2.0) and haus["verdict"] == "b better"  # NTQ is 2 px farther: worse
    inq = {e["run"]: e for e in _get(out, "inq_vs_uniform")}
    assert inq["qsa5-ntq5"]["values"] == pytest.approx([0.10, 0.11, 0.12])
    assert inq["qsa5-uni5"]["values"] == pytest.approx([0.1]) and inq["qsa5-uni5"]["verdict"] == "needs more seeds"
    ens = {e["run"]: e for e in _get(out, "ensemble_vs_single")}
    assert set(ens) == {"qsa5-ntq5"} and ens["qsa5-ntq5"]["values"] == pytest.approx([0.05, 0.06, 0.07])


def test_between_contrasts_pair_on_shared_seeds_and_record_missing_arms(tidy):
    out = C.evaluate(tidy, splits=("test_a",))
    q = _get(out, "qsa_ntq_vs_sa")[0]
    assert q["kind"] == "between" and q["run"] is None and q["values"] == pytest.approx([-0.01, 0.0, 0.01])
    r = _get(out, "suggestive_vs_random")[0]
    assert r["seeds"] == [1] and r["values"] == pytest.approx([0.11]) and r["verdict"] == "needs more seeds"
    missing = _get(out, "qsa_vs_sa")[0]
    assert missing["verdict"] == "missing" and missing["n"] == 0 and "qsa5-float" in missing["missing"]
    assert _get(out, "ntq_vs_ptq")[0]["verdict"] == "missing"  # no ptq variant anywhere
    renamed = C.evaluate(tidy, splits=("test_a",), run_names={**C.RUN_NAMES, "qsa5": "qsa7-ntq7"})
    assert _get(renamed, "qsa_vs_sa")[0]["values"] == pytest.approx([0.09, 0.09, 0.09])


def test_an_arm_can_be_a_variant_derived_in_another_run(tidy):
    """The standard profile gives float SA as the float variant of its sa-ntq5 run, and its
    step-matched control as that run's float_control: between contrasts then pair within runs."""
    rows = []
    for s in range(3):
        rows += _rows("sa-ntq5", s, {"ntq": ("inq", 0.80 + s / 100, 20.0), "float": ("float", 0.78, 21.0),
                                    "float_control": ("float", 0.79, 20.5)})
        rows += _rows("qsa5-ntq5", s, {"ntq": ("inq", 0.83, 20.0), "float": ("float", 0.81, 20.0)})
    out = C.evaluate(pd.DataFrame(rows), splits=("test_a",))
    assert _get(out, "sa_ntq_vs_sa")[0]["values"] == pytest.approx([0.02, 0.03, 0.04])
    assert _get(out, "qsa_vs_sa")[0]["values"] == pytest.approx([0.03, 0.03, 0.03])
    assert _get(out, "qsa_ntq_vs_sa_control")[0]["values"] == pytest.approx([0.04, 0.04, 0.04])
    assert "sa-float" in _get(out, "suggestive_vs_random")[0]["missing"] or \
        _get(out, "suggestive_vs_random")[0]["verdict"] == "missing"
    both = pd.concat([pd.DataFrame(rows), tidy])  # a separate sa-float run, listed first, wins
    assert C.arm_rows(both, "sa")[1] == "sa-float"


def test_evaluate_refuses_ambiguous_arms_and_missing_columns(tidy):
    dup = pd.concat([tidy, tidy[(tidy.name == "qsa5-ntq5") & (tidy.variant == "ntq")].assign(variant="inq")])
    with pytest.raises(ValueError, match="inq_vs_uniform: arm a"):
        C.evaluate(dup, splits=("test_a",))
    with pytest.raises(ValueError, match="lack columns"):
        C.evaluate(tidy.drop(columns="run_dir"))
    assert all(e["verdict"] == "missing" for e in C.evaluate(pd.DataFrame()))


def test_contrast_ids_are_unique_and_cover_issue_10():
    ids = [c["id"] for c in C.CONTRASTS]
    assert len(ids) == len(set(ids))
    assert {"ntq_vs_float_control", "inq_vs_uniform", "ntq_vs_ptq", "qsa_vs_sa", "sa_ntq_vs_sa", "qsa_ntq_vs_sa",
            "suggestive_vs_random", "ensemble_vs_single"} <= set(ids)
    for c in C.CONTRASTS:
        if c["kind"] == "between":
            assert c["a"] in C.RUN_NAMES and c["b"] in C.RUN_NAMES


def test_sentences():
    e = dict(label="NTQ-5 vs its float control (same extra steps)", run="qsa5-ntq5", split="test_a", metric="f1",
             **C.paired_stats([-0.03, -0.01, 0.005, -0.02], "f1"))
    text = C.sentence(e)
    assert text.startswith("NTQ-5 vs its float control (same extra steps) [qsa5-ntq5], Test A F1: −0.014 [")
    assert f"n = 4, MDE {e['mde']:.3f}" in text and text.endswith(": inconclusive.")
    assert f"about {e['seeds_for_mde_0.01']} seeds would give MDE 0.01" in text
    better = dict(label="A vs B", run=None, split="test_b", metric="object_hausdorff",
                  **C.paired_stats([-5.0, -6.0, -7.0], "object_hausdorff"))
    assert C.sentence(better).endswith(": −6.0 [−8.5, −3.5], n = 3, MDE 3.1: A better.")  # sd 1: 4.303 / sqrt 3
    assert "original-resolution pixels" in C.sentence(better)
    assert better["seeds_for_mde_0.01"] is None  # an MDE of 0.01 pixels means nothing
    gone = dict(label="QSA-5 vs SA", run=None, split="test_a", metric="f1", verdict="missing", missing="no run", n=0)
    assert C.sentence(gone) == "QSA-5 vs SA, Test A F1: not measured (no run)."
