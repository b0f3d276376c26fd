"""Params files: keys and types checked against the notebooks, batch points, and the
parameter checks of every step."""
import pytest
import yaml

from qfcn.io import ROOT
from qfcn.study import params as P

PARAM_FILES = sorted((ROOT / "params").glob("*.yaml"))


@pytest.mark.parametrize("path", PARAM_FILES, ids=lambda p: p.name)
def test_params_file_keys_and_types_match_notebooks(path):
    params = P.load(path)  # raises ParamsError on an unknown key or a wrong type
    assert P.batch_points(params), "a params file gives at least one run"


def test_params_files_exist():
    assert {p.name for p in PARAM_FILES} >= {"smoke.yaml", "fast.yaml", "paper.yaml"}


def _write(tmp_path, obj):
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(obj))
    return p


@pytest.mark.parametrize("obj, match", [
    ({"data": {"n_trian": 3}}, r"\[data\]: unknown key 'n_trian'"),
    ({"data": {"n_train": "3"}}, r"\[data\]: 'n_train' = '3' has type str, expected int"),
    ({"data": {"scale": True}}, r"'scale' = True has type bool, expected float"),
    ({"datta": {}}, r"unknown section 'datta'"),
    ({"data": {"study_dir": "x"}}, r"'study_dir' is set by the runner"),
    ({"batch": {"grid": {"ntq_bitz": [5]}}}, r"\[batch.grid\]: unknown key 'ntq_bitz'"),
    ({"batch": {"grid": {"ntq_bits": 5}}}, r"'ntq_bits' must be a list"),
    ({"batch": {"runs": [{"ntq_bits": "five"}]}}, r"\[batch.runs\]\[0\]: 'ntq_bits' = 'five'"),
    ({"batch": {"seeds": []}}, r"'seeds' must be a non-empty list"),
    ({"batch": {"sweeps": []}}, r"\[batch\]: unknown key 'sweeps'"),
])
def test_bad_params_files_name_file_and_key(tmp_path, obj, match):
    path = _write(tmp_path, obj)
    with pytest.raises(P.ParamsError, match=match) as info:
        P.load(path)
    assert str(path) in str(info.value)


def test_missing_and_broken_params_file(tmp_path):
    with pytest.raises(P.ParamsError, match="does not exist"):
        P.load(tmp_path / "none.yaml")
    (tmp_path / "b.yaml").write_text("data: [1,\n")
    with pytest.raises(P.ParamsError, match="not valid YAML"):
        P.load(tmp_path / "b.yaml")


def test_batch_points_cross_runs_grid_and_seeds():
    params = {"batch": {"seeds": [0, 1], "runs": [{"name": "a", "ntq_bits": 32}], "grid": {"ntq_bits": [7, 5]}}}
    pts = P.batch_points(params)
    assert len(pts) == 6
    assert pts[0] == {"name": "a", "ntq_bits": 32, "seed": 0}
    assert {p["name"] for p in pts} == {"a", "ntq_bits7", "ntq_bits5"}


def test_notebook_parameters_take_point_overrides_only_where_declared():
    params = {"training": {"n_members": 2}}
    out = P.notebook_parameters(params, "training", {"ntq_bits": 7, "selection": "random", "name": "x"})
    assert out["ntq_bits"] == 7 and out["n_members"] == 2 and "name" not in out
    assert "selection" not in out or "selection" in P.notebook_defaults(P.SECTIONS["training"])
