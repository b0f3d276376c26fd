"""Tests for qfcn.data.crops and qfcn.data.augment: tensors, seeded crops, augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.color import hed2rgb, rgb2hed

from qfcn import data
from qfcn.data import augment


def test_to_tensor_image():
    img = np.zeros((2, 3, 3), np.uint8)
    img[1, 2] = (255, 51, 0)
    t = data.to_tensor_image(img)
    assert t.shape == (3, 2, 3) and t.dtype == torch.float32
    assert t[:, 1, 2].tolist() == pytest.approx([1.0, 0.2, 0.0])
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        data.to_tensor_image(img.astype(np.float32))


# --------------------------------------------------------------------------- crops
def _sample(h, w, seed=0):
    rng = np.random.default_rng(seed)
    inst = np.zeros((h, w), np.int32)
    inst[h // 4: h // 2, w // 4: w // 2] = 1
    inst[h // 4: h // 2, w // 2: 3 * w // 4] = 2
    img = rng.integers(30, 220, (h, w, 3), dtype=np.uint8)
    return data.Sample("train_1", "train", img, inst, "benign")


def test_crops_deterministic_and_epoch_dependent():
    s = _sample(80, 90)
    ds = data.GlasCrops([s, s], crop_size=48, n_crops=4, seed=5)
    a, b = ds[1], ds[1]
    assert set(a) == {"image", "object", "contour", "valid"}
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["image"].shape == (3, 48, 48) and a["object"].shape == (48, 48)
    assert all(v.dtype == torch.float32 for v in a.values())
    assert 0.0 <= float(a["image"].min()) and float(a["image"].max()) <= 1.0
    assert not torch.equal(ds[2]["image"], a["image"])
    same = data.GlasCrops([s, s], crop_size=48, n_crops=4, seed=5)[1]
    assert all(torch.equal(a[k], same[k]) for k in a)
    ds.set_epoch(1)
    assert not torch.equal(ds[1]["image"], a["image"])
    ds.set_epoch(0)
    assert torch.equal(ds[1]["image"], a["image"])
    assert ((a["contour"] <= a["object"]) & (a["object"] <= a["valid"])).all()


def test_crop_without_augmentation_matches_targets():
    s = _sample(60, 70)
    item = data.GlasCrops([s], crop_size=32, n_crops=3, seed=1, augment=False)[2]
    assert float(item["valid"].min()) == 1.0
    # find the crop offset by matching the image, then compare targets with the full map
    img = (item["image"].numpy() * 255).round().astype(np.uint8).transpose(1, 2, 0)
    hits = [(y, x) for y in range(60 - 31) for x in range(70 - 31) if np.array_equal(s.image[y:y + 32, x:x + 32], img)]
    assert len(hits) == 1
    y, x = hits[0]
    obj, con = data.object_contour_targets(s.instances, 3)
    np.testing.assert_array_equal(item["object"].numpy(), obj[y:y + 32, x:x + 32])
    np.testing.assert_array_equal(item["contour"].numpy(), con[y:y + 32, x:x + 32])


def test_small_image_is_padded():
    s = _sample(20, 30)
    for aug in (False, True):
        item = data.GlasCrops([s], crop_size=40, n_crops=1, augment=aug, elastic=False)[0]
        v = item["valid"].numpy()
        assert v.sum() == 20 * 30 and set(np.unique(v)) == {0.0, 1.0}
        assert (item["image"].numpy()[:, v == 0] == 0).all()
        assert (item["object"].numpy()[v == 0] == 0).all()
        assert item["object"].sum() == (s.instances > 0).sum()
    with_elastic = data.GlasCrops([s], crop_size=40, n_crops=1)[0]
    assert 400 < with_elastic["valid"].sum() < 800


def test_augmented_touching_glands_stay_separable():
    s = _sample(64, 64)
    ds = data.GlasCrops([s], crop_size=64, n_crops=6, seed=2, contour_width=1)
    for i in range(len(ds)):
        it = ds[i]
        core = (it["object"] > 0) & (it["contour"] == 0)
        assert ndimage.label(core.numpy())[1] == 2


def test_stain_jitter_and_elastic_helpers():
    rng = np.random.default_rng(0)
    img = rng.uniform(0.2, 1.0, (8, 8, 3))
    np.testing.assert_allclose(augment.stain_jitter_hed(img, rng, 0.0), img, atol=1e-4)
    he = hed2rgb(rng.uniform(0.0, 0.1, (8, 8, 3)))  # H&E-like colours: no negative stains
    out = augment.stain_jitter_hed(he, np.random.default_rng(1), 0.2)
    ref = np.random.default_rng(1)
    a, b = ref.uniform(0.8, 1.2, 3), ref.uniform(-0.2, 0.2, 3) * 0.1
    np.testing.assert_allclose(out, hed2rgb(rgb2hed(he) * a + b), atol=1e-4)
    assert np.abs(out - he).max() > 0.01
    f1 = augment.elastic_field(np.random.default_rng(3), 40, 16, (2.0, 2.0))
    f2 = augment.elastic_field(np.random.default_rng(3), 40, 16, (2.0, 2.0))
    assert f1.shape == (2, 40, 40) and np.array_equal(f1, f2) and 0.5 < np.abs(f1).max() < 12
    arr = np.arange(100, dtype=np.float32).reshape(10, 10)
    np.testing.assert_array_equal(augment.warp([arr], np.zeros((2, 6, 6), np.float32), 2, [1])[0], arr[2:8, 2:8])


def test_crops_reject_bad_arguments():
    s = _sample(20, 20)
    with pytest.raises(ValueError, match="samples is empty"):
        data.GlasCrops([])
    with pytest.raises(ValueError, match="crop_size"):
        data.GlasCrops([s], crop_size=4)
    with pytest.raises(ValueError, match="n_crops"):
        data.GlasCrops([s], n_crops=0)
    with pytest.raises(IndexError):
        data.GlasCrops([s], n_crops=2)[2]


def test_crops_collate_in_a_dataloader(glas_writer):
    ds = data.load_glas(glas_writer())
    crops = data.GlasCrops(ds.train + ds.train, crop_size=16, n_crops=6, seed=0)
    batch = next(iter(torch.utils.data.DataLoader(crops, batch_size=3)))
    assert batch["image"].shape == (3, 3, 16, 16) and batch["valid"].shape == (3, 16, 16)
