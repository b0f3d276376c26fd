"""Tests for qfcn.data.prepare: the data step's checks, contour width and manifest record."""

from __future__ import annotations

import pytest

from qfcn import data

PARAMS = dict(glas_dir="", seed=0, n_train=2, n_test_a=1, n_test_b=1, scale=0.25, difficulty=0.5,
              contour_width=3, crop_size=64, n_preview=3)


@pytest.mark.parametrize("change, error, match", [
    ({"n_train": 0}, ValueError, r"n_train=0: expected a positive integer"),
    ({"n_test_b": 2.0}, ValueError, r"n_test_b=2\.0: expected a positive integer"),
    ({"scale": 3.0}, ValueError, r"scale=3\.0: expected a value in \[0\.05, 2\]"),
    ({"difficulty": -0.1}, ValueError, r"difficulty=-0\.1: expected a value in \[0, 1\]"),
])
def test_check_data_params_names_the_parameter(tmp_path, change, error, match):
    with pytest.raises(error, match=match):
        data.check_data_params(tmp_path / "glas", **{**PARAMS, **change})


def test_given_folder_must_exist_and_skips_synthetic_checks(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"glas_dir='mine': .*nope is not a folder"):
        data.check_data_params(tmp_path / "nope", **{**PARAMS, "glas_dir": "mine"})
    data.check_data_params(tmp_path, **{**PARAMS, "glas_dir": "mine", "n_train": 0})


def test_contour_width_px():
    assert data.contour_width_px(3, 0.5, synthetic=True) == 2
    assert data.contour_width_px(3, 0.1, synthetic=True) == 1
    assert data.contour_width_px(3, 0.1, synthetic=False) == 3


def test_prepare_glas_record(glas_writer, tmp_path):
    root = tmp_path / "synthetic"
    ds, record = data.prepare_glas(root, synthetic=True, params=PARAMS, contour_width_px=1)
    man = data.glas_manifest(root)
    assert record == {"glas_root": str(root), "synthetic": True, "params": PARAMS, "contour_width_px": 1, **man}
    assert [len(ds.train), len(ds.test_a), len(ds.test_b)] == [2, 1, 1]
    assert (root / "synth.json").is_file()
    given = glas_writer()
    ds, record = data.prepare_glas(given, synthetic=False, params={**PARAMS, "glas_dir": str(given)},
                                   contour_width_px=3)
    assert record["synthetic"] is False and record["hash"] == data.glas_manifest(given)["hash"]
    assert not (given / "synth.json").exists() and len(ds.train) == 3
