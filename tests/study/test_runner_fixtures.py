"""The runner's skip, failure isolation and resume, on tiny fixture notebooks (tests/notebooks/):
``ok.ipynb`` declares the chain's checked parameters plus ``fail`` and appends an ``x`` to
``ran.txt`` in its run folder; ``fail.ipynb`` is a parameters cell and ``assert False``;
``data.ipynb`` writes a manifest whose hash covers its parameters (``glas_dir``, ``n_train``,
``labels``). Each execution starts a real kernel (about a second), as papermill's own tests do;
the kernels import qfcn from this checkout (PYTHONPATH)."""
import json
import shutil
from pathlib import Path

import pytest
from papermill.exceptions import PapermillExecutionError

from qfcn.io import ROOT, atomic_write_json, param_hash
from qfcn.study import params as P
from qfcn.study import runner, runs

FIXTURES = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.fixture(autouse=True)
def _kernels_import_this_checkout(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))


def _notebooks(folder: Path, **steps: str) -> Path:
    """A notebooks folder: every chain step is ok.ipynb unless ``steps`` names another fixture."""
    folder.mkdir()
    for section in P.SECTIONS:
        shutil.copy(FIXTURES / steps.get(section, "ok.ipynb"), folder / P.SECTIONS[section])
    return folder


@pytest.fixture
def study(tmp_path):
    out = tmp_path / "out"
    atomic_write_json(out / "data" / "manifest.json", {"hash": "m", "counts": {"train": {"images": 20}}})
    return out


def test_run_point_runs_the_chain_then_skips_it(tmp_path, study):
    nbs = _notebooks(tmp_path / "nbs")
    point = {"name": "a b", "seed": 3}
    first = runner.run_point({}, point, str(study), notebooks_dir=nbs)
    chain = runner.point_parameters({}, point, nbs)
    name, h = runner.run_id(point, chain, runner.run_identity(study, None, nbs))
    assert first["status"] == "done" and first["run_dir"] == str(study / "runs" / name) and name.startswith("a-b-s3-")
    run = Path(first["run_dir"])
    assert (run / "ran.txt").read_text() == "xxx"
    assert (run / "kernel_log_level.txt").read_text() == "50"  # CRITICAL: no shutdown-interrupt noise
    assert {p.name for p in run.glob("*.ipynb")} == {P.SECTIONS[s] for s in P.CHAIN}
    assert json.loads((run / "done.json").read_text())["params_hash"] == h
    again = runner.run_point({}, point, str(study), notebooks_dir=nbs)
    assert again["status"] == "skipped (done)" and (run / "ran.txt").read_text() == "xxx"


def test_done_marker_of_other_parameters_does_not_skip(tmp_path, study):
    nbs = _notebooks(tmp_path / "nbs")
    point = {"name": "a", "seed": 0}
    name, _ = runner.run_id(point, runner.point_parameters({}, point, nbs), runner.run_identity(study, None, nbs))
    atomic_write_json(study / "runs" / name / "done.json", {"params_hash": "other"})
    assert runner.run_point({}, point, str(study), notebooks_dir=nbs)["status"] == "done"


def test_failed_run_is_isolated_then_rerun_on_resume(tmp_path, study):
    nbs = _notebooks(tmp_path / "nbs")
    params = {"batch": {"seeds": [0], "runs": [{"name": "bad", "fail": True}, {"name": "good"}]}}
    statuses = runner.run_batch(params, study, progress=False, notebooks_dir=nbs)
    assert [s["status"] for s in statuses] == ["failed", "done"]
    assert "fixture failure" in statuses[0]["error"]
    bad = Path(statuses[0]["run_dir"])
    assert (bad / "failed.json").is_file() and not (bad / "done.json").exists()
    assert (bad / P.SECTIONS["ensemble"]).is_file() and not (bad / P.SECTIONS["suggestion"]).exists()
    assert runs.read_failed(study) == [{"name": "bad", "seed": 0, "run_dir": f"runs/{bad.name}",
                                        "error": "AssertionError: fixture failure"}]
    resumed = runner.run_batch(params, study, progress=False, notebooks_dir=nbs)
    assert [s["status"] for s in resumed] == ["failed", "skipped (done)"]
    assert [s["run_dir"] for s in resumed] == [s["run_dir"] for s in statuses]


def test_failing_step_keeps_the_executed_notebooks(tmp_path, study):
    nbs = _notebooks(tmp_path / "nbs", training="fail.ipynb")
    status = runner.run_point({}, {"name": "x", "seed": 0}, str(study), notebooks_dir=nbs)
    run = Path(status["run_dir"])
    assert status["status"] == "failed" and (run / "ran.txt").read_text() == "xx"
    assert (run / P.SECTIONS["training"]).is_file() and (run / "failed.json").is_file()
    assert json.loads((run / "failed.json").read_text())["params_hash"] == status["params_hash"]


def test_bad_point_fails_before_any_run(tmp_path, study):
    nbs = _notebooks(tmp_path / "nbs")
    params = {"batch": {"runs": [{"name": "ok"}, {"name": "bad", "k_members": 1}]}}
    with pytest.raises(runner.StudyError, match=r"run 'bad' \(seed 0\): k_members=1"):
        runner.run_batch(params, study, progress=False, notebooks_dir=nbs)
    assert not (study / "runs").exists()


def test_data_step_is_skipped_when_its_manifest_has_the_same_parameters(tmp_path, study):
    nbs = _notebooks(tmp_path / "nbs", data="data.ipynb")
    effective = {"glas_dir": "", "n_train": 20, "labels": "instances"}  # defaults and the runner's glas_dir
    atomic_write_json(study / "data" / "manifest.json", {"hash": "m", "params_hash": param_hash(effective)})
    assert runner.run_data_step({}, study, None, progress=False, notebooks_dir=nbs)["hash"] == "m"
    atomic_write_json(study / "data" / "manifest.json", {"hash": "m", "params_hash": "other"})
    with pytest.raises(runner.StudyError, match="the data step failed: AssertionError: fixture failure") as info:
        runner.run_data_step({"data": {"n_train": 0}}, study, None, progress=False, notebooks_dir=nbs)
    assert isinstance(info.value.__cause__, PapermillExecutionError)
    assert (study / "01-data.failed.ipynb").is_file() and not (study / P.SECTIONS["data"]).exists()
    assert runs.read_manifest(study)["params_hash"] == "other"  # the failed step replaced nothing


def test_unknown_notebook_parameter_is_an_error_before_a_kernel_starts(tmp_path, study):
    nbs = _notebooks(tmp_path / "nbs")
    with pytest.raises(runner.StudyError, match=r"01-data.ipynb: no parameter 'n_trian'"):
        runner._execute(P.SECTIONS["data"], study / "x.ipynb", {"n_trian": 3}, progress=False, notebooks_dir=nbs)
    assert not (study / "x.ipynb").exists()


def test_a_failed_notebook_never_replaces_a_good_one(tmp_path, study):
    """Issue 13 (5): a failing 05-ablations kept the previous, good executed notebook."""
    nbs = _notebooks(tmp_path / "nbs", suggestion="fail.ipynb")
    good = study / "05.ipynb"
    runner._execute(P.SECTIONS["ensemble"], good, {}, progress=False, notebooks_dir=nbs, keep_previous=True)
    before = good.read_bytes()
    with pytest.raises(PapermillExecutionError):
        runner._execute(P.SECTIONS["suggestion"], good, {}, progress=False, notebooks_dir=nbs, keep_previous=True)
    assert good.read_bytes() == before and (study / "05.failed.ipynb").is_file()
    assert not list(study.glob(".*running*"))
