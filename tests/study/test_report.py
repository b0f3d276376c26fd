"""The report on tiny hand-made studies: tidy rows, per-arm intervals, the paper-form table,
regime, selection, the summary.json contract, and notebook 05 on a one-run study."""
import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest

from qfcn.io import ROOT, atomic_write_json
from qfcn.study import records, report


def _scores(f1, image_f1s=()):
    per = [{"name": f"img{i}", "f1": v, "object_dice": v, "object_hausdorff": 5.0} for i, v in enumerate(image_f1s)]
    return {"f1": f1, "object_dice": f1 + 0.01, "object_hausdorff": 10.0, "per_image": per}


def make_run(study, folder, *, name, seed, f1, selection="suggestive", qsa_bits=32, ntq_bits=32, main="float",
             extra=None, manifest="m", point=True, train=None, efficiency=None):
    """A run folder with a metrics record; ``f1`` = (test A, test B) of the main variant,
    ``extra`` = {variant: (test A, test B)}; ``train``: the float variant's training-image F1."""
    variants = {}
    for vname, (a, b) in {main: f1, **(extra or {})}.items():
        quant = vname not in ("float", "float_control") and ntq_bits < 32
        splits = {"test_a": _scores(a, (a, a - 0.1)), "test_b": _scores(b, (b,))}
        if train is not None and vname == "float":
            splits["train"] = _scores(train)
        variants[vname] = {"scheme": ("uniform" if vname == "uniform" else "inq") if quant else "float",
                           "bits": ntq_bits if quant else 32, "n_members": 1 if vname == "single" else 2,
                           "weight_bytes": 100 if quant else 640, "file_bytes": 300 if quant else 900, "splits": splits}
    rec = records.metrics_record(
        run={"name": folder, "seed": seed, "selection": selection, "qsa_scheme": "inq", "qsa_bits": qsa_bits,
             "ntq_scheme": "inq", "ntq_bits": ntq_bits, "n_members": 2},
        main=main, n_glands={"test_a": 40, "test_b": 200}, size_table=[], variants=variants, efficiency=efficiency)
    run_dir = study / "runs" / folder
    records.write_metrics(run_dir / "final" / "metrics.json", rec, manifest_hash=manifest, params={"seed": seed})
    if point:
        atomic_write_json(run_dir / "done.json", {"params_hash": "h", "point": {"name": name, "seed": seed}})
    return run_dir


def make_study(study, seeds=(0, 1, 2)):
    """sa-float, qsa5-ntq5 (with controls) and random-float over ``seeds``, plus a data manifest."""
    atomic_write_json(study / "data" / "manifest.json", {"hash": "m", "label_source": "instances", "scale": 0.5})
    for seed in seeds:
        d = 0.01 * seed
        make_run(study, f"sa-float-s{seed}", name="sa-float", seed=seed, f1=(0.80 + d, 0.70 + d), train=0.9 + d)
        make_run(study, f"random-float-s{seed}", name="random-float", seed=seed, f1=(0.75 + d, 0.6 + 2 * d),
                 selection="random", extra={"single": (0.7, 0.5)})
        make_run(study, f"qsa5-ntq5-s{seed}", name="qsa5-ntq5", seed=seed, f1=(0.78 + d, 0.66 + d), qsa_bits=5,
                 ntq_bits=5, main="ntq", train=0.95,
                 extra={"float": (0.80, 0.70), "float_control": (0.81 + d / 2, 0.69), "uniform": (0.7 + d, 0.6),
                        "ptq": (0.5, 0.4), "ptq_bn": (0.6, 0.5), "single": (0.7 + d, 0.6)})
    return study


@pytest.fixture
def study(tmp_path):
    return make_study(tmp_path)


def test_tidy_one_row_per_run_variant_split(study):
    df = report.tidy(study)
    assert set(df.name) == {"sa-float", "random-float", "qsa5-ntq5"}  # the batch point's name, not the folder's
    q = df[(df.name == "qsa5-ntq5") & (df.seed == 1) & (df.split == "test_a")].set_index("variant")
    assert q["f1"].to_dict()["ntq"] == pytest.approx(0.79) and q["main"].sum() == 1 and q.loc["ntq", "main"]
    assert len(df) == 3 * (3 + 2 * 2 + 7 * 2 + 1)  # per seed: sa 3 splits, random 2 x 2, qsa 7 x 2 + float's train


def test_tidy_keeps_the_folder_name_without_done_marker_and_filters_by_manifest(tmp_path):
    make_run(tmp_path, "lab-run", name="x", seed=0, f1=(0.5, 0.4), point=False)
    make_run(tmp_path, "other-data", name="y", seed=0, f1=(0.5, 0.4), manifest="old")
    assert set(report.tidy(tmp_path).name) == {"lab-run", "y"}
    assert set(report.tidy(tmp_path, manifest_hash="m").name) == {"lab-run"}
    assert report.tidy(tmp_path / "none").empty


def test_per_image_rows_of_the_main_result(study):
    pi = report.per_image(study)
    sa = pi[(pi.name == "sa-float") & (pi.seed == 0)]
    assert sa.groupby("split").size().to_dict() == {"test_a": 2, "test_b": 1}
    assert sa[sa.split == "test_a"].f1.tolist() == pytest.approx([0.8, 0.7])


def test_interval_rows_student_t_clipped_with_seeds_and_bytes(study):
    df = report.tidy(study)
    rows = {(r["name"], r["split"]): r for r in report.interval_rows(df[df["main"]], "f1")}
    sa = rows[("sa-float", "test_a")]
    half = 4.302652729911275 * 0.01 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n), sd = 0.01
    assert sa["n"] == 3 and sa["seeds"] == [0, 1, 2] and sa["mean"] == pytest.approx(0.81)
    assert (sa["low"], sa["high"]) == pytest.approx((0.81 - half, 0.81 + half)) and not sa["clipped"]
    assert rows[("qsa5-ntq5", "test_a")]["bits"] == 5 and rows[("qsa5-ntq5", "test_a")]["weight_bytes"] == 100
    one = report.interval_rows(df[df["main"] & (df.seed == 0)], "f1")[0]
    assert one["n"] == 1 and one["low"] is None and one["high"] is None
    with pytest.raises(ValueError, match="select one variant"):
        report.interval_rows(df, "f1")


def test_paper_table_lists_every_paper_row_with_our_arms(study):
    table = {r["method"]: r for r in report.paper_table(report.tidy(study))}
    assert [m for m, *_ in report.PAPER_FORM] == list(table)
    assert table["CUMedVision (DCAN)"]["paper"]["f1_A"] == 0.912 and table["CUMedVision (DCAN)"]["run"] is None
    q = table["QSA+NTQ-5 (paper: 5 FCNs)"]
    assert q["run"] == "qsa5-ntq5" and q["variant"] == "ntq" and q["n"] == 3 and q["paper"]["f1_A"] == 0.930
    assert q["cells"]["f1_A"]["values"] == pytest.approx([0.78, 0.79, 0.80])
    assert q["weight_ratio"] == pytest.approx(6.4) and q["file_ratio"] == pytest.approx(3.0)
    assert table["fixed-point (uniform), 5 bits"]["variant"] == "uniform"
    qsa = table["QSA-5"]  # float SA on QSA-5's selection: the float variant of the qsa5-ntq5 run
    assert qsa["run"] == "qsa5-ntq5" and qsa["variant"] == "float" and qsa["paper"] is None
    assert table["uncertainty-only selection (baseline)"]["run"] is None


def test_fixed_point_row_from_the_sa_run_when_the_qsa_run_has_no_uniform_variant():
    # the standard profile's layout: uniform-5 is derived in sa-ntq5 only
    rows = [dict(name=name, seed=0, split=split, variant=v, main=v == "ntq", f1=0.7, object_dice=0.8,
                 object_hausdorff=50.0, weight_bytes=100.0 if v == "float" else 20.0, file_bytes=None)
            for name, variants in (("sa-ntq5", ("float", "ntq", "uniform")), ("qsa5-ntq5", ("float", "ntq")))
            for v in variants for split in ("test_a", "test_b")]
    table = {r["method"]: r for r in report.paper_table(pd.DataFrame(rows))}
    fixed = table["fixed-point (uniform), 5 bits"]
    assert (fixed["run"], fixed["variant"], fixed["n"], fixed["weight_ratio"]) == ("sa-ntq5", "uniform", 1, 5.0)


def test_regime_of_the_float_networks(study):
    reg = report.regime(report.tidy(study))
    # float variants: sa (train 0.90-0.92, A 0.80-0.82), qsa5 (train 0.95, A 0.80), random (no train split)
    assert reg["n_runs"] == 9 and reg["train_f1"] == pytest.approx((0.90 + 0.91 + 0.92 + 3 * 0.95) / 6)
    assert reg["by_run"]["sa-float"]["test_a_f1"] == pytest.approx(0.81) and reg["by_run"]["sa-float"]["n"] == 3
    assert reg["gap_a"] == pytest.approx(reg["train_f1"] - reg["test_a_f1"])


def test_selection_coverage_z_from_rounds_or_stages(study):
    assert report.selection(study)["coverage_z_vs_random"] is None  # no suggestion.json: not invented
    atomic_write_json(study / "runs" / "sa-float-s0" / "suggestion.json",
                      {"rounds": [{"coverage_z": 1.0}, {"coverage_z": None}, {"coverage_z": 3.0}]})
    atomic_write_json(study / "runs" / "sa-float-s1" / "suggestion.json", {"stages": [{"coverage_z": 5.0}, {}]})
    sel = report.selection(study)
    assert sel["coverage_z_vs_random"] == pytest.approx(3.0) and sel["n_values"] == 3
    assert sel["by_run"] == {"sa-float": pytest.approx(3.0)}


def test_summary_json_contract(study):
    report.write_report(study)
    s = json.loads((study / "summary.json").read_text())
    assert {"runs", "code_version", "contrasts", "regime", "selection", "efficiency", "paper_table"} <= set(s)
    assert s["efficiency"] == [] and set(s["regime"]) >= {"train_f1", "test_a_f1", "test_b_f1"}
    assert "coverage_z_vs_random" in s["selection"] and s["data"]["label_source"] == "instances"
    ids = {c["id"] for c in s["contrasts"]}
    assert {"ntq_vs_float_control", "inq_vs_uniform", "ntq_vs_ptq", "qsa_vs_sa", "sa_ntq_vs_sa", "qsa_ntq_vs_sa",
            "suggestive_vs_random", "ensemble_vs_single"} <= ids
    for c in s["contrasts"]:
        assert {"id", "split", "metric", "values", "diff", "low", "high", "mde", "n", "verdict"} <= set(c)
        assert c["split"] in ("test_a", "test_b") and len(c["values"]) == c["n"]
    c = next(c for c in s["contrasts"] if c["id"] == "ntq_vs_float_control" and c["split"] == "test_a"
             and c["metric"] == "f1")
    assert c["values"] == pytest.approx([-0.03, -0.025, -0.02]) and c["verdict"] == "b better" and c["n"] == 3
    assert next(c for c in s["contrasts"] if c["id"] == "qsa_vs_sa")["n"] == 3  # qsa5-ntq5's float variant
    assert next(c for c in s["contrasts"] if c["id"] == "suggestive_vs_uncertainty")["verdict"] == "missing"
    first = s["runs"][0]
    assert first["run"]["name"] == "qsa5-ntq5" and first["test_a"]["f1"] == pytest.approx(0.78)
    assert (study / "index.html").is_file()


def test_gland_counts(study):
    main = report.tidy(study).query("main")
    glands, enough = report.gland_counts(main, 150)
    assert glands == {"test_a": 40, "test_b": 200} and enough == {"test_a": False, "test_b": True}


def test_notebook_05_reports_a_one_run_study(tmp_path, monkeypatch):
    """Issue 14: one configuration, one seed: no 'zero-size array' crash; the run is reported and
    every comparison says it needs more seeds."""
    import papermill

    atomic_write_json(tmp_path / "data" / "manifest.json", {"hash": "m"})
    make_run(tmp_path, "qsa5-ntq5-s0", name="qsa5-ntq5", seed=0, f1=(0.79, 0.7), qsa_bits=5, ntq_bits=5, main="ntq",
             extra={"float": (0.81, 0.7), "float_control": (0.8, 0.69), "single": (0.7, 0.6)}, train=0.9,
             efficiency=_eff_rows("suggestive", 0, True, 0.05))
    here = str(Path(__file__).resolve().parents[2])  # the kernel imports this checkout's qfcn
    monkeypatch.setenv("PYTHONPATH", here + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = tmp_path / "05.ipynb"
    papermill.execute_notebook(str(ROOT / "notebooks" / "05-ablations.ipynb"), str(out),
                               parameters={"study_dir": str(tmp_path)}, progress_bar=False, log_output=False)
    cells = json.loads(out.read_text())["cells"]
    text = "".join("".join(o.get("text", "")) for c in cells for o in c.get("outputs", []))
    assert "needs more seeds" in text and "every comparison needs at least two seeds" in text
    assert "NTQ-5 vs its float control (same extra steps) [qsa5-ntq5], Test A F1: −0.010 from n = 1 seed" in text
    assert (tmp_path / "figures" / "main_results.png").is_file()
    assert json.loads((tmp_path / "ablations.json").read_text())["contrasts"]
    assert (tmp_path / "figures" / "efficiency.png").is_file()  # one seed: points without intervals
    assert "n = 1 seeds" in json.loads((tmp_path / "figure_captions.json").read_text())["efficiency.png"]


# ------------------------------------------------------------------ the annotation-efficiency curve
def _eff_rows(selection, seed, quantized, d=0.0):
    """Points of one run: budgets 0.1, 0.3, 0.5 and 1.0 of a 20-image pool, float (and quantized)."""
    sizes = {0.1: 2, 0.3: 6, 0.5: 10, 1.0: 20}
    return [dict(selection=selection, quantized=q, budget=b, n_images=n, n_pool=20, seed=seed,
                 f1_a=0.5 + 0.3 * b + d + 0.01 * seed, f1_b=0.4 + 0.3 * b + d)
            for b, n in sizes.items() for q in ((False, True) if quantized else (False,))]


def test_metrics_record_round_trips_with_and_without_efficiency(tmp_path):
    base = dict(run={"name": "r", "seed": 0}, main="float", n_glands={}, size_table=[], variants={})
    assert "efficiency" not in records.metrics_record(**base)  # today's records are unchanged
    rows = _eff_rows("random", 0, False)
    records.write_metrics(tmp_path / "final" / "metrics.json", records.metrics_record(**base, efficiency=rows),
                          manifest_hash="m", params={})
    back = records.read_metrics(tmp_path)
    assert back["efficiency"] == rows
    assert records.efficiency_rows(back)[0] == {"name": "r", "qsa_bits": None, **rows[0]}
    assert records.efficiency_rows({"run": {"name": "r"}}) == []
    with pytest.raises(ValueError, match=r"efficiency: row 0 lacks \['f1_b'\]"):
        records.metrics_record(**base, efficiency=[{k: v for k, v in rows[0].items() if k != "f1_b"}])


def test_summary_efficiency_collects_every_run_s_points_and_the_curve_averages_seeds(tmp_path):
    study = tmp_path
    atomic_write_json(study / "data" / "manifest.json", {"hash": "m"})
    for seed in (0, 1, 2):
        make_run(study, f"sa-s{seed}", name="sa", seed=seed, f1=(0.8, 0.7), efficiency=_eff_rows("suggestive", seed, False))
        make_run(study, f"qsa5-s{seed}", name="qsa5", seed=seed, f1=(0.8, 0.7), qsa_bits=5, ntq_bits=5, main="ntq",
                 extra={"float": (0.8, 0.7)}, efficiency=_eff_rows("suggestive", seed, True, 0.02))
        make_run(study, f"random-s{seed}", name="random", seed=seed, f1=(0.7, 0.6), selection="random")
    s = report.summary(study)
    assert len(s["efficiency"]) == 3 * (4 + 8)  # the random runs drew no curve
    assert {r["name"] for r in s["efficiency"]} == {"sa", "qsa5"}
    assert {k for r in s["efficiency"] for k in r} >= {"selection", "quantized", "budget", "seed", "f1_a", "f1_b"}
    curve = report.efficiency_curve(s["efficiency"])
    assert sorted({p["line"] for p in curve}) == ["suggestive (qsa5), float", "suggestive (qsa5), quantized",
                                                  "suggestive (sa), float"]
    p = next(p for p in curve if p["line"] == "suggestive (sa), float" and p["budget"] == 0.3 and p["split"] == "test_a")
    assert p["share"] == pytest.approx(0.3) and p["n"] == 3 and p["seeds"] == [0, 1, 2]
    assert p["values"] == pytest.approx([0.59, 0.60, 0.61]) and p["mean"] == pytest.approx(0.60)
    half = 4.302652729911275 * 0.01 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert (p["low"], p["high"]) == pytest.approx((0.60 - half, 0.60 + half))
    with pytest.raises(ValueError, match="seed listed twice"):
        report.efficiency_curve(s["efficiency"] + s["efficiency"][:1])
    report.write_report(study)
    page = (study / "index.html").read_text()
    assert "<h2>Annotation efficiency</h2>" in page and "budgets: 10%, 30%, 50%, 100% of the pool; 3 seeds" in page
    assert "notebook 05 did not draw it" in page


def test_overlap_of_annotated_sets_pairs_arms_on_shared_seeds():
    sug = [("sa", 0, {"annotated": list("abcd")}), ("sa", 1, {"annotated": list("abcd")}),
           ("random", 0, {"annotated": list("abxy")}), ("random", 1, {"annotated": list("wxyz")}),
           ("qsa", 2, {"annotated": list("abcd")}), ("noseed", None, {"annotated": list("abcd")})]
    rows = {(r["a"], r["b"]): r for r in report.overlap(sug)}
    assert set(rows) == {("random", "sa")}  # qsa shares no seed; a run without a seed is not paired
    r = rows[("random", "sa")]
    assert r["n_seeds"] == 2 and r["shared"] == 1.0 and r["size"] == 4.0 and r["shared_share"] == 0.25
