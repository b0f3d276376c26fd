"""The study/sweep commands on fixture notebooks (tests/notebooks/): a study folder that knows
what it holds (issue 13). ``data.ipynb`` stands in for 01-data (its manifest hash covers
``glas_dir``, ``n_train`` and ``labels``), ``ok.ipynb``/``fail.ipynb`` for the chain. Each
test names the defect group of issue 13 it reproduces."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from qfcn.io import ROOT
from qfcn.study import commands, folder, runner, runs

from tests.study.test_runner_fixtures import _notebooks


@pytest.fixture(autouse=True)
def _kernels_import_this_checkout(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))


@pytest.fixture
def nbs(tmp_path):
    return _notebooks(tmp_path / "nbs", data="data.ipynb")


def _params(tmp_path, obj, name="p.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(obj))
    return path


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _sweep(params, out, nbs, **kw):
    return commands.run_sweep(params, out, notebooks_dir=nbs, progress=False, **kw)


ONE_RUN = {"batch": {"seeds": [0], "runs": [{"name": "a"}]}}


def test_g1_changed_params_file_is_refused_then_replace_moves_the_old_runs(tmp_path, nbs):
    out = tmp_path / "out"
    p = _params(tmp_path, ONE_RUN)
    [first] = _sweep(p, out, nbs)
    old_run = Path(first["run_dir"]).name
    before = {k: v for k, v in _tree(out).items() if k != ".lock"}
    p.write_text(yaml.safe_dump({"ensemble": {"k_members": 3}, **ONE_RUN}))
    with pytest.raises(runner.StudyError, match=r"params file changed .*--replace to move them"):
        _sweep(p, out, nbs)
    assert {k: v for k, v in _tree(out).items() if k != ".lock"} == before  # nothing written, nothing mixed
    [second] = _sweep(p, out, nbs, replace=True)
    assert second["status"] == "done"
    [moved] = list(out.glob("replaced-*"))
    assert (moved / "runs" / old_run / "done.json").is_file()  # moved aside, not deleted
    assert [d.name for d in (out / "runs").iterdir()] == [Path(second["run_dir"]).name] != [old_run]
    assert folder.read_study(out)["identity"]["params"] != json.loads((moved / "study.json").read_text())["identity"]["params"]


def test_g1_finished_runs_of_another_identity_are_never_mixed(tmp_path, nbs):
    """A run folder of another identity in runs/ (e.g. left by another code or thread count)."""
    out = tmp_path / "out"
    p = _params(tmp_path, ONE_RUN)
    [first] = _sweep(p, out, nbs, threads=1)
    with pytest.raises(runner.StudyError, match=r"1 finished run\(s\) of another identity .*threads 1 here, 2 now"):
        _sweep(p, out, nbs, threads=2)
    assert _sweep(p, out, nbs, threads=1)[0]["status"] == "skipped (done)"


def test_g2_other_data_folder_is_refused_and_runs_get_other_ids(tmp_path, nbs):
    out, a, b = tmp_path / "out", tmp_path / "A", tmp_path / "B"
    a.mkdir(), b.mkdir()
    p = _params(tmp_path, ONE_RUN)
    [first] = _sweep(p, out, nbs, data=a)
    assert runs.read_manifest(out)["glas_dir"] == str(a)
    with pytest.raises(runner.StudyError, match=r"data folder changed .*--replace"):
        _sweep(p, out, nbs, data=b)
    [second] = _sweep(p, out, nbs, data=b, replace=True)
    assert second["status"] == "done" and second["run_dir"] != first["run_dir"]  # not "skipped (done)"
    assert runs.read_manifest(out)["glas_dir"] == str(b)


def test_g3_unrelated_non_empty_out_is_refused_before_a_file_is_written(tmp_path, nbs):
    out = tmp_path / "mine"
    (out / "figures").mkdir(parents=True)
    for name in ("index.html", "summary.json", "ablations.json", "figures/main_results.png", "analysis.ipynb"):
        (out / name).write_text("user's own " + name)
    before = _tree(out)
    with pytest.raises(runner.StudyError, match=r"not empty and was not made by qfcn .*nothing was written"):
        _sweep(_params(tmp_path, ONE_RUN), out, nbs, replace=True)
    assert _tree(out) == before and not (out / ".lock").exists()


def test_g3_a_study_of_an_older_qfcn_is_only_replaced(tmp_path):
    out = tmp_path / "old"
    (out / "data").mkdir(parents=True)
    (out / "data" / "manifest.json").write_text(json.dumps({"hash": "m", "params_hash": "p", "code_version": "0.1"}))
    (out / "index.html").write_text("old report")
    assert folder.check_out(out) == "legacy"
    (out / "notes.txt").write_text("mine")
    with pytest.raises(folder.FolderError):
        folder.check_out(out)


def test_g4_labels_option_reaches_the_data_step_and_is_part_of_the_identity(tmp_path, nbs):
    out = tmp_path / "out"
    p = _params(tmp_path, ONE_RUN)
    _sweep(p, out, nbs, labels="components")
    assert runs.read_manifest(out)["labels"] == "components"
    with pytest.raises(runner.StudyError, match=r"data_step .*--replace"):
        _sweep(p, out, nbs)  # labels back to instances: other data, other runs


def test_g4_labels_option_on_a_data_step_without_it_is_refused(tmp_path):
    nbs = _notebooks(tmp_path / "nbs")  # 01 is ok.ipynb: no labels parameter
    with pytest.raises(runner.StudyError, match=r"--labels: notebook 01-data.ipynb has no 'labels' parameter"):
        _sweep(_params(tmp_path, ONE_RUN), tmp_path / "out", nbs, labels="components")
    assert not (tmp_path / "out").exists()


def test_g5_g8_runs_that_fail_end_in_a_non_zero_status_with_their_cause(tmp_path, nbs):
    out = tmp_path / "out"
    p = _params(tmp_path, {"batch": {"seeds": [0], "runs": [{"name": "bad", "fail": True}, {"name": "good"}]}})
    with pytest.raises(commands.RunsFailed, match=r"1 of 2 runs failed, e.g. 'bad' \(seed 0\): AssertionError: "
                                                  r"fixture failure \(all causes: .*failed.json\)"):
        _sweep(p, out, nbs)
    [row] = runs.read_failed(out)
    assert row["name"] == "bad" and row["error"] == "AssertionError: fixture failure"
    assert (out / row["run_dir"] / "failed.json").is_file()


def test_g5_study_whose_runs_all_fail_names_the_cause_not_missing_results(tmp_path, nbs):
    out = tmp_path / "out"
    p = _params(tmp_path, {"batch": {"seeds": [0], "runs": [{"name": "bad", "fail": True}]}})
    with pytest.raises(commands.RunsFailed, match="1 of 1 runs failed.*fixture failure"):
        commands.run_study(p, out, notebooks_dir=nbs, progress=False)
    assert not (out / "05-ablations.ipynb").exists() and not (out / "index.html").exists()


def test_g11_a_second_command_on_a_locked_folder_is_refused(tmp_path, nbs):
    out = tmp_path / "out"
    code = ("import sys, time; from qfcn.io import folder_lock\n"
            "with folder_lock(sys.argv[1]):\n    print('locked', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(runner.StudyError, match=rf"another qfcn command is writing this folder .*pid {holder.pid}"):
            _sweep(_params(tmp_path, ONE_RUN), out, nbs)
    finally:
        holder.kill()
        holder.wait()
    assert not (out / "runs").exists()


def test_g12_relative_paths_are_resolved_against_the_working_directory_and_recorded(tmp_path, nbs, monkeypatch):
    (tmp_path / "work" / "glas").mkdir(parents=True)
    _params(tmp_path / "work", ONE_RUN)
    monkeypatch.chdir(tmp_path / "work")
    _sweep(Path("p.yaml"), Path("out"), nbs, data=Path("glas"))
    rec = folder.read_study(tmp_path / "work" / "out")
    assert rec["identity"]["data"] == str(tmp_path / "work" / "glas") == rec["data_source"]
    assert rec["params_file"] == str(tmp_path / "work" / "p.yaml")
    assert runs.read_manifest(tmp_path / "work" / "out")["glas_dir"] == str(tmp_path / "work" / "glas")
