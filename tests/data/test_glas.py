"""Tests for qfcn.data.glas: loader, errors, manifest, targets."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from qfcn import data


def write_bmp(path, arr):
    Image.fromarray(arr).save(path, format="BMP")


# --------------------------------------------------------------------------- loader
def test_load_sorts_pairs_and_strips(glas_writer):
    ds = data.load_glas(glas_writer())
    assert [s.name for s in ds.train] == ["train_1", "train_2", "train_10"]
    assert [s.name for s in ds.test_a] == ["testA_1"] and [s.name for s in ds.test_b] == ["testB_1"]
    assert ds.splits["train"] is ds.train and set(ds.splits) == {"train", "test_a", "test_b"}
    assert [s.grade for s in ds.train] == ["benign", "malignant", "benign"]
    assert {s.split for s in ds.test_b} == {"test_b"}
    s10 = ds.train[2]
    assert s10.image.shape == (20, 18, 3) and s10.image.dtype == np.uint8
    assert s10.instances.shape == (20, 18) and s10.instances.dtype == np.int32
    assert ds.train[0].image.shape == (16, 24, 3)
    # pixels are the ones written
    raw = np.asarray(Image.open(ds.root / "train_10.bmp"))
    np.testing.assert_array_equal(s10.image, raw)


def test_labels_relabelled_not_connected_components(glas_writer):
    ds = data.load_glas(glas_writer())
    inst = ds.train[0].instances  # glands 3 and 200, touching side by side
    assert sorted(np.unique(inst).tolist()) == [0, 1, 2]
    assert (inst == 1).sum() == 16 and (inst == 2).sum() == 16
    assert inst[3, 5] == 1 and inst[3, 6] == 2  # shared border kept
    assert ndimage.label(inst > 0)[1] == 1  # one blob, yet two glands
    assert ds.train[0].n_glands == 2


def test_three_equal_channel_annotation(glas_writer):
    root = glas_writer()
    grey = np.asarray(Image.open(root / "train_2_anno.bmp"))
    write_bmp(root / "train_2_anno.bmp", np.repeat(grey[..., None], 3, axis=2))
    assert Image.open(root / "train_2_anno.bmp").mode == "RGB"
    inst = data.load_glas(root).train[1].instances
    np.testing.assert_array_equal(inst, grey.astype(np.int32))


def test_grades_optional_when_asked(glas_writer):
    root = glas_writer(grades=False)
    with pytest.raises(FileNotFoundError, match="Grade.csv not found"):
        data.load_glas(root)
    ds = data.load_glas(root, require_grades=False)
    assert {s.grade for s in ds.train} == {"unknown"}


def test_read_grades_strips_headers_and_values(tmp_path):
    (tmp_path / "Grade.csv").write_text("name , patient ID, grade (GlaS)\n train_1 ,1, malignant \n\n")
    assert data.read_grades(tmp_path) == {"train_1": "malignant"}
    (tmp_path / "Grade.csv").write_text("name,patient ID,grade\ntrain_1,1,benign\n")
    with pytest.raises(data.GlasFormatError, match=r"grade \(GlaS\)"):
        data.read_grades(tmp_path)


@pytest.mark.parametrize("breakage, match", [
    ("missing_anno", r"train_2\.bmp has no annotation train_2_anno\.bmp"),
    ("orphan_anno", r"testA_7_anno\.bmp has no image testA_7\.bmp"),
    ("size", r"train_2_anno\.bmp: annotation size 10x24 differs from its image 16x24"),
    ("colour_anno", r"train_2_anno\.bmp: annotation has 3 channels that differ"),
    ("corrupt", r"cannot read image file .*train_2\.bmp"),
    ("grey_image", r"train_2\.bmp: expected an RGB image, got PIL mode 'L'"),
    ("no_split", r"split 'test_b' has no images"),
    ("missing_row", r"Grade\.csv has no row for train_10"),
])
def test_bad_inputs_raise_clear_errors(glas_writer, breakage, match):
    root = glas_writer()
    if breakage == "missing_anno":
        (root / "train_2_anno.bmp").unlink()
    elif breakage == "orphan_anno":
        write_bmp(root / "testA_7_anno.bmp", np.zeros((4, 4), np.uint8))
    elif breakage == "size":
        write_bmp(root / "train_2_anno.bmp", np.zeros((10, 24), np.uint8))
    elif breakage == "colour_anno":
        a = np.zeros((16, 24, 3), np.uint8)
        a[2, 2] = (1, 2, 1)
        write_bmp(root / "train_2_anno.bmp", a)
    elif breakage == "corrupt":
        (root / "train_2.bmp").write_bytes(b"BM this is not a bitmap")
    elif breakage == "grey_image":
        write_bmp(root / "train_2.bmp", np.zeros((16, 24), np.uint8))
    elif breakage == "no_split":
        (root / "testB_1.bmp").unlink()
        (root / "testB_1_anno.bmp").unlink()
    elif breakage == "missing_row":
        text = (root / "Grade.csv").read_text().splitlines()
        (root / "Grade.csv").write_text("\n".join(r for r in text if not r.startswith("train_10")))
    with pytest.raises(data.GlasFormatError, match=match):
        data.load_glas(root)


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.load_glas(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(data.GlasFormatError, match="is empty"):
        data.load_glas(tmp_path / "empty")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "image.png").write_bytes(b"x")
    with pytest.raises(data.GlasFormatError, match="holds no GlaS files"):
        data.load_glas(tmp_path / "other")
    with pytest.raises(data.GlasFormatError, match="not a folder"):
        data.load_glas(tmp_path / "other" / "image.png")


def test_read_instances_keeps_value_order(tmp_path):
    a = np.array([[0, 200, 200], [3, 3, 0]], np.uint8)
    write_bmp(tmp_path / "a.bmp", a)
    np.testing.assert_array_equal(data.read_instances(tmp_path / "a.bmp"), [[0, 2, 2], [1, 1, 0]])
    write_bmp(tmp_path / "rgb.bmp", np.zeros((3, 3, 3), np.uint8))
    assert data.read_image(tmp_path / "rgb.bmp").shape == (3, 3, 3)


# --------------------------------------------------------------------------- manifest
def test_manifest_counts_and_hash(glas_writer):
    root = glas_writer()
    man = data.glas_manifest(root)
    names = [f["name"] for f in man["files"]]
    assert names == sorted(names) and "Grade.csv" in names and "README.txt" not in names
    assert len(names) == 11
    assert man["counts"] == {"train": {"images": 3, "glands": 2 + 2 + 3},
                             "test_a": {"images": 1, "glands": 1}, "test_b": {"images": 1, "glands": 2}}
    entry = next(f for f in man["files"] if f["name"] == "testA_1.bmp")
    blob = (root / "testA_1.bmp").read_bytes()
    assert entry == {"name": "testA_1.bmp", "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}
    canon = json.dumps(man["files"], sort_keys=True, separators=(",", ":")).encode()
    assert man["hash"] == hashlib.sha256(canon).hexdigest()
    # a copy elsewhere has the same hash; one changed byte changes it
    copy = shutil.copytree(root, root.parent / "copy")
    assert data.glas_manifest(copy)["hash"] == man["hash"]
    (copy / "Grade.csv").write_text((copy / "Grade.csv").read_text().replace("adenomatous", "healthy", 1))
    assert data.glas_manifest(copy)["hash"] != man["hash"]


# --------------------------------------------------------------------------- targets
def test_contour_width_band_hand_counted():
    inst = np.zeros((30, 30), np.int32)
    inst[5:25, 5:25] = 7
    for w, expected in ((1, 400 - 18 * 18), (3, 400 - 14 * 14)):
        obj, con = data.object_contour_targets(inst, contour_width=w)
        assert obj.dtype == bool and con.dtype == bool
        assert obj.sum() == 400 and con.sum() == expected
        assert not (con & ~obj).any()


def test_touching_glands_separate_after_contour_removal():
    inst = np.zeros((12, 22), np.int32)
    inst[1:11, 1:11] = 1
    inst[1:11, 11:21] = 2
    obj, con = data.object_contour_targets(inst, contour_width=2)
    assert ndimage.label(obj)[1] == 1
    assert con[5, 10] and con[5, 11] and con[5, 9] and con[5, 12] and not con[5, 8] and not con[5, 13]
    lab, n = ndimage.label(obj & ~con)
    assert n == 2 and (lab[5, 5] != lab[5, 15])


def test_image_edge_is_not_a_contour():
    inst = np.zeros((10, 10), np.int32)
    inst[:, :5] = 1  # gland cut by the left, top and bottom edges
    _obj, con = data.object_contour_targets(inst, contour_width=1)
    assert con.sum() == 10 and con[:, 4].all()


def test_targets_reject_bad_input():
    with pytest.raises(ValueError, match="contour_width must be >= 1"):
        data.object_contour_targets(np.zeros((4, 4), np.int32), 0)
    with pytest.raises(ValueError, match="integer map"):
        data.object_contour_targets(np.zeros((4, 4), np.float32))


# --------------------------------------------------------------------------- names
@pytest.mark.parametrize("other", ["train_01.bmp", "Train_1.bmp", "TRAIN_001.BMP"])
def test_case_or_zero_padding_clash_refused_naming_both(glas_writer, other):
    root = glas_writer()
    write_bmp(root / other, np.zeros((16, 24, 3), np.uint8))
    with pytest.raises(data.GlasFormatError) as err:
        data.load_glas(root)
    msg = str(err.value)
    assert "train_1.bmp" in msg and other in msg and "both name image train_1" in msg
    assert "differ only in case or zero-padding" in msg


def test_case_and_zero_padding_accepted_when_unambiguous(glas_writer):
    root = glas_writer()
    for old, new in (("train_2", "Train_02"), ("testA_1", "TESTA_001")):
        (root / f"{old}.bmp").rename(root / f"{new}.bmp")
        (root / f"{old}_anno.bmp").rename(root / f"{new}_anno.bmp")
    grades = (root / "Grade.csv").read_text().replace("train_2,", "Train_02,")
    (root / "Grade.csv").write_text(grades)
    ds = data.load_glas(root)
    assert [s.name for s in ds.train] == ["train_1", "train_2", "train_10"] and ds.test_a[0].name == "testA_1"
    assert ds.train[1].grade == "malignant"
    assert data.canonical_name(" Train_02 ") == "train_2" and data.canonical_name("other") == "other"
