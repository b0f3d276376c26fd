"""The reproduction check (qfcn.study.reproduce) on tiny hand-made summaries, the study command's
choice of reference, and a clean first run: kernels start without the transport warning."""
import json
import math
import shutil
from pathlib import Path

import ipykernel
import nbformat
import numpy as np
import papermill
import pytest
from scipy import stats

from qfcn.io import ROOT, atomic_write_json
from qfcn.study import commands, frontpage, reproduce, runner


def run(name, seed, a, b, dice=None):
    """A summary entry: F1 ``a`` / ``b`` on Test A / B; object Dice = F1 unless given."""
    da, db = dice if dice is not None else (a, b)
    return {"run": {"name": name, "seed": seed}, "test_a": {"f1": a, "object_dice": da},
            "test_b": {"f1": b, "object_dice": db}}


REF = {"code_version": "ref", "runs": [run("p", 0, 0.80, 0.60), run("p", 1, 0.84, 0.66),
                                        run("q", 0, 0.70, 0.50), run("q", 1, 0.72, 0.54)]}


def rows(rep, status=None):
    return [r for r in rep["runs"] if status is None or r["status"] == status]


def test_the_interval_is_the_pooled_prediction_interval_of_one_seed():
    sp = reproduce.spread(REF)[("test_a", "f1")]
    # pooled within-point sd by hand: deviations ±0.02 (p) and ±0.01 (q), df = 2
    assert sp["df"] == 2 and math.isclose(sp["sd"], math.sqrt((2 * 0.02**2 + 2 * 0.01**2) / 2))
    row = next(r for r in reproduce.compare_runs({"runs": [run("p", 0, 0.8, 0.6)]}, REF)
               if r["split"] == "test_a")["metrics"]["f1"]
    half = stats.t.ppf(0.975, 2) * sp["sd"] * math.sqrt(1 + 1 / 2)
    assert math.isclose(row["low"], 0.82 - half) and math.isclose(row["high"], 0.82 + half)


def test_identical_rerun_is_reproduced_with_zero_differences():
    rep = reproduce.compare(REF, REF, "reports/x")
    assert {r["status"] for r in rows(rep)} == {"within"} and len(rows(rep)) == 8
    assert all(v["diff"] == 0 for r in rows(rep) for v in r["metrics"].values())
    assert reproduce.line(rep).startswith("reproduced within the seed spread (8 of 8 runs×splits within, "
                                          "against reports/x)")


def test_a_run_outside_the_spread_is_named_with_its_value_and_interval():
    new = {"runs": [run("p", 0, 0.81, 0.61), run("p", 1, 0.83, 0.30), run("q", 0, 0.71, 0.52),
                    run("q", 1, 0.72, 0.53, dice=(0.72, 0.53))]}
    rep = reproduce.compare(new, REF, "ref")
    [bad] = rows(rep, "outside")
    assert (bad["name"], bad["seed"], bad["split"]) == ("p", 1, "test_b")
    assert bad["metrics"]["f1"]["within"] is False and math.isclose(bad["metrics"]["f1"]["diff"], 0.30 - 0.66)
    text = reproduce.line(rep)
    assert text.startswith("not within the seed spread: p s1 Test B (F1 0.300 not in [")
    assert "object Dice 0.300 not in" in text and "(7 of 8 runs×splits within, against ref)" in text


def test_object_dice_alone_can_put_a_run_outside():
    new = {"runs": [run("p", 0, 0.80, 0.60, dice=(0.20, 0.60))] + REF["runs"][1:]}
    [bad] = rows(reproduce.compare(new, REF, "ref"), "outside")
    assert bad["metrics"]["f1"]["within"] and not bad["metrics"]["object_dice"]["within"]


def test_a_one_seed_point_uses_the_spread_pooled_over_the_other_points():
    ref = {"runs": REF["runs"] + [run("single", 0, 0.5, 0.4)]}
    rep = reproduce.compare({"runs": [run("single", 0, 0.51, 0.41)]}, ref, "ref")
    r = next(r for r in rows(rep) if r["name"] == "single" and r["split"] == "test_a")["metrics"]["f1"]
    sd = reproduce.spread(ref)[("test_a", "f1")]["sd"]
    assert r["within"] and math.isclose(r["high"] - 0.5, stats.t.ppf(0.975, 2) * sd * math.sqrt(2))


def test_one_seed_everywhere_means_no_spread_measured():
    ref = {"runs": [run("p", 0, 0.8, 0.6), run("q", 0, 0.7, 0.5)]}
    rep = reproduce.compare(ref, ref, "ref")
    assert {r["status"] for r in rows(rep)} == {"no spread measured"}
    assert all(v["low"] is None and v["diff"] == 0 for r in rows(rep) for v in r["metrics"].values())
    assert reproduce.line(rep).startswith("no seed spread measured in ref (one seed per batch point)")


def test_missing_runs_are_not_reproduced_and_extra_runs_are_not_counted():
    new = {"runs": [r for r in REF["runs"] if r["run"] != {"name": "q", "seed": 1}] + [run("new", 0, 0.9, 0.9)]}
    rep = reproduce.compare(new, REF, "ref")
    assert [(r["name"], r["seed"]) for r in rows(rep, "missing here")] == [("q", 1), ("q", 1)]
    assert [r["name"] for r in rows(rep, "not in reference")] == ["new", "new"]
    assert reproduce.line(rep).startswith("not within the seed spread: missing here: q s1 Test A, q s1 Test B "
                                          "(6 of 8 runs×splits within, against ref)")


def test_an_extra_seed_of_a_known_point_is_judged_without_a_same_seed_difference():
    rep = reproduce.compare({"runs": REF["runs"] + [run("p", 2, 0.82, 0.63)]}, REF, "ref")
    extra = [r for r in rows(rep) if r["seed"] == 2]
    assert [r["status"] for r in extra] == ["within", "within"]
    assert all(v["reference"] is None and v["diff"] is None for r in extra for v in r["metrics"].values())


def contrast(cid, split, verdict, run=None, metric="f1"):
    return dict(id=cid, run=run, split=split, metric=metric, verdict=verdict, label=cid)


def test_verdicts_are_compared_per_contrast_and_counted_in_the_line():
    ref = {**REF, "contrasts": [contrast("c1", "test_a", "inconclusive"), contrast("c1", "test_b", "a better"),
                                contrast("c2", "test_a", "missing"), contrast("w", "test_a", "b better", run="p")]}
    new = {**REF, "contrasts": [contrast("c1", "test_a", "inconclusive"), contrast("c1", "test_b", "inconclusive"),
                                contrast("c2", "test_a", "a better"), contrast("w", "test_a", "b better", run="p"),
                                contrast("w", "test_a", "b better", run="q")]}
    v = reproduce.compare_verdicts(new, ref)
    assert [(c["id"], c["run"], c["split"], c["agree"]) for c in v] == [
        ("c1", None, "test_a", True), ("c1", None, "test_b", False), ("w", "p", "test_a", True)]
    text = reproduce.line(reproduce.compare(new, ref, "ref"))
    assert text.endswith("; verdicts agree: 2 of 3 contrasts (differ: c1 Test B f1: a better -> inconclusive)")
    assert reproduce.compare_verdicts(new, REF) is None
    assert reproduce.line(reproduce.compare(new, REF, "ref")).endswith("verdicts: not compared (no contrasts in "
                                                                       "both summaries)")


def test_the_committed_fast_study_against_itself():
    ref = ROOT / "reports" / "fast"
    if not (ref / "summary.json").is_file():
        pytest.skip("no committed reports/fast")
    folder, summ = reproduce.load_reference(ref)
    rep = reproduce.compare(summ, summ, reproduce.label(folder))
    assert rep["reference"] == "reports/fast" and {r["status"] for r in rows(rep)} == {"within"}
    values = {}
    for r in summ["runs"]:
        values.setdefault(r["run"]["name"], []).append(r["test_b"]["f1"])
    per_point_df = sum(len(v) - 1 for v in values.values())
    assert rep["spread"]["test_b/f1"]["df"] == per_point_df
    assert math.isclose(rep["spread"]["test_b/f1"]["sd"] ** 2,
                        sum(np.var(v, ddof=1) * (len(v) - 1) for v in values.values()) / per_point_df)


def test_a_copy_of_the_committed_records_reproduces_the_committed_study(tmp_path):
    """The command's own path: summary from the run records (report.summary), check, line, file."""
    src = ROOT / "reports" / "fast"
    if not (src / "runs").is_dir():
        pytest.skip("no committed reports/fast")
    for pattern in ("runs/*/final/metrics.json", "runs/*/done.json", "data/manifest.json"):
        for f in src.glob(pattern):
            (tmp_path / f.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, tmp_path / f.relative_to(src))
    text = commands._reproduction(tmp_path, commands.reference_for(ROOT / "params" / "fast.yaml", tmp_path))
    n = 2 * len(list(src.glob("runs/*/final/metrics.json")))
    assert text.startswith(f"reproduced within the seed spread ({n} of {n} runs×splits within, against reports/fast)")
    rep = json.loads((tmp_path / reproduce.FILE).read_text())
    assert all(abs(v["diff"]) < 1e-12 for r in rep["runs"] for v in r["metrics"].values())


@pytest.fixture
def project(tmp_path):
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "fast.yaml").write_text("data: {}\n")
    atomic_write_json(tmp_path / "reports" / "fast" / "summary.json", REF)
    return tmp_path


def test_default_reference_is_the_profiles_committed_study_unless_out_is_it(project, tmp_path):
    p, ref = project / "params" / "fast.yaml", (project / "reports" / "fast").resolve()
    assert reproduce.default_reference(p, project / "runs" / "fast", root=project) == ref
    assert reproduce.default_reference(p, project / "reports" / "fast", root=project) is None
    other = tmp_path / "mine.yaml"
    other.write_text("data: {}\n")
    assert reproduce.default_reference(other, project / "runs" / "x", root=project) is None
    (project / "params" / "paper.yaml").write_text("data: {}\n")  # a profile without a committed study
    assert reproduce.default_reference(project / "params" / "paper.yaml", project / "runs" / "p", root=project) is None


def test_a_bad_reference_is_one_line_naming_the_file(tmp_path):
    with pytest.raises(reproduce.ReproductionError, match=r"--reference .*nowhere: no summary.json there"):
        reproduce.load_reference(tmp_path / "nowhere")
    atomic_write_json(tmp_path / "bad" / "summary.json", {"runs": [{"name": "p"}]})
    with pytest.raises(reproduce.ReproductionError, match=r"bad/summary.json: expected key 'runs', a list of"):
        reproduce.load_reference(tmp_path / "bad")
    (tmp_path / "bad" / "summary.json").write_text("{")
    with pytest.raises(reproduce.ReproductionError, match="not readable JSON"):
        reproduce.load_reference(tmp_path / "bad" / "summary.json")


def test_study_command_reference_choice(project, tmp_path, capsys):
    fast = ROOT / "params" / "fast.yaml"
    assert commands.reference_for(fast, tmp_path / "out", compare=False) is None
    assert commands.reference_for(fast, tmp_path / "out", reference=project / "reports" / "fast") == (
        project / "reports" / "fast").resolve()
    with pytest.raises(commands.StudyError, match="that is --out itself"):
        commands.reference_for(fast, project / "reports" / "fast", reference=project / "reports" / "fast")
    with pytest.raises(commands.StudyError, match="no summary.json there"):
        commands.reference_for(fast, tmp_path / "out", reference=tmp_path / "nowhere")
    if (ROOT / "reports" / "fast" / "summary.json").is_file():
        assert commands.reference_for(fast, tmp_path / "out") == ROOT / "reports" / "fast"
        assert commands.reference_for(fast, ROOT / "reports" / "fast") is None
        assert "is the committed study of fast.yaml: this re-renders it" in capsys.readouterr().out


def test_without_a_reference_a_previous_check_is_removed(tmp_path):
    atomic_write_json(tmp_path / reproduce.FILE, reproduce.compare(REF, REF, "old"))
    assert commands._reproduction(tmp_path, None) is None and not (tmp_path / reproduce.FILE).exists()


def test_front_page_section_only_when_the_check_exists(tmp_path):
    new = {**REF, "runs": REF["runs"][:3]}
    assert reproduce.section_html(tmp_path) == ""
    assert "Reproduction check" not in frontpage.write_index(tmp_path, {}, []).read_text()
    reproduce.write(tmp_path, reproduce.compare(new, REF, "reports/fast"))
    page = frontpage.write_index(tmp_path, {}, []).read_text()
    assert "<h2>Reproduction check against reports/fast</h2>" in page
    assert "not within the seed spread: missing here: q s1 Test A" in page and page.count("<td>missing here</td>") == 2
    assert json.loads((tmp_path / reproduce.FILE).read_text())["reference"] == "reports/fast"


def _one_cell_notebook(folder: Path) -> Path:
    """A parameters cell and a cell recording the kernel's transport."""
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    params = nbformat.v4.new_code_cell("x = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(
        "from ipykernel.kernelapp import IPKernelApp\nprint(IPKernelApp.instance().transport)")]
    folder.mkdir()
    nbformat.write(nb, folder / "one.ipynb")
    return folder


def test_kernels_start_over_ipc_without_the_tcp_warning(tmp_path, capfd):
    nbs = _one_cell_notebook(tmp_path / "nbs")
    runner._execute("one.ipynb", tmp_path / "out" / "one.ipynb", {"x": 2}, progress=False, notebooks_dir=nbs)
    err = capfd.readouterr().err
    assert "without encryption" not in err and "WARNING" not in err
    out = nbformat.read(tmp_path / "out" / "one.ipynb", as_version=4)
    assert out.cells[-1].outputs[0]["text"].strip() == "ipc"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["one.ipynb"]  # no socket files left
    if int(ipykernel.__version__.split(".")[0]) >= 7:  # the cause: papermill's default tcp transport
        papermill.execute_notebook(str(nbs / "one.ipynb"), str(tmp_path / "tcp.ipynb"), kernel_name="python3",
                                   progress_bar=False)
        assert "Kernel is running over TCP without encryption" in capfd.readouterr().err
