"""Tests for qfcn.data.prepare: the data step's checks, contour width, validation carving and
manifest record (and its round trip through load_from_manifest)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qfcn import data
from qfcn.data.load import data_hash

PARAMS = dict(glas_dir="", seed=0, n_train=2, n_test_a=1, n_test_b=1, scale=0.25, difficulty=0.5,
              contour_width=3, crop_size=64, n_preview=3, val_fraction=0.15, labels="instances")


@pytest.mark.parametrize("change, error, match", [
    ({"n_train": 0}, ValueError, r"n_train=0: expected a positive integer"),
    ({"n_test_b": 2.0}, ValueError, r"n_test_b=2\.0: expected a positive integer"),
    ({"scale": 3.0}, ValueError, r"scale=3\.0: expected a value in \[0\.05, 2\]"),
    ({"difficulty": -0.1}, ValueError, r"difficulty=-0\.1: expected a value in \[0, 1\]"),
    ({"val_fraction": 0}, ValueError, r"val_fraction=0: expected a value in \(0, 0\.5\]"),
    ({"val_fraction": 0.6}, ValueError, r"val_fraction=0\.6: expected"),
    ({"labels": "masks"}, ValueError, r"labels='masks': expected one of \['instances', 'components'\]"),
])
def test_check_data_params_names_the_parameter(tmp_path, change, error, match):
    with pytest.raises(error, match=match):
        data.check_data_params(tmp_path / "glas", **{**PARAMS, **change})


def test_given_folder_must_exist_and_skips_synthetic_checks(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"glas_dir='mine': .*nope is not a folder"):
        data.check_data_params(tmp_path / "nope", **{**PARAMS, "glas_dir": "mine"})
    data.check_data_params(tmp_path, **{**PARAMS, "glas_dir": "mine", "n_train": 0})
    # the working scale, labels and val_fraction apply to a given folder as well
    for change in ({"scale": 0.01}, {"labels": "x"}, {"val_fraction": 0.9}):
        with pytest.raises(ValueError, match=next(iter(change))):
            data.check_data_params(tmp_path, **{**PARAMS, "glas_dir": "mine", **change})


def test_contour_width_px_at_working_scale_for_every_source():
    assert data.contour_width_px(3, 0.5) == 2
    assert data.contour_width_px(3, 0.1) == 1
    assert data.contour_width_px(3, 1.0) == 3 and data.contour_width_px(5, 2.0) == 10


def test_prepare_synthetic_written_at_glas_size_loaded_at_working_scale(tmp_path):
    root = tmp_path / "synthetic"
    ds, record = data.prepare_glas(root, synthetic=True, params=PARAMS, contour_width_px=1)
    assert json.loads((root / "synth.json").read_text())["args"]["scale"] == 1.0
    man = data.glas_manifest(root)
    assert record["files"] == man["files"] and record["files_hash"] == man["hash"]
    assert record["scale"] == 0.25 and record["label_source"] == "instances" and record["params"] == PARAMS
    assert record["synthetic"] is True and record["glas_root"] == str(root) and record["contour_width_px"] == 1
    assert record["hash"] == data_hash(man["hash"], 0.25, "instances", record["val"])
    assert [len(ds.train), len(ds.val), len(ds.test_a), len(ds.test_b)] == [1, 1, 1, 1]
    assert record["val"] == [s.name for s in ds.val]
    assert {k: v["images"] for k, v in record["counts"].items()} == {"train": 1, "val": 1, "test_a": 1, "test_b": 1}
    for s in ds.train + ds.val + ds.test_a + ds.test_b:
        assert s.source_shape == data.read_instances(root / f"{s.name}_anno.bmp").shape
        assert s.image.shape[:2] == data.working_shape(s.source_shape, 0.25) == s.instances.shape
    assert record["counts"]["test_a"]["glands"] == ds.test_a[0].n_glands == man["counts"]["test_a"]["glands"]
    # a finished set is reused: the same files, not rewritten
    mtime = (root / "train_1.bmp").stat().st_mtime_ns
    _, again = data.prepare_glas(root, synthetic=True, params={**PARAMS, "scale": 0.5}, contour_width_px=2)
    assert (root / "train_1.bmp").stat().st_mtime_ns == mtime and again["files_hash"] == record["files_hash"]
    assert again["hash"] != record["hash"]  # another working scale is other data for later steps


def test_prepare_given_folder_and_round_trip(glas_writer):
    given = glas_writer()
    params = {**PARAMS, "glas_dir": str(given), "scale": 0.5, "val_fraction": 0.34}
    ds, record = data.prepare_glas(given, synthetic=False, params=params, contour_width_px=2)
    assert record["synthetic"] is False and record["files_hash"] == data.glas_manifest(given)["hash"]
    assert not (given / "synth.json").exists()
    assert len(record["val"]) == 1 and {s.name for s in ds.train} == {"train_1", "train_2", "train_10"} - set(record["val"])
    _, twice = data.prepare_glas(given, synthetic=False, params=params, contour_width_px=2)
    assert twice == record  # deterministic, validation names included
    back = data.load_from_manifest(json.loads(json.dumps(record)))
    assert back.scale == 0.5 and back.label_source == "instances"
    for a, b in zip(ds.train + ds.val + ds.test_a, back.train + back.val + back.test_a):
        assert a.name == b.name and a.split == b.split
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.source_instances, b.source_instances)


def test_load_from_manifest_refuses_old_changed_or_edited(glas_writer):
    given = glas_writer()
    _, record = data.prepare_glas(given, synthetic=False, params={**PARAMS, "glas_dir": str(given)},
                                  contour_width_px=1)
    old = {k: v for k, v in record.items() if k not in ("val", "label_source")}
    with pytest.raises(ValueError, match=r"missing \['label_source', 'val'\].*rerun the data step 01-data"):
        data.load_from_manifest(old)
    with pytest.raises(ValueError, match=r"'hash' does not match"):
        data.load_from_manifest({**record, "val": ["train_1", "train_2"]})
    (given / "Grade.csv").write_text((given / "Grade.csv").read_text().replace("adenomatous", "healthy", 1))
    with pytest.raises(data.GlasFormatError, match=r"files differ from the data manifest's"):
        data.load_from_manifest(record)


def test_a_folder_without_grades_is_refused_with_a_params_file_hint_or_loaded_on_request(glas_writer):
    root = glas_writer(grades=False)
    params = {**PARAMS, "glas_dir": str(root), "scale": 1.0, "val_fraction": 0.34}
    with pytest.raises(FileNotFoundError, match=r"Grade\.csv not found .*'data: \{require_grades: false\}' in the params file"):
        data.prepare_glas(root, synthetic=False, params=params, contour_width_px=3)
    ds, record = data.prepare_glas(root, synthetic=False, params={**params, "require_grades": False},
                                   contour_width_px=3)
    assert record["require_grades"] is False and {s.grade for s in ds.test_a} == {"unknown"}
    again = data.load_from_manifest(record)  # the later steps load it the same way
    assert [s.name for s in again.train] == [s.name for s in ds.train]
