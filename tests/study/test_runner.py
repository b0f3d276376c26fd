"""The whole notebook chain on the smoke profile, on a local Dask cluster on loopback, then
resume, reporting and bad input. One chain execution is shared by the tests of this module."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from qfcn.io import ROOT
from qfcn.study import params as P
from qfcn.study import commands, report, runs
from qfcn.study import runner as study

SMOKE = ROOT / "params" / "smoke.yaml"


@pytest.fixture(scope="module")
def smoke_study(tmp_path_factory):
    from dask.distributed import LocalCluster

    out = tmp_path_factory.mktemp("study")
    os.environ["PYTHONPATH"] = str(ROOT)  # kernels on the Dask worker import this checkout's qfcn
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        statuses = commands.run_study(SMOKE, out, scheduler=cluster.scheduler_address, progress=False)
    return out, statuses


def test_study_runs_every_point_and_writes_the_report(smoke_study):
    out, statuses = smoke_study
    points = P.batch_points(P.load(SMOKE))
    assert [s["status"] for s in statuses] == ["done"] * len(points), statuses
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["runs"]) == len(points)
    for r in summary["runs"]:
        for split in ("test_a", "test_b"):
            assert set(r[split]) == {"f1", "object_dice", "object_hausdorff"}
            assert 0.0 <= r[split]["f1"] <= 1.0
    index = (out / "index.html").read_text()
    for nb in ["01-data.html", "05-ablations.html"]:
        assert nb in index and (out / nb).is_file()
    assert (out / "ablations.json").is_file() and list((out / "figures").glob("*.png"))
    captions = json.loads((out / "figure_captions.json").read_text())
    assert (out / "figures" / "training_curves.png").is_file() and "±1 standard deviation" in captions[
        "training_curves.png"]


def test_every_run_records_provenance_and_artifacts(smoke_study):
    out, statuses = smoke_study
    manifest = runs.read_manifest(out)
    for s in statuses:
        run = Path(s["run_dir"])
        rec = json.loads((run / "params.json").read_text())
        assert rec["manifest_hash"] == manifest["hash"] and "code_version" in rec and "seed" in rec
        assert rec["threads"] == 1  # one thread per run on Dask (the default), part of the run's identity
        assert set(rec["steps"]) == {"02-ensemble-quantization", "03-suggestion", "04-quantized-training"}
        for nb in P.CHAIN:
            assert (run / P.SECTIONS[nb]).with_suffix(".html").is_file()
        metrics = json.loads((run / "final" / "metrics.json").read_text())
        assert metrics["manifest_hash"] == manifest["hash"]
        assert metrics["main"] in metrics["variants"]
        sugg = json.loads((run / "suggestion.json").read_text())
        assert len(sugg["annotated"]) == len(set(sugg["annotated"]))


def test_quantized_run_has_packed_models_and_controls(smoke_study):
    out, _ = smoke_study
    df = report.tidy(out)
    q = df[df.ntq_bits == 5]
    assert {"ntq", "float_control", "uniform", "ptq", "ptq_bn", "single", "float"} <= set(q.variant)
    ntq = q[q.variant == "ntq"].iloc[0]
    assert ntq.weight_bytes * 6 <= q[q.variant == "float"].iloc[0].weight_bytes  # 5-bit codes, measured


def test_rerun_skips_finished_runs_and_refuses_another_thread_count(smoke_study):
    out, _ = smoke_study
    statuses = study.run_batch(P.load(SMOKE), out, progress=False, threads=1)
    assert all(s["status"] == "skipped (done)" for s in statuses)
    with pytest.raises(study.StudyError, match=r"another identity .*threads 1 here, 2 now"):
        study.run_batch(P.load(SMOKE), out, progress=False, threads=2)
    assert json.loads((out / "study.json").read_text())["created_by"] == "qfcn"


def test_cli_bad_params_is_a_clear_error_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"batch": {"grid": {"ntq_bitz": [5]}}}))
    proc = subprocess.run([sys.executable, "-m", "qfcn", "sweep", "--params", str(bad), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert "unknown key 'ntq_bitz'" in proc.stderr and str(bad) in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


def test_data_folder_that_does_not_exist_is_refused(tmp_path):
    with pytest.raises(study.StudyError, match="--data .*nope: not a folder"):
        study.run_data_step({}, tmp_path / "o", tmp_path / "nope", progress=False)


def test_failed_run_keeps_its_notebook(smoke_study, tmp_path):
    out, _ = smoke_study
    copy = tmp_path / "copy"
    shutil.copytree(out / "data", copy / "data")
    params = P.load(SMOKE)
    params["training"].update(variants=[])
    # a size-table bit-width INQ does not support: refused up front by run_batch, so run_point directly
    with pytest.raises(study.StudyError, match=r"training.size_bits=9"):
        study.check_points(params, [{"name": "bad", "seed": 0, "size_bits": [9]}], None)
    status = study.run_point(params, {"name": "bad", "seed": 0, "selection": "random", "size_bits": [9]}, str(copy),
                             threads=1)
    assert status["status"] == "failed" and "9" in status["error"]
    run = Path(status["run_dir"])
    assert (run / "failed.json").is_file() and (run / "04-quantized-training.ipynb").is_file()
    assert not (run / "done.json").exists()


@pytest.mark.parametrize("point, match", [
    ({"k_members": 1}, r"k_members=1: expected an integer >= 2"),
    ({"budget": 1.5}, r"budget: expected a fraction of the pool in \(0, 1\]"),
    ({"k_pick": 9, "k_candidates": 4}, r"k_candidates: expected k_pick <= k_candidates"),
    ({"qsa_bits": 9}, r"inq"),
    ({"ntq_scheme": "uniform", "ntq_bits": 1}, r"uniform"),
    ({"variants": ["ptq", "nope"]}, r"variants: unknown \['nope'\]"),
    ({"float_steps": -3}, r"ensemble.float_steps: expected an int >= 0"),
    ({"disagreement_bits": [32, 1]}, r"ensemble.disagreement_bits=1"),
])
def test_bad_chain_parameters_fail_before_any_run(point, match):
    params = P.load(SMOKE)
    with pytest.raises(study.StudyError, match=match) as info:
        study.check_points(params, [{"name": "x", "seed": 0, **point}], n_pool=20)
    assert "run 'x'" in str(info.value)


@pytest.mark.slow
@pytest.mark.timeout(2400)  # the whole default chain: tens of minutes on a busy 2-core machine
def test_notebooks_run_top_to_bottom_with_their_defaults(tmp_path):
    """What a JupyterLab user gets: every notebook's default parameters, in order (only the
    folders are moved out of the project's runs/default). Several minutes: marked slow."""
    study_dir, run_dir = tmp_path / "default", tmp_path / "default" / "runs" / "interactive"
    for section, nb in P.SECTIONS.items():
        folders = {"study_dir": str(study_dir)}
        if section in P.CHAIN:
            folders["run_dir"] = str(run_dir)
        study._execute(nb, (run_dir if section in P.CHAIN else study_dir) / nb, folders, progress=False)
    assert (run_dir / "final" / "metrics.json").is_file() and (study_dir / "ablations.json").is_file()


def test_runs_of_one_configuration_share_their_name_across_seeds(smoke_study):
    out, _ = smoke_study
    names = {r["run"]["name"] for r in report.load_run_metrics(out)}
    assert names == {p["name"] for p in P.batch_points(P.load(SMOKE))}


def test_a_given_folder_gives_the_built_in_numbers(smoke_study, tmp_path):
    """Issue 14: the synthetic set copied into a folder of its own and given with --data goes
    through the same working scale, validation set and scoring as the built-in data, so every
    score of every run is the same (same thread count: one per run)."""
    out, _ = smoke_study
    given = tmp_path / "Warwick_QU_like"
    given.mkdir()
    for f in (out / "data" / "glas").iterdir():
        if f.suffix == ".bmp" or f.name == "Grade.csv":
            shutil.copy2(f, given / f.name)
    out2 = tmp_path / "given"
    commands.run_study(SMOKE, out2, data=given, workers=1, threads=1, progress=False)
    manifest = runs.read_manifest(out2)
    assert not manifest["synthetic"] and manifest["scale"] == runs.read_manifest(out)["scale"]

    def scores(study_dir):
        rows = json.loads((study_dir / "summary.json").read_text())["runs"]
        return {(r["run"]["name"], r["run"]["seed"]): (r["test_a"], r["test_b"]) for r in rows}

    assert scores(out2) == scores(out)
