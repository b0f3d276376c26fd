import json
import os
from pathlib import Path

import pytest

from qfcn.io import ROOT, ArtifactError, atomic_write_json, param_hash, read_json, run_done
from qfcn.study import runs

FIXTURES = Path(__file__).resolve().parent.parent / "notebooks"


def test_atomic_write_json_roundtrip_and_numpy(tmp_path):
    import numpy as np

    p = atomic_write_json(tmp_path / "a" / "b.json", {"x": np.float32(1.5), "y": np.arange(3), "p": tmp_path})
    assert json.loads(p.read_text()) == {"x": 1.5, "y": [0, 1, 2], "p": str(tmp_path)}
    assert not [f for f in os.listdir(p.parent) if f.endswith(".tmp")]


def test_atomic_write_keeps_old_file_when_serialisation_fails(tmp_path):
    path = tmp_path / "r.json"
    atomic_write_json(path, {"done": 1})

    class Boom:
        def tolist(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_write_json(path, {"bad": Boom()})
    assert json.loads(path.read_text()) == {"done": 1}


def test_param_hash_is_order_independent_and_sensitive():
    assert param_hash({"a": 1, "b": 2}) == param_hash({"b": 2, "a": 1})
    assert param_hash({"a": 1}) != param_hash({"a": 2})


def test_read_json_names_missing_file(tmp_path):
    with pytest.raises(ArtifactError, match="missing suggestion.*nope.json"):
        read_json(tmp_path / "nope.json", "suggestion")


def test_require_manifest_mismatch_is_clear(tmp_path):
    art = runs.stamp({"x": 1}, "aaa", {"p": 1})
    assert runs.require_manifest(art, "aaa", "f.json")["x"] == 1
    with pytest.raises(ArtifactError, match="f.json was built from data manifest 'aaa'.*'bbb'"):
        runs.require_manifest(art, "bbb", "f.json")


def test_write_params_merges_steps_and_refuses_other_manifest(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    runs.write_params(tmp_path, "02", {"k": 3}, seed=1, manifest_hash="m1")
    rec = runs.write_params(tmp_path, "03", {"k_c": 8}, seed=1, manifest_hash="m1")
    assert rec["steps"] == {"02": {"k": 3}, "03": {"k_c": 8}} and rec["seed"] == 1
    assert rec["code_version"].startswith("0.")
    assert rec["threads"] == 3  # issue 13 (7): results depend on the thread count; it is recorded
    with pytest.raises(ArtifactError, match="manifest m1"):
        runs.write_params(tmp_path, "04", {}, seed=1, manifest_hash="m2")


def test_resolve_is_relative_to_project_root(tmp_path):
    assert runs.resolve("runs/x") == ROOT / "runs/x"
    assert runs.resolve(tmp_path) == tmp_path


def test_run_done(tmp_path):
    assert not run_done(tmp_path, "h")
    atomic_write_json(tmp_path / "done.json", {"params_hash": "h"})
    assert run_done(tmp_path, "h") and not run_done(tmp_path, "other")



def test_step_params_reads_the_parameters_cell_in_order():
    ns = {"study_dir": "s", "run_dir": "r", "fail": True, "seed": 3, "selection": "random", "qsa_scheme": "float",
          "qsa_bits": 32, "k_members": 2, "initial_fraction": 0.25, "budget": 0.5, "k_pick": 2, "k_candidates": 4,
          "ntq_scheme": "float", "ntq_bits": 32, "n_members": 1, "val_fraction": 0.2, "variants": [], "other": 1}
    got = runs.step_params("ok", ns, notebooks_dir=FIXTURES)
    assert list(got) == ["seed", "selection", "qsa_scheme", "qsa_bits", "k_members", "initial_fraction", "budget",
                         "k_pick", "k_candidates", "ntq_scheme", "ntq_bits", "n_members", "val_fraction",
                         "variants", "fail"]
    assert got["seed"] == 3 and got["fail"] is True and "other" not in got and "study_dir" not in got
    assert runs.step_params("fail", {}, notebooks_dir=FIXTURES) == {}


def test_step_params_names_a_missing_parameter_and_a_missing_cell(tmp_path):
    with pytest.raises(KeyError, match=r"\['seed', 'selection'"):
        runs.step_params("ok", {}, notebooks_dir=FIXTURES)
    (tmp_path / "x.ipynb").write_text(json.dumps({"cells": [{"cell_type": "code", "metadata": {}, "source": ["a = 1"]}]}))
    with pytest.raises(ValueError, match="no cell tagged 'parameters'"):
        runs.step_params("x", {}, notebooks_dir=tmp_path)


def test_step_params_of_the_project_notebooks_cover_their_parameters_cells():
    for nb in sorted(runs.NOTEBOOKS.glob("*.ipynb")):
        names = runs.parameter_names(nb)
        assert set(runs.step_params(nb.stem, dict.fromkeys(names, 0))) == set(names) - {"study_dir", "run_dir"}


def test_done_point(tmp_path):
    assert runs.done_point(tmp_path) is None
    atomic_write_json(tmp_path / "done.json", {"params_hash": "h"})
    assert runs.done_point(tmp_path) == {}
    atomic_write_json(tmp_path / "done.json", {"params_hash": "h", "point": {"name": "a", "seed": 0}})
    assert runs.done_point(tmp_path) == {"name": "a", "seed": 0}


def test_run_identity_covers_data_code_and_threads():
    """Issue 13 (2, 7): other data, other code or another thread count give another run folder."""
    from qfcn.study import runner

    point, chain = {"name": "a", "seed": 0}, {"training": {"ntq_bits": 5}}
    base = {"manifest_hash": "m1", "code": "c1", "threads": 1}
    names = {runner.run_id(point, chain, {**base, **change})[0] for change in
             ({}, {"manifest_hash": "m2"}, {"code": "c2"}, {"threads": 2})}
    assert len(names) == 4 and all(n.startswith("a-s0-") for n in names)


def test_read_failed_without_a_record_is_empty(tmp_path):
    assert runs.read_failed(tmp_path) == []
