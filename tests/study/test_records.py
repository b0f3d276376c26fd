"""The metrics.json record: built, stamped, written and read back in one place."""
import json

import pytest

from qfcn.io import ArtifactError, param_hash
from qfcn.study import records


def _record():
    return records.metrics_record(
        run={"name": "r", "seed": 1, "selection": "random", "ntq_scheme": "inq", "ntq_bits": 5, "n_members": 2},
        main="ntq", n_glands={"test_a": 3, "test_b": 4},
        size_table=[{"bits": 5, "weight_bytes": 10, "file_bytes": 20, "float32_weight_bytes": 64,
                     "float32_checkpoint_bytes": 80}],
        variants={"ntq": {"scheme": "inq", "bits": 5, "n_members": 2, "thresholds": {"object": 0.5},
                          "weight_bytes": 10, "file_bytes": 20,
                          "splits": {s: {"f1": 0.5, "object_dice": 0.6, "object_hausdorff": 7.0, "per_image": []}
                                     for s in ("test_a", "test_b", "train", "val")}}})


def test_record_layout_is_todays_metrics_json():
    rec = _record()
    assert list(rec) == ["run", "main", "n_glands", "size_table", "variants"]
    assert rec["variants"]["ntq"]["splits"]["val"]["f1"] == 0.5


def test_round_trip_with_provenance(tmp_path):
    params = {"n_members": 2, "train": {"seed": 1}}
    path = records.write_metrics(tmp_path / "final" / "metrics.json", _record(), manifest_hash="m1", params=params)
    assert path == tmp_path / "final" / "metrics.json"
    back = records.read_metrics(tmp_path)
    assert back["manifest_hash"] == "m1" and back["params_hash"] == param_hash(params)
    assert back["code_version"].startswith("0.")
    assert {k: back[k] for k in _record()} == json.loads(json.dumps(_record()))
    assert records.run_dirs(tmp_path.parent) == [] and records.run_dirs(tmp_path / "..") == []


def test_missing_record_is_an_artifact_error(tmp_path):
    with pytest.raises(ArtifactError, match=r"missing metrics record .*final/metrics.json"):
        records.read_metrics(tmp_path)


def test_run_dirs_tidy_rows_and_main_scores(tmp_path):
    for name in ("b", "a", "c"):
        records.write_metrics(tmp_path / "runs" / name / "final" / "metrics.json", _record(), manifest_hash="m",
                              params={})
    (tmp_path / "runs" / "unfinished").mkdir()
    assert [p.name for p in records.run_dirs(tmp_path)] == ["a", "b", "c"]
    rec = {**records.read_metrics(tmp_path / "runs" / "a"), "run_dir": "x"}
    rows = records.tidy_rows(rec)
    assert len(rows) == 4 and all(r["main"] and r["run_dir"] == "x" for r in rows)
    assert rows[0]["qsa_bits"] is None and rows[0]["n_glands"] == 3 and rows[2]["n_glands"] is None
    assert records.main_scores(rec) == {"variant": "ntq", "weight_bytes": 10,
                                        "test_a": {"f1": 0.5, "object_dice": 0.6, "object_hausdorff": 7.0},
                                        "test_b": {"f1": 0.5, "object_dice": 0.6, "object_hausdorff": 7.0}}


def test_per_image_rows_of_the_main_variant():
    rec = _record()
    rec["variants"]["ntq"]["splits"]["test_a"]["per_image"] = [
        {"name": "testA_1", "f1": 0.9, "object_dice": 0.8, "object_hausdorff": 3.0, "tp": 4}]
    rows = records.per_image_rows(rec)
    assert rows == [{"name": "r", "seed": 1, "selection": "random", "qsa_scheme": None, "qsa_bits": None,
                     "ntq_scheme": "inq", "ntq_bits": 5, "variant": "ntq", "split": "test_a", "image": "testA_1",
                     "f1": 0.9, "object_dice": 0.8, "object_hausdorff": 3.0}]
