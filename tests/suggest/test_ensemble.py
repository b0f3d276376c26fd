"""Tests for qfcn.suggest.ensemble: notebook 02/03's ensemble helpers on tiny inputs."""
from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from qfcn import suggest, train
from qfcn.models import SAFCN
from qfcn.data import bootstrap_resample
from qfcn.suggest import ensemble

TINY = {"width": 0.125, "n_stages": 2}


def tiny_models(n: int) -> list[SAFCN]:
    torch.manual_seed(0)
    return [SAFCN(**TINY).eval() for _ in range(n)]


def tiny_images(n: int, size: int = 32) -> list[SimpleNamespace]:
    rng = np.random.default_rng(1)
    return [SimpleNamespace(name=f"img{i}", image=rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
            for i in range(n)]


@pytest.fixture
def model_files(monkeypatch):
    """train.load_model reads from a dict: path -> model (a fresh copy per load)."""
    files: dict[str, torch.nn.Module] = {}
    loads: list[str] = []

    def load_model(path):
        loads.append(str(path))
        return copy.deepcopy(files[str(path)])

    monkeypatch.setattr(train, "load_model", load_model)
    return files, loads


# ----------------------------------------------------------------------- notebook 02
def test_initial_split_is_the_rounds_initial_set():
    pool = [f"p{i}" for i in range(20)]
    initial, rest = ensemble.initial_split(pool, 0.25, seed=3)
    assert initial == suggest.initial_set(pool, 5, 3)
    res = suggest.run_suggestion(pool, selection="random", k_pick=2, initial_fraction=0.25, seed=3,
                                 budget=0.5, progress=False)
    assert res.rounds[0].picked == initial  # the set notebook 02 trains on is round 0
    assert rest == [n for n in pool if n not in initial] and len(rest) == 15
    assert len(ensemble.initial_split(pool, 0.01, seed=0)[0]) == 1  # never empty


def test_probe_subset():
    items = list(range(10))
    assert ensemble.probe_subset(items, 0, seed=0) == items
    assert ensemble.probe_subset(items, 10, seed=0) == items
    assert ensemble.probe_subset(items, 50, seed=0) == items
    sub = ensemble.probe_subset(items, 4, seed=2)
    keep = np.sort(np.random.default_rng([2, 2]).choice(10, 4, replace=False))
    assert sub == [items[i] for i in keep] and sub == sorted(sub) and len(set(sub)) == 4
    assert ensemble.probe_subset(items, 4, seed=2) == sub


def test_out_of_bag_scores_evaluates_the_images_not_drawn(monkeypatch):
    seen = []

    def evaluate(model, samples, *, contour_width):
        seen.append((model, [s.name for s in samples], contour_width))
        return {"val_loss": 0.5, "val_dice": 0.25}

    monkeypatch.setattr(train, "validation_scores", evaluate)
    samples = [SimpleNamespace(name=f"s{i}") for i in range(8)]
    members = [SimpleNamespace(model=f"model{m}") for m in range(3)]
    cfg = SimpleNamespace(seed=4, contour_width=2)
    rows = ensemble.out_of_bag_scores(members, samples, cfg)
    for m, (row, (model, names, width)) in enumerate(zip(rows, seen)):
        drawn = {s.name for s in bootstrap_resample(samples, 4, m)}
        assert names == [s.name for s in samples if s.name not in drawn] and names
        assert row == {"member": m, "oob_images": len(names), "val_loss": 0.5, "val_dice": 0.25}
        assert model == f"model{m}" and width == 2
    # one image: the resample draws it, so the member is scored on all images
    one = ensemble.out_of_bag_scores(members[:1], samples[:1], cfg)
    assert one[0]["oob_images"] == 1 and seen[-1][1] == ["s0"]


def test_disagreement_curve(model_files, one_thread):
    files, loads = model_files
    floats = tiny_models(2)
    files.update({"f0": floats[0], "final1": floats[1]})
    trained = tiny_models(2)[::-1]
    members = [SimpleNamespace(model=trained[0], float_path="f0", final_path="final0"),
               SimpleNamespace(model=trained[1], float_path=None, final_path="final1")]
    probe = tiny_images(2)
    curve = ensemble.disagreement_curve(members, probe, [32, 3], qsa_scheme="inq", qsa_bits=5)
    assert loads == ["f0", "final1"]  # float weights, else the final ones
    assert list(curve) == ["ptq-inq-32", "ptq-inq-3", "qsa"]
    assert [e["bits"] for e in curve.values()] == [32, 3, 5]
    assert curve["qsa"]["kind"] == "trained QSA ensemble (inq)"
    assert curve["ptq-inq-32"]["value"] == ensemble.mean_disagreement(floats, probe)
    assert curve["qsa"]["value"] == ensemble.mean_disagreement(trained, probe)
    assert all(0.0 <= e["value"] <= 0.5 for e in curve.values())
    assert curve["ptq-inq-3"]["value"] != curve["ptq-inq-32"]["value"]
    assert ensemble.disagreement_curve([], probe, [32], qsa_scheme="inq", qsa_bits=5) == {}


def test_mean_disagreement_identical_members_is_zero(one_thread):
    m = tiny_models(1)[0]
    assert ensemble.mean_disagreement([m, copy.deepcopy(m)], tiny_images(2)) == 0.0


# ----------------------------------------------------------------------- notebook 03
@pytest.fixture
def fake_training(monkeypatch):
    """train.train_ensemble writes member_<m>/final.pt files and records its arguments."""
    calls = []

    def train_ensemble(samples, cfg, *, k, out_dir, init):
        calls.append(dict(samples=[s.name for s in samples], cfg=cfg, k=k, out_dir=out_dir, init=init))
        results = []
        for m in range(k):
            path = out_dir / f"member_{m}" / "final.pt"
            path.parent.mkdir(parents=True)
            path.write_text("weights")
            results.append(SimpleNamespace(final_path=path))
        return results

    monkeypatch.setattr(train, "train_ensemble", train_ensemble)
    return calls


def make_rounds(tmp_path, **kw):
    samples = {f"img{i}": SimpleNamespace(name=f"img{i}") for i in range(6)}
    args = dict(initial=["img1", "img0"], first_members=["a.pt", "b.pt"], k_members=2, cfg="CFG",
                ensemble_dir=tmp_path / "ensemble", source="ens.json")
    return ensemble.EnsembleRounds(samples, **{**args, **kw})


def test_ensemble_rounds_train(tmp_path, fake_training):
    cb = make_rounds(tmp_path)
    assert cb.train(1, ["img0", "img1"]) == ["a.pt", "b.pt"] and fake_training == []
    with pytest.raises(RuntimeError, match="ens.json's initial set"):
        cb.train(1, ["img0", "img2"])
    second = cb.train(2, ["img0", "img1", "img3"])
    stage2 = tmp_path / "ensemble" / "stage_2"
    assert cb.round_dir(2) == ensemble.round_dir(tmp_path / "ensemble", 2) == stage2
    assert second == [str(stage2 / f"member_{m}" / "final.pt") for m in range(2)]
    assert fake_training[0] == dict(samples=["img0", "img1", "img3"], cfg="CFG", k=2, out_dir=stage2,
                                    init=["a.pt", "b.pt"])  # warm start from round 1
    cb.train(3, ["img0", "img1", "img3", "img4"])
    assert fake_training[1]["init"] == second
    # resumed: a fresh object finds round 3's members on disk for round 4
    resumed = make_rounds(tmp_path)
    resumed.train(4, ["img0", "img1", "img3", "img4", "img5"])
    assert fake_training[2]["init"] == [str(tmp_path / "ensemble" / "stage_3" / f"member_{m}" / "final.pt")
                                        for m in range(2)]
    # no previous files, or no warm start: train from scratch
    assert make_rounds(tmp_path / "fresh").previous_members(5) == []
    make_rounds(tmp_path, warm_start=False).train(5, ["img0"])
    assert fake_training[3]["init"] is None


def test_ensemble_rounds_predict(tmp_path, model_files, one_thread):
    files, loads = model_files
    models = tiny_models(3)
    files.update({f"m{i}.pt": m for i, m in enumerate(models)})
    imgs = tiny_images(3)
    cb = ensemble.EnsembleRounds({s.name: s for s in imgs}, initial=["img0"], first_members=[],
                                 k_members=3, cfg=None, ensemble_dir=tmp_path)
    u, desc, extras = cb.predict(["m0.pt", "m1.pt", "m2.pt"], ["img2", "img0"])
    assert loads == ["m0.pt", "m1.pt", "m2.pt"]
    assert u.shape == (2,) and desc.shape == (2, 3, models[0].descriptor_dim)  # per member
    assert extras["names"] == ["img2", "img0"] and extras["descriptors"] is desc
    assert extras["maps"]["img2"].shape == (32, 32)
    np.testing.assert_allclose(u, [extras["maps"][n].mean() for n in ["img2", "img0"]], rtol=1e-12)
    assert np.all((u > 0) & (u <= 0.5))


def test_run_rounds_passes_what_each_selection_needs():
    names = [f"img{i:02d}" for i in range(12)]
    desc = np.random.default_rng(0).normal(size=(12, 4))
    trained = []

    def predict(handle, pool):
        idx = [names.index(n) for n in pool]
        return np.linspace(0.1, 0.4, len(pool)), desc[idx], {}

    cb = SimpleNamespace(initial=names[:2], k_members=3, predict=predict,
                         train=lambda r, annotated: trained.append(r) or annotated)
    common = dict(k_pick=2, k_candidates=4, budget=0.5, seed=0, state_path=None)
    sug = ensemble.run_rounds(names, cb, selection="suggestive", **common)
    assert (sug.settings["k_c"], sug.settings["n_members"], sug.settings["n_initial"]) == (4, 3, 2)
    assert trained == [1, 2] and len(sug.annotated) == 6
    assert sug.settings["similarity_form"] == "per_member_centred"
    old = ensemble.run_rounds(names, cb, selection="suggestive", similarity_form="mean_descriptor", **common)
    assert old.settings["similarity_form"] == "mean_descriptor" and trained == [1, 2, 1, 2]
    unc = ensemble.run_rounds(names, cb, selection="uncertainty", **common)
    assert unc.settings["k_c"] is None and unc.settings["n_members"] == 3
    rand = ensemble.run_rounds(names, cb, selection="random", **common)
    assert rand.settings["n_members"] is None and rand.train_calls == []
    full = ensemble.run_rounds(names, cb, selection="full", **common)
    assert full.annotated == names and len(full.rounds) == 1
