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
    ({"data": {"n_trian": 3}}, r"data.n_trian: unknown key 'n_trian'; expected one of \[.*'n_train'"),
    ({"data": {"n_train": "3"}}, r"data.n_train = '3': expected int \(like the notebook default 24\)"),
    ({"data": {"scale": True}}, r"data.scale = True: expected float"),
    ({"data": {"val_fraction": 0.7}}, r"data.val_fraction = 0.7: .*0.5"),  # the data step's own bound, up front
    ({"datta": {}}, r"datta: unknown section 'datta'"),
    ({"data": {"study_dir": "x"}}, r"data.study_dir: 'study_dir' is set by the runner"),
    ({"batch": {"grid": {"ntq_bitz": [5]}}}, r"batch.grid.ntq_bitz: unknown key 'ntq_bitz'"),
    ({"batch": {"grid": {"ntq_bits": 5}}}, r"batch.grid.ntq_bits = 5: expected a list"),
    ({"batch": {"runs": [{"ntq_bits": "five"}]}}, r"batch.runs\[0\].ntq_bits = 'five': expected int"),
    ({"batch": {"seeds": []}}, r"batch.seeds = \[\]: list should have at least 1 item"),
    ({"batch": {"sweeps": []}}, r"batch.sweeps: unknown key 'sweeps'"),
    # issue 13 (5): values that passed the up-front checks and failed in every run
    ({"ensemble": {"float_steps": -3}}, r"ensemble.float_steps = -3: input should be greater than or equal to 1"),
    ({"ensemble": {"width": 0}}, r"ensemble.width = 0: input should be greater than 0"),
    ({"training": {"crop_size": 0}}, r"training.crop_size = 0: input should be greater than or equal to 16"),
    ({"ablations": {"metric": "F1"}}, r"ablations.metric = 'F1': input should be 'f1', 'object_dice' or"),
    ({"training": {"lr": float("nan")}}, r"training.lr = nan: input should be a finite number"),
    # issue 13 (10): silently accepted before
    ({"batch": {}}, r"batch is empty"),
    ({"batch": None}, r"batch is empty"),
    ({"batch": {"grid": {}}}, r"batch.grid is empty"),
    ({"batch": {"grid": {"ntq_bits": []}}}, r"batch.grid.ntq_bits = \[\]: list should have at least 1 item"),
    ({"batch": {"runs": []}}, r"batch.runs = \[\]: list should have at least 1 item"),
    ({"batch": {"runs": True}}, r"batch.runs = True: expected"),
    # issue 13 (1): two batch points share a name
    ({"batch": {"runs": [{"name": "a", "ntq_bits": 5}, {"name": "a", "ntq_bits": 7}]}},
     r"run name 'a' \(seed 0\) is given with other parameters"),
    ({"batch": {"runs": [{"name": "ntq_bits5"}], "grid": {"ntq_bits": [5]}}}, r"run name 'ntq_bits5'"),
])
def test_bad_params_files_name_file_and_key(tmp_path, obj, match):
    path = _write(tmp_path, obj)
    with pytest.raises(P.ParamsError, match=match) as info:
        P.load(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("text, match", [
    ("data:\n  n_train: 3\n  n_train: 4\n", r"line 3: key 'n_train' is given twice"),
    ("training: {}\ntraining: {}\n", r"line 2: key 'training' is given twice"),
    ("", r"expected a mapping of sections .* got an empty file"),
    ("# only a comment\n", r"got an empty file"),
    ("- 1\n- 2\n", r"expected a mapping of sections .* got list"),
])
def test_duplicate_keys_and_empty_files_are_errors(tmp_path, text, match):
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(P.ParamsError, match=match):
        P.load(tmp_path / "p.yaml")


def test_bit_width_errors_name_the_parameter():
    """Issue 13 (12): the message says whether qsa_bits or ntq_bits is wrong."""
    with pytest.raises(ValueError, match=r"^qsa_bits=9: "):
        P.check_ensemble(selection="suggestive", qsa_scheme="inq", qsa_bits=9, k_members=2, initial_fraction=0.2)
    with pytest.raises(ValueError, match=r"^ntq_bits=1: "):
        P.check_training(ntq_scheme="uniform", ntq_bits=1, n_members=1)
    with pytest.raises(ValueError, match=r"^ensemble.disagreement_bits=1: "):
        P.check_network("ensemble", {"disagreement_bits": [32, 1]}, "float", 32)


def test_schema_follows_the_notebooks_parameters_cells(tmp_path):
    """Interface 5: a new notebook parameter is accepted (and typed) without an edit to the schema code."""
    import json
    import shutil

    nbs = tmp_path / "nbs"
    shutil.copytree(P.NOTEBOOKS, nbs)
    nb = json.loads((nbs / P.SECTIONS["training"]).read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    cell["source"] = "".join(cell["source"]) + "\nnew_knob = 0.5"
    (nbs / P.SECTIONS["training"]).write_text(json.dumps(nb))
    assert P.validate({"training": {"new_knob": 2}, "batch": {"grid": {"new_knob": [0.1, 0.2]}}}, "f", nbs)
    with pytest.raises(P.ParamsError, match=r"training.new_knob = 'x': expected float"):
        P.validate({"training": {"new_knob": "x"}}, "f", nbs)
    with pytest.raises(P.ParamsError, match="unknown key 'new_knob'"):
        P.validate({"training": {"new_knob": 2}}, "f")


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
