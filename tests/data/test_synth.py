"""Tests for the synthetic GlaS generator (qfcn.data.synth and its pieces): rendering,
determinism, instance-map validity (fragments, decoys), difficulty ordering of the hardships,
colour ranges, artefacts, safe writes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage
from skimage.color import rgb2hed

from qfcn import data
from qfcn.data import synth
from qfcn.data.synth_glands import fragment
from qfcn.data.synth_optics import fold_thickness
from qfcn.data.synth_optics import jpeg_like, optics
from qfcn.data.synth_stain import optical_densities

TINY = {"n_train": 4, "n_test_a": 2, "n_test_b": 2, "scale": 0.25}


def _files(root):
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


def test_count_touching_pairs_hand_made():
    inst = np.array([[1, 1, 2, 0, 3],
                     [1, 4, 2, 0, 3],
                     [0, 0, 0, 0, 3]])
    assert synth.count_touching_pairs(inst) == 3  # (1,2), (1,4), (2,4); 3 is alone
    assert synth.count_touching_pairs(np.zeros((3, 3), int)) == 0


def test_render_image_contract():
    image, inst, info = synth.render_image(np.random.default_rng(0), 0.9, 131, 194, grade="malignant", scale=0.25)
    assert image.shape == (131, 194, 3) and image.dtype == np.uint8
    assert inst.shape == (131, 194) and inst.dtype == np.int32
    labels = np.unique(inst)
    assert labels.tolist() == list(range(inst.max() + 1)) and info["n_glands"] == inst.max() >= 5
    assert info["n_touching_pairs"] == synth.count_touching_pairs(inst)
    for lab in range(1, inst.max() + 1):  # every gland is one connected piece
        assert ndimage.label(inst == lab)[1] == 1
    again = synth.render_image(np.random.default_rng(0), 0.9, 131, 194, grade="malignant", scale=0.25)
    assert np.array_equal(again[0], image) and np.array_equal(again[1], inst)


def test_render_colour_is_he_like_and_decoys_are_background():
    image, inst, info = synth.render_image(np.random.default_rng(3), 0.5, 261, 388, scale=0.5)
    hed = rgb2hed(image)
    assert 0.01 < np.median(hed[..., 0]) < 0.06 and 0.08 < np.percentile(hed[..., 0], 99) < 0.3
    assert 0.015 < np.median(hed[..., 1]) < 0.06
    assert info["n_decoys"] >= 1
    white = image.min(axis=2) > 215
    assert white[inst > 0].any()  # lumens
    assert white[ndimage.distance_transform_edt(inst == 0) > 3].sum() > 20  # decoys outside glands


def _pairs(inst, connectivity):
    """Unordered pairs of distinct non-zero labels adjacent under 4- or 8-connectivity."""
    lab = np.pad(inst, 1)
    h, w = inst.shape
    shifts = [(0, 1), (1, 0)] + ([(1, 1), (1, -1)] if connectivity == 8 else [])
    out = set()
    for dy, dx in shifts:
        a = lab[1:h + 1, 1:w + 1]
        b = lab[1 + dy:h + 1 + dy, 1 + dx:w + 1 + dx]
        m = (a > 0) & (b > 0) & (a != b)
        out |= {(min(x, y), max(x, y)) for x, y in zip(a[m].tolist(), b[m].tolist())}
    return out


def _check_instances(inst, mask):
    n = int(inst.max())
    assert np.unique(inst).tolist() == list(range(n + 1))  # contiguous 1..n
    assert (np.bincount(inst.ravel())[1:] > 0).all()  # no empty label
    for lab, sl in enumerate(ndimage.find_objects(inst), start=1):  # each gland one connected region
        assert ndimage.label(inst[sl] == lab)[1] == 1
    assert _pairs(inst, 8) == _pairs(inst, 4)  # no corner-only contacts: labels touch only along a border
    assert not (mask & (inst > 0)).any()  # decoys are never labelled


@pytest.mark.parametrize("d", [0.0, 1.0])
@pytest.mark.parametrize("grade", ["benign", "malignant"])
def test_instance_maps_valid_and_decoys_unlabelled(d, grade):
    for seed in range(3):
        image, inst, mask, info = synth.render_layers(np.random.default_rng(seed), d, 261, 388, grade=grade,
                                                      scale=0.5)
        _check_instances(inst, mask)
        assert info["n_glands"] == inst.max() and info["n_decoys"] >= 1 and mask.any()
        assert info["decoy_fraction"] == pytest.approx(mask.mean(), abs=1e-6)


def test_fragments_are_separate_glands_that_do_not_touch():
    yy, xx = np.mgrid[0:200, 0:200]
    whole = (((yy - 100) / 80.0) ** 2 + ((xx - 100) / 60.0) ** 2 < 1).astype(np.int32)
    whole[(yy - 20) ** 2 + (xx - 20) ** 2 < 100] = 2  # a small second gland, never cut
    seen = 0
    for seed in range(8):
        out, n_frag = fragment(np.random.default_rng(seed), whole, 1.0, True, 1.0)
        _check_instances(out, np.zeros(out.shape, bool))
        assert ((out > 0) <= (whole > 0)).all()  # cuts only remove pixels
        assert synth.count_touching_pairs(out) == 0 and not _pairs(out, 8)
        if n_frag:
            seen += 1
            assert out.max() >= 3 and len(np.unique(out[whole == 1])) >= 3  # >= 2 pieces of gland 1, + 0
    assert seen >= 3  # p = 0.55 per gland at d = 1


def _mean_info(d, grade, seeds=range(4)):
    infos = [synth.render_layers(np.random.default_rng(s), d, 261, 388, grade=grade, scale=0.5)[3] for s in seeds]
    return {k: float(np.mean([x[k] for x in infos])) for k in infos[0] if k != "grade"}


def test_difficulty_makes_glands_harder():
    for grade in ("benign", "malignant"):
        easy, hard = _mean_info(0.0, grade), _mean_info(1.0, grade)
        for key in ("irregularity", "n_buds", "n_decoys", "decoy_fraction", "n_touching_pairs", "n_solid"):
            assert hard[key] > easy[key], (grade, key, easy[key], hard[key])
    easy, hard = _mean_info(0.0, "malignant"), _mean_info(1.0, "malignant")
    assert hard["n_fragmented"] > easy["n_fragmented"] and hard["n_cribriform"] > easy["n_cribriform"]
    # folds are rare events (a quarter of the images at d = 1 have none): compare the fold model itself over
    # many draws rather than four rendered images, whose random stream depends on everything drawn before
    folds = {d: np.mean([(fold_thickness(np.random.default_rng(s), (261, 388), d, 0.5) > 1.3).mean()
                         for s in range(40)]) for d in (0.0, 1.0)}
    assert folds[1.0] > 5 * folds[0.0] > 0


@pytest.mark.parametrize("d", [0.0, 1.0])
def test_colour_stays_in_measured_he_ranges(d):
    for seed, grade in ((0, "benign"), (1, "malignant")):
        image = synth.render_image(np.random.default_rng(seed), d, 261, 388, grade=grade, scale=0.5)[0]
        hed = rgb2hed(image)
        assert 0.01 < np.median(hed[..., 0]) < 0.06 and 0.08 < np.percentile(hed[..., 0], 99) < 0.3
        assert 0.015 < np.median(hed[..., 1]) < 0.06


def test_stain_shift_per_gland_grows_with_difficulty():
    inst = np.zeros((120, 120), np.int32)
    for k in range(16):  # 16 square glands, 20 px, identical tissue
        y, x = divmod(k, 4)
        inst[y * 30 + 5:y * 30 + 25, x * 30 + 5:x * 30 + 25] = k + 1
    z = np.zeros(inst.shape, np.float32)
    keys = ("fibres", "wobble", "goblet", "nuc", "snuc", "fine", "secretion", "mucin", "necrosis", "dust",
            "white", "rim", "rbc", "dnuc", "ring")
    tissue = dict(inst=inst, sep=z > 0, lumen=z > 0, **{k: z for k in keys})
    spread = {}
    for d in (0.0, 1.0):
        h_od, _ = optical_densities(np.random.default_rng(0), tissue, d, False, 1.0)
        per = ndimage.mean(h_od, inst, np.arange(1, 17))
        spread[d] = np.std(per) / np.mean(per)
    assert spread[1.0] > 2 * spread[0.0] and spread[1.0] > 0.08


def test_artefacts_grow_with_difficulty():
    rng = np.random.default_rng(0)
    texture = ndimage.gaussian_filter(rng.standard_normal((96, 128, 3)), (3, 3, 0))
    rgb = np.clip(0.6 + 0.15 * texture / texture.std(), 0, 1).astype(np.float32)
    err = {d: np.mean([np.abs(optics(np.random.default_rng(s), rgb, d, 1.0) - 255 * rgb).mean() for s in range(4)])
           for d in (0.0, 1.0)}
    assert err[1.0] > 1.5 * err[0.0]
    smooth = np.full((64, 64, 3), 128.0) + np.mgrid[0:64, 0:64][1][..., None]  # a ramp
    assert np.abs(jpeg_like(smooth, 95) - smooth).max() < 4
    assert np.abs(jpeg_like(rgb * 255.0, 20) - rgb * 255.0).mean() > np.abs(jpeg_like(rgb * 255.0, 95) - rgb * 255.0).mean()


def test_render_rejects_bad_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="grade"):
        synth.render_image(rng, 0.5, 64, 64, grade="tumour")
    with pytest.raises(ValueError, match="difficulty"):
        synth.render_image(rng, 1.5, 64, 64)
    with pytest.raises(ValueError, match="height and width"):
        synth.render_image(rng, 0.5, 8, 64)


def test_test_b_harder_than_test_a_at_every_knob():
    n = 12
    for knob in (0.0, 1.0):
        stats = {}
        for prefix in ("testA", "testB"):
            sid = {p: i for p, i, _ in synth.SPLITS}[prefix]
            grades = synth._split_grades(0, sid, n, {p: f for p, _, f in synth.SPLITS}[prefix])
            infos = [synth.draw_split_image(0, prefix, i + 1, grade=g, difficulty=knob, scale=0.25)[2]
                     for i, g in enumerate(grades)]
            stats[prefix] = {k: np.mean([x[k] for x in infos]) for k in infos[0] if k != "grade"}
        a, b = stats["testA"], stats["testB"]
        assert b["difficulty"] > a["difficulty"] + 0.1
        assert b["irregularity"] > a["irregularity"]
        assert b["n_touching_pairs"] > a["n_touching_pairs"]
        assert b["n_solid"] > a["n_solid"]
        assert b["n_glands"] >= 8
        assert a["n_decoys"] >= 1


def test_knob_shifts_each_image_monotonically():
    ds = [synth.draw_split_image(1, "train", 3, grade="benign", difficulty=k, scale=0.25)[2]["difficulty"]
          for k in (0.0, 0.5, 1.0)]
    assert ds[0] < ds[1] < ds[2]
    assert synth._image_difficulty(0.49, 0.5) == pytest.approx(0.49)
    assert synth._image_difficulty(0.25, 1.0) == pytest.approx(0.5)
    assert synth._image_difficulty(0.5, 0.0) == pytest.approx(0.25)


def test_make_glas_writes_glas_layout(tmp_path):
    root = synth.make_glas(tmp_path / "set", seed=0, **TINY)
    names = sorted(p.name for p in root.iterdir())
    assert "Grade.csv" in names and "synth.json" in names and "testB_2_anno.bmp" in names
    assert not [p for p in tmp_path.iterdir() if p.name != "set"]  # no temporary leftovers
    ds = data.load_glas(root)
    assert [len(ds.train), len(ds.test_a), len(ds.test_b)] == [4, 2, 2]
    assert sorted(s.grade for s in ds.train) == ["benign", "benign", "malignant", "malignant"]
    assert ds.train[0].image.shape[0] in (130, 131, 113, 108)  # 522 / 453 / 433 x 0.25
    meta = json.loads((root / "synth.json").read_text())
    assert meta["args"]["scale"] == 0.25 and meta["args"]["generator_version"] == synth.GENERATOR_VERSION
    for s in ds.test_b:
        info = meta["images"][s.name]
        assert info["grade"] == s.grade and info["n_glands"] == s.n_glands
    header = (root / "Grade.csv").read_text().splitlines()[0]
    assert header.startswith("name, patient ID, grade (GlaS)")


def test_make_glas_deterministic(tmp_path):
    a = _files(synth.make_glas(tmp_path / "a", seed=4, **TINY))
    b = _files(synth.make_glas(tmp_path / "b", seed=4, **TINY))
    c = _files(synth.make_glas(tmp_path / "c", seed=5, **TINY))
    assert a == b
    assert a["train_1.bmp"] != c["train_1.bmp"]
    # an image depends on (seed, split, index, grade) only, not on the other images
    sample = data.load_glas(tmp_path / "a").test_b[1]
    image, inst, _ = synth.draw_split_image(4, "testB", 2, grade=sample.grade, difficulty=0.5, scale=0.25)
    assert np.array_equal(image, sample.image) and np.array_equal(inst, sample.instances)


def test_resume_and_overwrite(tmp_path):
    root = synth.make_glas(tmp_path / "set", seed=0, **TINY)
    stamp = (root / "synth.json").stat().st_mtime_ns
    assert synth.make_glas(root, seed=0, **TINY) == root
    assert (root / "synth.json").stat().st_mtime_ns == stamp  # resumed, not redrawn
    with pytest.raises(FileExistsError, match="synthetic set with other arguments"):
        synth.make_glas(root, seed=1, **TINY)
    synth.make_glas(root, seed=1, overwrite=True, **TINY)
    assert json.loads((root / "synth.json").read_text())["args"]["seed"] == 1
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="other files"):
        synth.make_glas(foreign, **TINY)
    with pytest.raises(FileExistsError, match="refusing to delete"):
        synth.make_glas(foreign, overwrite=True, **TINY)
    assert (foreign / "notes.txt").read_text() == "keep me"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert synth.make_glas(empty, **TINY) == empty and (empty / "synth.json").is_file()


def test_failed_run_leaves_nothing(tmp_path, monkeypatch):
    real = synth.render_image
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk on fire")
        return real(*args, **kwargs)

    monkeypatch.setattr(synth, "render_image", flaky)
    with pytest.raises(RuntimeError, match="disk on fire"):
        synth.make_glas(tmp_path / "set", **TINY)
    assert list(tmp_path.iterdir()) == []
    # an existing set survives a failed overwrite
    monkeypatch.setattr(synth, "render_image", real)
    root = synth.make_glas(tmp_path / "set", seed=0, **TINY)
    before = _files(root)
    calls.clear()
    monkeypatch.setattr(synth, "render_image", flaky)
    with pytest.raises(RuntimeError):
        synth.make_glas(root, seed=9, overwrite=True, **TINY)
    assert _files(root) == before and [p.name for p in tmp_path.iterdir()] == ["set"]


def test_make_glas_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="difficulty"):
        synth.make_glas(tmp_path / "x", difficulty=2.0)
    with pytest.raises(ValueError, match="n_test_b"):
        synth.make_glas(tmp_path / "x", n_test_b=0)
    with pytest.raises(ValueError, match="scale"):
        synth.make_glas(tmp_path / "x", scale=0.0)
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not a folder"):
        synth.make_glas(tmp_path / "file", **TINY)


def test_fragments_are_separated_by_a_visible_gap():
    """Pieces of one cut gland are at least 6 px apart at scale 1 (3 px at the working scale 0.5):
    narrower cuts disappeared under the nuclei and made Test B's instance labels unlearnable."""
    yy, xx = np.mgrid[0:200, 0:200]
    whole = ((yy - 100) ** 2 + (xx - 100) ** 2 < 80 ** 2).astype(np.int32)
    gaps = []
    for seed in range(30):
        out, n_frag = fragment(np.random.default_rng(seed), whole, 1.0, True, 1.0)
        if n_frag:
            dist = ndimage.distance_transform_edt(out != 1)
            gaps.append(dist[out > 1].min())
    assert len(gaps) >= 10 and min(gaps) >= 5.0, gaps
