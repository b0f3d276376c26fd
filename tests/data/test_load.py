"""Tests for qfcn.data.load: working scale, source maps, label options and checks, validation names."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from qfcn import data


def write_bmp(path, arr):
    Image.fromarray(arr).save(path, format="BMP")


def two_blobs(h=16, w=24, value=255):
    """A binary mask with two separate (and two touching) squares, all of one value."""
    m = np.zeros((h, w), np.uint8)
    m[2:6, 2:6] = m[2:6, 6:10] = m[9:13, 14:20] = value
    return m


# --------------------------------------------------------------------------- working scale
def test_resample_shapes_dtypes_and_label_ids():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (21, 30, 3), dtype=np.uint8)
    inst = np.zeros((21, 30), np.int32)
    inst[2:12, 2:14], inst[2:12, 14:28], inst[14:20, 5:25] = 5, 300, 70000
    img, lab = data.resample(image, inst, 0.5)
    assert img.shape == (10, 15, 3) and img.dtype == np.uint8
    assert lab.shape == (10, 15) and lab.dtype == np.int32
    assert set(np.unique(lab).tolist()) == {0, 5, 300, 70000}  # ids kept, no interpolated labels
    u16 = inst.astype(np.uint16) % 1000
    assert data.resample(image, u16, 1.5)[1].dtype == np.uint16
    assert data.resample(image, inst, 1.5)[0].shape == (32, 45, 3)  # round(31.5) = 32 (half to even)
    same_img, same_lab = data.resample(image, inst, 1.0)
    assert same_img is image and same_lab is inst


def test_resample_antialiases_the_image():
    noise = np.random.default_rng(1).integers(0, 256, (80, 80, 3), dtype=np.uint8)
    img, _ = data.resample(noise, np.zeros((80, 80), np.int32), 0.25)
    # plain bilinear sampling at a quarter keeps std ~38 (2x2 averages); the Gaussian pre-filter ~14
    assert img.shape == (20, 20, 3) and abs(img.mean() - noise.mean()) < 3 and img.std() < 20


def test_load_at_working_scale_keeps_source_maps_and_mixed_sizes(glas_writer):
    root = glas_writer()
    full = data.load_glas(root)
    half = data.load_glas(root, scale=0.5)
    assert half.scale == 0.5 and full.scale == 1.0
    for a, b in zip(full.train + full.test_a + full.test_b, half.train + half.test_a + half.test_b):
        assert b.scale == 0.5 and b.source_shape == a.image.shape[:2] == a.source_shape
        assert b.image.shape == (*data.working_shape(a.image.shape[:2], 0.5), 3) and b.image.dtype == np.uint8
        assert b.instances.shape == b.image.shape[:2] and b.instances.dtype == np.int32
        np.testing.assert_array_equal(b.source_instances, a.instances)
        assert b.n_glands == a.n_glands  # the scores count glands of the source map
        assert set(np.unique(b.instances)) <= set(np.unique(a.instances))
    assert {s.image.shape[:2] for s in half.train} == {(8, 12), (10, 9)}  # 16x24 and 20x18 files
    assert full.train[0].source_instances is full.train[0].instances  # no copy at scale 1.0


def test_load_checks_scale_and_labels(glas_writer):
    root = glas_writer()
    with pytest.raises(ValueError, match=r"scale=0: expected a working scale in \(0, 4\]"):
        data.load_glas(root, scale=0)
    with pytest.raises(ValueError, match=r"labels='binary': expected one of"):
        data.load_glas(root, labels="binary")


# --------------------------------------------------------------------------- validation names
def test_val_names_leave_the_pool(glas_writer):
    ds = data.load_glas(glas_writer(), val_names=["train_10"])
    assert [s.name for s in ds.train] == ["train_1", "train_2"] and [s.name for s in ds.val] == ["train_10"]
    assert ds.val[0].split == "train" and not data.is_test(ds.val[0])
    assert set(ds.splits) == {"train", "test_a", "test_b"}
    assert [r["split"] for r in data.gland_areas(ds)].count("val") == 3


@pytest.mark.parametrize("names, match", [
    (["testA_1"], r"val_names: 'testA_1' is a test image \(test_a\); validation images must be training"),
    (["train_9"], r"val_names: 'train_9' is not an image of"),
    (["train_1", "train_1"], r"listed twice"),
    (["train_1", "train_2", "train_10"], r"all 3 training images .* the annotation pool would be empty"),
])
def test_val_names_refused(glas_writer, names, match):
    with pytest.raises(data.GlasFormatError, match=match):
        data.load_glas(glas_writer(), val_names=names)


# --------------------------------------------------------------------------- labels as they come
@pytest.mark.parametrize("value", [255, 1])
def test_binary_mask_refused_with_the_option_named(glas_writer, value):
    root = glas_writer()
    write_bmp(root / "train_2_anno.bmp", two_blobs(value=value))
    write_bmp(root / "testA_1_anno.bmp", two_blobs(value=value))
    with pytest.raises(data.GlasFormatError) as err:
        data.load_glas(root)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(root / "train_2_anno.bmp"))
    assert "a binary mask (one non-zero value over 2 separate regions), not an instance map" in msg
    assert "labels='components' (CLI --labels components)" in msg and "merging touching glands" in msg
    assert "1 more annotations look the same" in msg


def test_one_gland_labelled_one_is_an_instance_map(glas_writer):
    root = glas_writer()
    m = np.zeros((16, 24), np.uint8)
    m[3:9, 3:11] = 1
    write_bmp(root / "train_2_anno.bmp", m)
    assert data.load_glas(root).train[1].n_glands == 1


def test_components_option(glas_writer):
    root = glas_writer()
    write_bmp(root / "train_2_anno.bmp", two_blobs())
    diag = np.zeros((16, 24), np.uint8)
    diag[2:5, 2:5], diag[5:8, 5:8] = 255, 255  # one gland drawn through a diagonal step
    write_bmp(root / "testA_1_anno.bmp", diag)
    ds = data.load_glas(root, labels="components", scale=0.5)
    assert ds.label_source == "components"
    train_2 = ds.train[1].source_instances
    assert ds.train[1].n_glands == 2 and train_2[3, 3] == train_2[3, 8] != train_2[10, 15]  # touching: merged
    assert ds.test_a[0].n_glands == 1  # 8-connectivity
    assert ds.train[0].n_glands == 1  # instances 3 and 200 touch: one component
    assert data.load_glas(root, labels="components").train[1].instances.dtype == np.int32


def test_empty_annotations_warned_all_empty_refused(glas_writer):
    root = glas_writer()
    write_bmp(root / "train_2_anno.bmp", np.zeros((16, 24), np.uint8))
    write_bmp(root / "testB_1_anno.bmp", np.zeros((16, 24), np.uint8))
    with pytest.warns(UserWarning, match=r"2 annotation\(s\) without any gland: train_2, testB_1$"):
        ds = data.load_glas(root)
    assert ds.train[1].n_glands == 0
    for name in ("train_1", "train_10", "testA_1"):
        shape = (20, 18) if name == "train_10" else (16, 24)
        write_bmp(root / f"{name}_anno.bmp", np.zeros(shape, np.uint8))
    with pytest.raises(data.GlasFormatError, match=r"every one of the 5 annotations is empty"):
        data.load_glas(root)


def test_no_warning_when_every_image_has_glands(glas_writer):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data.load_glas(glas_writer(), scale=0.5)
