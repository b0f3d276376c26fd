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
    arr = torch.arange(100, dtype=torch.float32).reshape(1, 1, 10, 10)
    img, lab = augment.warp_batch(arr, arr, torch.zeros(1, 2, 6, 6), 2, image_margin=1)
    assert torch.equal(lab[0, 0], arr[0, 0, 2:8, 2:8]) and torch.allclose(img[0, 0], arr[0, 0, 3:7, 3:7])


# ------------------------------------------------ batched augmentation == the numpy reference
def _draws(n, size=40, seed=0):
    """Elastic control points drawn as GlasCrops draws them, and the numpy reference fields."""
    ref, ctrl = [], []
    for k in range(n):
        ref.append(augment.elastic_field(np.random.default_rng([seed, k]), size, 16.0, (1.0, 3.0)))
        r = np.random.default_rng([seed, k])
        nc = max(2, -(-size // 16) + 1)
        mag = r.uniform(1.0, 3.0)
        ctrl.append((r.standard_normal((2, nc, nc)) * mag).astype(np.float32))
    return np.stack(ref), augment.spline_fields(torch.from_numpy(np.stack(ctrl)), size).numpy()


def _field_stats(f):
    """mean |d| (px) and spatial smoothness: mean |d(x+1) - d(x)| (px per px)."""
    grad = np.abs(np.diff(f, axis=-1)).mean() + np.abs(np.diff(f, axis=-2)).mean()
    return float(np.abs(f).mean()), float(grad / 2)


def test_batched_fields_have_the_scipy_field_statistics():
    ref, new = _draws(200)
    (m_ref, g_ref), (m_new, g_new) = _field_stats(ref), _field_stats(new)
    assert 0.5 < m_ref < 5 and m_new == pytest.approx(m_ref, rel=0.05) and g_new == pytest.approx(g_ref, rel=0.05)
    np.testing.assert_allclose(new, ref, atol=1e-4)  # same draws -> the same field
    other, _ = _draws(200, seed=1)  # an independent set of draws agrees within sampling noise
    assert _field_stats(other)[0] == pytest.approx(m_new, rel=0.1)


def test_warp_batch_matches_map_coordinates():
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 1, (2, 3, 30, 30)).astype(np.float32)
    lab = rng.integers(0, 5, (2, 1, 30, 30)).astype(np.float32)
    _, fld = _draws(2, size=22)
    out_img, out_lab = augment.warp_batch(torch.from_numpy(img), torch.from_numpy(lab), torch.from_numpy(fld), 4)
    base = np.arange(22, dtype=np.float32) + 4
    for b in range(2):
        coords = np.stack([base[:, None] + fld[b, 0], base[None, :] + fld[b, 1]])
        for ch in range(3):
            ref = ndimage.map_coordinates(img[b, ch], coords, order=1, mode="nearest")
            np.testing.assert_allclose(out_img[b, ch].numpy(), ref, atol=1e-5)
        ref = ndimage.map_coordinates(lab[b, 0], coords, order=0, mode="nearest")
        assert (out_lab[b, 0].numpy() != ref).mean() < 0.01  # ties at .5 may round the other way


def test_batched_stain_jitter_and_targets_match_numpy():
    rng = np.random.default_rng(2)
    he = hed2rgb(rng.uniform(0.0, 0.1, (2, 9, 11, 3))).astype(np.float32)
    alpha = rng.uniform(0.8, 1.2, (2, 3)).astype(np.float32)
    beta = (rng.uniform(-0.2, 0.2, (2, 3)) * 0.1).astype(np.float32)
    out = augment.stain_jitter_hed_batch(torch.from_numpy(he).permute(0, 3, 1, 2), torch.from_numpy(alpha),
                                         torch.from_numpy(beta)).permute(0, 2, 3, 1).numpy()
    for b in range(2):
        ref = np.clip(hed2rgb(rgb2hed(he[b]) * alpha[b] + beta[b]), 0, 1)
        np.testing.assert_allclose(out[b], ref, atol=1e-4)
    inst = ndimage.zoom(rng.integers(0, 6, (3, 6, 7)), (1, 6, 6), order=0).astype(np.int32)
    for width in (1, 2, 3, 5):
        obj, con = augment.object_contour_batch(torch.from_numpy(inst).float(), width)
        for b in range(3):
            ref_obj, ref_con = data.object_contour_targets(inst[b], width)
            assert np.array_equal(obj[b].numpy(), ref_obj) and np.array_equal(con[b].numpy(), ref_con)


def test_batch_equals_items_and_same_seed_same_batches():
    s = _sample(90, 100)
    ds = data.GlasCrops([s, s], crop_size=40, n_crops=6, seed=7)
    batch = ds.batch([4, 0, 2])
    assert batch["image"].shape == (3, 3, 40, 40) and batch["contour"].shape == (3, 40, 40)
    for k, i in enumerate([4, 0, 2]):
        item = ds[i]
        assert all(torch.allclose(batch[key][k], item[key], atol=1e-6) for key in item)
    again = data.GlasCrops([s, s], crop_size=40, n_crops=6, seed=7).batch([4, 0, 2])
    assert all(torch.equal(batch[k], again[k]) for k in batch)
    other = data.GlasCrops([s, s], crop_size=40, n_crops=6, seed=8).batch([4, 0, 2])
    assert not torch.equal(batch["image"], other["image"])


def test_augmented_crops_keep_their_distribution():
    """Flips / rotations keep the gland fraction, the jitter keeps the mean colour, the elastic
    warp keeps the gland area of a crop within a few %, over many seeded crops."""
    s = _sample(96, 96)
    plain = data.GlasCrops([s], crop_size=64, n_crops=64, seed=0, augment=False).batch(range(64))
    aug = data.GlasCrops([s], crop_size=64, n_crops=64, seed=0).batch(range(64))
    assert float(aug["object"].mean()) == pytest.approx(float(plain["object"].mean()), rel=0.05)
    assert float(aug["image"].mean()) == pytest.approx(float(plain["image"].mean()), abs=0.02)
    assert not torch.equal(aug["object"], plain["object"])


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
