"""The report's statistics, tables, comparisons and verdict sentences on tiny hand-made studies."""
import json
import math

import pandas as pd
import pytest

from qfcn.io import atomic_write_json
from qfcn.study import records, report


def _scores(f1):
    return {"f1": f1, "object_dice": f1 + 0.01, "object_hausdorff": 10.0, "per_image": []}


def _run(study, folder, *, name, seed, f1, selection="suggestive", qsa_bits=32, ntq_bits=32, main="float",
         extra=None, manifest="m", point=True):
    """A run folder with a metrics record; ``f1`` = (test A, test B) of the main variant,
    ``extra`` = {variant: (test A, test B)}."""
    variants = {}
    for vname, (a, b) in {main: f1, **(extra or {})}.items():
        variants[vname] = {"scheme": "inq" if vname == "ntq" else "float", "bits": ntq_bits if vname == "ntq" else 32,
                           "n_members": 1 if vname == "single" else 2, "weight_bytes": 100, "file_bytes": 120,
                           "splits": {"test_a": _scores(a), "test_b": _scores(b)}}
    rec = records.metrics_record(
        run={"name": folder, "seed": seed, "selection": selection, "qsa_scheme": "inq", "qsa_bits": qsa_bits,
             "ntq_scheme": "inq", "ntq_bits": ntq_bits, "n_members": 2},
        main=main, n_glands={"test_a": 40, "test_b": 200}, size_table=[], variants=variants)
    run_dir = study / "runs" / folder
    records.write_metrics(run_dir / "final" / "metrics.json", rec, manifest_hash=manifest, params={"seed": seed})
    if point:
        atomic_write_json(run_dir / "done.json", {"params_hash": "h", "point": {"name": name, "seed": seed}})
    return run_dir


@pytest.fixture
def study(tmp_path):
    for seed, (fa, fq) in enumerate([(0.80, 0.70), (0.82, 0.71), (0.84, 0.73)]):
        _run(tmp_path, f"float-s{seed}-h", name="float", seed=seed, f1=(fa, fa - 0.1))
        _run(tmp_path, f"q5-s{seed}-h", name="q5", seed=seed, f1=(fq, fq - 0.1), qsa_bits=5, ntq_bits=5, main="ntq",
             extra={"float": (fq + 0.05, fq - 0.05), "single": (fq - 0.2, fq - 0.3)})
    return tmp_path


def test_tidy_one_row_per_run_variant_split(study):
    df = report.tidy(study)
    assert len(df) == 3 * 2 + 3 * 3 * 2
    assert set(df.name) == {"float", "q5"}  # the batch point's name, not the folder's
    q = df[(df.name == "q5") & (df.seed == 1) & (df.split == "test_a")]
    assert q.set_index("variant")["f1"].to_dict() == {"ntq": 0.71, "float": 0.76, "single": 0.51}
    assert q.set_index("variant")["main"].to_dict() == {"ntq": True, "float": False, "single": False}
    assert set(q.n_glands) == {40} and set(q.weight_bytes) == {100}


def test_tidy_keeps_the_folder_name_without_done_marker_and_filters_by_manifest(tmp_path):
    _run(tmp_path, "lab-run", name="x", seed=0, f1=(0.5, 0.4), point=False)
    _run(tmp_path, "other-data", name="y", seed=0, f1=(0.5, 0.4), manifest="old")
    assert set(report.tidy(tmp_path).name) == {"lab-run", "y"}
    assert set(report.tidy(tmp_path, manifest_hash="m").name) == {"lab-run"}
    assert report.tidy(tmp_path / "none").empty


def test_summary_table_and_summary(study):
    table = report.summary_table(study)
    assert list(table.columns) == ["name", "seed", "f1 A", "object_dice A", "object_hausdorff A",
                                   "f1 B", "object_dice B", "object_hausdorff B"]
    assert table[(table.name == "q5") & (table.seed == 2)]["f1 B"].item() == pytest.approx(0.63)
    s = report.summary(study)
    assert len(s["runs"]) == 6 and "code_version" in s
    first = s["runs"][0]
    assert first["run_dir"] == "float-s0-h" and first["variant"] == "float" and first["run"]["name"] == "float"
    assert first["test_a"] == {"f1": 0.8, "object_dice": 0.81, "object_hausdorff": 10.0}
    assert first["n_glands"] == {"test_a": 40, "test_b": 200} and first["weight_bytes"] == 100


def test_main_table_means_and_interval_half_widths(study):
    df = report.tidy(study)
    table = report.main_table(df[df["main"]]).set_index("run")
    assert table.loc["float", "seeds"] == 3
    assert table.loc["float", "f1 A"] == pytest.approx(0.82)
    half = 4.302652729911275 * 0.02 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert table.loc["float", "f1 A ±"] == pytest.approx(half)
    one = report.main_table(df[df["main"] & (df.seed == 0)])
    assert one["f1 A ±"].isna().all()


def test_compare_sentences():
    df = pd.DataFrame([dict(split="test_a", seed=s, variant=v, f1=f)
                       for s, (fa, fb) in enumerate([(0.9, 0.8), (0.91, 0.8), (0.92, 0.81)])
                       for v, f in (("ntq", fa), ("ptq", fb))])
    res = report.compare(df, {"variant": "ntq"}, {"variant": "ptq"}, pair_on="seed", split="test_a",
                         question="Q3 test", labels=("with", "without"))
    assert res["n"] == 3 and res["mean_a"] == pytest.approx(0.91) and res["mean_b"] == pytest.approx(0.8033333)
    assert res["sentence"] == (f"Q3 test (Test A, f1): with − without = +0.107 [{res['low']:+.3f}, {res['high']:+.3f}] "
                               f"over 3 pair(s): {res['verdict']}.")
    assert "larger than the seed-to-seed spread" in res["verdict"]
    one = report.compare(df[df.seed == 0], {"variant": "ntq"}, {"variant": "ptq"}, pair_on="seed", split="test_a")
    assert one["sentence"].startswith("difference (Test A, f1): variant=ntq − variant=ptq = +0.100")
    assert "cannot tell" in one["sentence"]
    none = report.compare(df, {"variant": "ntq"}, {"variant": "uniform"}, pair_on="seed", split="test_b", question="Q2")
    assert none["sentence"] == "Q2 (Test B, f1): no paired runs with both variant=ntq and variant=uniform."
    assert none["n"] == 0 and math.isnan(none["mean_a"])


def test_ablation_answers_ask_every_question_in_order(study):
    answers = report.ablation_answers(report.tidy(study), "f1")
    questions = [a["question"] for a in answers]
    per_split = ["Q1 QSA+NTQ 7/7 bits vs float SA", "Q1 QSA+NTQ 5/5 bits vs float SA"]
    assert questions[:4] == per_split * 2 and [a["split"] for a in answers[:4]] == ["test_a"] * 2 + ["test_b"] * 2
    assert questions[4:14] == [q for _, _, q, _ in report.VARIANT_QUESTIONS] * 2
    assert questions[14:] == ["Q6 ensemble vs single FCN"] * 2  # no other selection in this study: no Q5
    q1 = answers[1]
    assert q1["n"] == 3 and q1["diff"] == pytest.approx(-0.1066667) and "larger than" in q1["verdict"]
    q6 = answers[14]
    assert q6["a"] == "ensemble" and q6["diff"] == pytest.approx(0.2)
    assert answers[4]["n"] == 0  # no uniform variant: said, not guessed
    assert "no paired runs" in answers[4]["sentence"]


def test_ablation_answers_compare_suggestive_with_other_selections(tmp_path):
    for seed in range(2):
        _run(tmp_path, f"sa-{seed}", name="sa", seed=seed, f1=(0.8, 0.7))
        _run(tmp_path, f"rnd-{seed}", name="rnd", seed=seed, f1=(0.7, 0.6), selection="random")
    q5 = [a for a in report.ablation_answers(report.tidy(tmp_path), "f1") if a["question"].startswith("Q5")]
    assert [a["question"] for a in q5] == ["Q5 suggestive vs random selection"] * 2
    assert q5[0]["diff"] == pytest.approx(0.1) and q5[0]["n"] == 2


def test_gland_counts_and_calibration(study):
    main = report.tidy(study).query("main")
    glands, enough = report.gland_counts(main, 150)
    assert glands == {"test_a": 40, "test_b": 200} and enough == {"test_a": False, "test_b": True}
    cal = report.calibration(main)
    assert cal["test_a"]["seeds"] == 3 and cal["test_a"]["mean"] == pytest.approx(0.82)
    assert cal["test_a"]["sd"] == pytest.approx(0.02) and cal["test_a"]["low"] < 0.82 < cal["test_a"]["high"]


def test_write_report_without_notebooks(study):
    index = report.write_report(study)
    assert "<h2>Main table</h2>" in index.read_text() and "f1 A ±" in index.read_text()
    assert json.loads((study / "summary.json").read_text())["runs"][0]["run_dir"] == "float-s0-h"


def test_mean_ci_hand_values():
    # values 1, 2, 3: mean 2, sd 1, t(0.975, 2) = 4.302653 -> half width 4.302653 / sqrt(3)
    m, lo, hi = report.mean_ci([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)
    assert m == 2.0 and lo == pytest.approx(2 - half) and hi == pytest.approx(2 + half)


def test_mean_ci_single_value_has_no_interval():
    m, lo, hi = report.mean_ci([0.7])
    assert m == 0.7 and math.isnan(lo) and math.isnan(hi)


def test_paired_difference_verdicts():
    big = report.paired_difference([0.9, 0.91, 0.92], [0.8, 0.80, 0.81])
    assert big["diff"] == pytest.approx((0.1 + 0.11 + 0.11) / 3) and "larger than" in big["verdict"]
    small = report.paired_difference([0.9, 0.8, 0.85], [0.85, 0.86, 0.84])
    assert "within" in small["verdict"]
    one = report.paired_difference([0.9], [0.8])
    assert one["n"] == 1 and "cannot tell" in one["verdict"]
    with pytest.raises(ValueError, match="one per seed"):
        report.paired_difference([1, 2], [1])
