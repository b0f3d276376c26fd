import json
import os

import pytest

from qfcn.study import runs
from qfcn.io import ArtifactError, ROOT, atomic_write_json, param_hash, read_json


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


def test_write_params_merges_steps_and_refuses_other_manifest(tmp_path):
    runs.write_params(tmp_path, "02", {"k": 3}, seed=1, manifest_hash="m1")
    rec = runs.write_params(tmp_path, "03", {"k_c": 8}, seed=1, manifest_hash="m1")
    assert rec["steps"] == {"02": {"k": 3}, "03": {"k_c": 8}} and rec["seed"] == 1
    assert rec["code_version"].startswith("0.")
    with pytest.raises(ArtifactError, match="manifest m1"):
        runs.write_params(tmp_path, "04", {}, seed=1, manifest_hash="m2")


def test_resolve_is_relative_to_project_root(tmp_path):
    assert runs.resolve("runs/x") == ROOT / "runs/x"
    assert runs.resolve(tmp_path) == tmp_path


def test_run_done(tmp_path):
    assert not runs.run_done(tmp_path, "h")
    atomic_write_json(tmp_path / "done.json", {"params_hash": "h"})
    assert runs.run_done(tmp_path, "h") and not runs.run_done(tmp_path, "other")
