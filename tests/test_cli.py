"""The command line (issue 13, groups 8 and 9): a user error is one line ``qfcn <cmd>: error: ...``
with exit status 2 and no traceback (``--debug`` shows it); failed runs give exit status 1.
In-process ``cli.main``; the chain is the fixture notebooks (tests/notebooks/)."""
import pytest
import yaml

from qfcn import cli
from qfcn.io import ROOT
from qfcn.study import params as P
from qfcn.study import runner, runs

from tests.study.test_runner_fixtures import _notebooks


def _call(capsys, *argv):
    code = cli.main(list(argv))
    err = capsys.readouterr().err
    return code, err


@pytest.fixture
def p(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"batch": {"runs": [{"name": "a"}]}}))
    return path


@pytest.mark.parametrize("extra, match", [
    (["--data", "nope"], r"--data .*/nope: not a folder \(expected a folder in GlaS layout\)"),
    (["--scheduler", "tcp//x:1"], r"--scheduler 'tcp//x:1': not a Dask scheduler address"),
])
def test_user_errors_are_one_line_with_exit_2(tmp_path, capsys, p, extra, match, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = _call(capsys, "sweep", "--params", str(p), "--out", str(tmp_path / "o"), *extra)
    assert code == 2 and err.count("\n") == 1 and err.startswith("qfcn sweep: error: ")
    assert "Traceback" not in err
    import re
    assert re.search(match, err), err
    assert not (tmp_path / "o").exists()


def test_bad_params_file_is_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch:\n  seeds: [0]\n  seeds: [1]\n")
    code, err = _call(capsys, "study", "--params", str(bad), "--out", str(tmp_path / "o"))
    assert code == 2 and err == f"qfcn study: error: params file {bad}: line 3: key 'seeds' is given twice\n"
    with pytest.raises(runner.StudyError, match="given twice"):
        cli.main(["study", "--params", str(bad), "--out", str(tmp_path / "o"), "--debug"])


def test_unrelated_out_is_one_line(tmp_path, capsys, p):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "index.html").write_text("mine")
    code, err = _call(capsys, "sweep", "--params", str(p), "--out", str(tmp_path / "o"))
    assert code == 2 and "not made by qfcn" in err and err.count("\n") == 1


@pytest.mark.parametrize("opt", [["--workers", "0"], ["--threads", "-1"], ["--timeout", "x"], ["--labels", "binary"]])
def test_bad_option_values_are_refused_by_the_parser(tmp_path, capsys, p, opt):
    with pytest.raises(SystemExit) as info:
        cli.main(["sweep", "--params", str(p), "--out", str(tmp_path / "o"), *opt])
    assert info.value.code == 2 and opt[0] in capsys.readouterr().err


def test_failed_runs_give_exit_1_after_the_others_finish(tmp_path, capsys, monkeypatch):
    nbs = _notebooks(tmp_path / "nbs", data="data.ipynb")
    monkeypatch.setattr(runs, "NOTEBOOKS", nbs)
    monkeypatch.setattr(P, "NOTEBOOKS", nbs)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump({"batch": {"runs": [{"name": "bad", "fail": True}, {"name": "good"}]}}))
    code, err = _call(capsys, "sweep", "--params", str(params), "--out", str(tmp_path / "o"), "--no-progress")
    assert code == 1 and err.startswith("qfcn sweep: error: 1 of 2 runs failed, e.g. 'bad'")
    assert [r["name"] for r in runs.read_failed(tmp_path / "o")] == ["bad"]
    assert (tmp_path / "o" / "runs").is_dir() and len(list((tmp_path / "o" / "runs").glob("good-*/done.json"))) == 1


def test_test_command_passes_options_to_pytest():
    # "python -m qfcn test -q ..." was refused by the parser ("unrecognized arguments: -q")
    assert cli.main(["test", "--version"]) == 0
    assert cli.main(["test", "-q", "--co", "tests/test_cli.py::test_test_command_passes_options_to_pytest"]) == 0
