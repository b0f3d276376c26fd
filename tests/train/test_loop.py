"""Tests of qfcn.train's runs: loss, determinism, resume, INQ phases, validation."""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import pytest
import torch
from torch import nn
from train_tiny import make_samples, tiny_cfg

from qfcn import data, quant, train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def samples() -> list:
    return make_samples()


@pytest.fixture(scope="module")
def inq_run(samples, tmp_path_factory):
    """One INQ 5-bit run, recording frozen weights during retraining."""
    records: list[tuple[dict, dict[str, torch.Tensor], dict[str, torch.Tensor]]] = []

    def spy(entry, model):
        q = quant.attached_quantizer(model)
        if q is None:
            return
        masks = {n: s["mask"].clone() for n, s in q.state_dict()["layers"].items()}
        weights = {n: m.weight.detach().clone() for n, m in quant.quantized_layers(model)}
        records.append((dict(entry), masks, weights))

    cfg = tiny_cfg(scheme="inq", bits=5, val_every=3, retrain_steps=3)
    out = tmp_path_factory.mktemp("inq")
    res = train.train_model(samples, cfg, out_dir=out, val_samples=samples[:1], progress=False, callback=spy)
    return res, records, cfg, out


def test_segmentation_loss_hand_values():
    zeros = torch.zeros(1, 1, 2, 2)
    t_obj = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    t_con = torch.zeros(1, 2, 2)
    # logit 0 -> BCE ln 2 for either target; contour weight 2 -> 3 ln 2 per pixel
    assert float(train.segmentation_loss(zeros, zeros, t_obj, t_con, None, 2.0)) == pytest.approx(3 * math.log(2))
    # a hugely wrong pixel outside the valid mask does not count
    obj = torch.tensor([[[[0.0, 50.0], [0.0, 0.0]]]])
    valid = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])
    loss = train.segmentation_loss(obj, zeros, t_obj, t_con, valid, 1.0)
    assert float(loss) == pytest.approx(2 * math.log(2))


# ------------------------------------------------------------------ training runs
def test_same_seed_same_weights_and_history(samples, tmp_path):
    cfg = tiny_cfg()
    a = train.train_model(samples, cfg, out_dir=tmp_path / "a", progress=False)
    b = train.train_model(samples, cfg, out_dir=tmp_path / "b", progress=False)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.history == b.history
    assert [h["phase"] for h in a.history if "loss" in h] == ["float"] * 4
    c = train.train_model(samples, dataclasses.replace(cfg, seed=1), out_dir=tmp_path / "c", progress=False)
    assert not torch.equal(c.model.state_dict()["stem.0.weight"], sa["stem.0.weight"])


def test_resume_after_interrupt_gives_identical_weights(samples, inq_run, tmp_path):
    ref, _, cfg, _ = inq_run

    class Stop(Exception):
        pass

    def stop_at(k):
        def cb(entry, model):
            if entry["step"] == k:
                raise Stop
        return cb

    out = tmp_path / "resumed"
    for k in (3, 7):  # resumes mid-float (step 2) and mid-INQ-retraining (step 6 of inq_1's 5..7)
        with pytest.raises(Stop):
            train.train_model(samples, cfg, out_dir=out, val_samples=samples[:1], progress=False, callback=stop_at(k))
        ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
        assert ckpt["step"] == k - 1
    res = train.train_model(samples, cfg, out_dir=out, val_samples=samples[:1], progress=False)
    sa, sb = ref.model.state_dict(), res.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert res.history == ref.history


def test_finished_run_returns_at_once_and_config_mismatch_errors(samples, inq_run):
    ref, _, cfg, out = inq_run
    calls = []
    t0 = time.perf_counter()
    again = train.train_model(samples, cfg, out_dir=out, val_samples=samples[:1], progress=False,
                              callback=lambda e, m: calls.append(e))
    assert not calls and time.perf_counter() - t0 < 5
    assert again.history == ref.history
    with pytest.raises(ValueError, match="another configuration"):
        train.train_model(samples, dataclasses.replace(cfg, lr=1e-2), out_dir=out, val_samples=samples[:1],
                          progress=False)


def test_inq_phases_put_every_weight_on_grid_and_keep_frozen_weights(inq_run):
    res, records, _, out = inq_run
    phases = [h["phase"] for h in res.history if "loss" in h]
    assert phases == ["float"] * 4 + ["inq_1"] * 3 + ["inq_2"] * 3 + ["inq_3"] * 3
    assert any("val_loss" in h for h in res.history)
    for name, m in quant.quantized_layers(res.model):
        assert torch.equal(quant.inq_quantize(m.weight, 5), m.weight), name
    # frozen weights never move during retraining; the free ones do
    by_phase: dict[str, list] = {}
    for entry, masks, weights in records:
        by_phase.setdefault(entry["phase"], []).append((masks, weights))
    fractions = {p: sum(int(m.sum()) for m in recs[0][0].values()) / sum(m.numel() for m in recs[0][0].values())
                 for p, recs in by_phase.items()}
    assert fractions == pytest.approx({"inq_1": 0.5, "inq_2": 0.75, "inq_3": 0.875}, abs=0.02)
    moved = 0
    for phase, recs in by_phase.items():
        (m0, w0), (m1, w1) = recs[0], recs[-1]
        for name in m0:
            assert torch.equal(m0[name], m1[name])
            assert torch.equal(w0[name][m0[name]], w1[name][m0[name]]), (phase, name)
            moved += int((w0[name][~m0[name]] != w1[name][~m0[name]]).sum())
    assert moved > 0
    assert (out / "packed.qfcn").is_file() and res.packed_path == out / "packed.qfcn"
    loaded = train.load_model(out / "final.pt")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in res.model.state_dict().items())
    assert not loaded.training


def test_uniform_and_control_from_the_same_float_model(samples, inq_run, tmp_path):
    _, _, inq_cfg, out = inq_run
    float_pt = out / "float.pt"
    start = train.load_model(float_pt).state_dict()
    uni = train.train_model(samples, dataclasses.replace(inq_cfg, scheme="uniform"), out_dir=tmp_path / "uni",
                            init=float_pt, progress=False)
    assert [h["phase"] for h in uni.history if "loss" in h] == ["uniform_1"] * 9  # same extra steps as INQ (3 x 3)
    for name, m in quant.quantized_layers(uni.model):
        quant.recover_uniform_scale(m.weight, 5, True, quant.layer_ch_axis(m))  # raises when off the grid
    ctl = train.train_model(samples, train.float_control_config(inq_cfg), out_dir=tmp_path / "ctl", init=float_pt,
                            progress=False)
    assert [h["phase"] for h in ctl.history if "loss" in h] == ["control"] * 9
    assert not torch.equal(ctl.model.state_dict()["stem.0.weight"], start["stem.0.weight"])
    assert ctl.packed_path is None and ctl.float_path is None
    with pytest.raises(ValueError, match="model config"):
        train.train_model(samples, dataclasses.replace(inq_cfg, model={"width": 0.25, "n_stages": 3}),
                          out_dir=tmp_path / "bad", init=float_pt, progress=False)


def test_loss_decreases_when_overfitting_one_image(tmp_path):
    one = make_samples(1, seed=5)
    cfg = tiny_cfg(float_steps=30, lr=1e-2, schedule="constant", n_crops=4, crop_size=48, ckpt_every=100)
    res = train.train_model(one, cfg, out_dir=tmp_path, progress=False)
    losses = [h["loss"] for h in res.history if "loss" in h]
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


def test_bad_inputs(samples, tmp_path):
    with pytest.raises(ValueError, match="val_samples"):
        train.train_model(samples, tiny_cfg(select_best=True), out_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="test samples"):
        train.train_model(make_samples(1, split="testA"), tiny_cfg(), out_dir=tmp_path, progress=False)
    with pytest.raises(FileNotFoundError):
        train.train_model(samples, tiny_cfg(), out_dir=tmp_path, init=tmp_path / "nope.pt", progress=False)
    with pytest.raises(FileNotFoundError):
        train.load_model(tmp_path / "nope.pt")
    with pytest.raises(ValueError, match="TrainConfig"):
        train.train_model(samples, {"lr": 1.0}, out_dir=tmp_path, progress=False)


def test_select_best_restores_best_float_weights(samples, tmp_path):
    cfg = tiny_cfg(float_steps=4, val_every=1, select_best=True)
    res = train.train_model(samples, cfg, out_dir=tmp_path, val_samples=samples[:1], progress=False)
    vals = [h for h in res.history if "val_loss" in h and h["phase"] == "float"]
    sel = next(h for h in res.history if "selected_step" in h)
    best = min(vals, key=lambda h: h["val_loss"])
    assert sel["selected_step"] == best["step"]
    again = train.validation_scores(res.model, samples[:1], device="cpu")
    assert again["val_loss"] == pytest.approx(best["val_loss"], rel=1e-5)


def test_workers_bf16_and_channels_last(samples, tmp_path):
    cfg = tiny_cfg(float_steps=3, ckpt_every=10)
    ref = train.train_model(samples, cfg, out_dir=tmp_path / "ref", progress=False)
    par = train.train_model(samples, dataclasses.replace(cfg, num_workers=1), out_dir=tmp_path / "w", progress=False)
    assert par.history == ref.history  # the worker process draws the same crops
    fast = train.train_model(samples, dataclasses.replace(cfg, bf16=True, channels_last=True, scheme="inq", bits=5,
                                                          retrain_steps=1), out_dir=tmp_path / "bf16", progress=False)
    losses = [h["loss"] for h in fast.history if "loss" in h]
    assert len(losses) == 6 and all(np.isfinite(losses))
    assert fast.model.stem[0].weight.is_contiguous()


class HalfObject(nn.Module):
    """Object logit +5 on the left half of the image, -5 elsewhere; contour logit 0."""

    def forward(self, x):
        obj = torch.full_like(x[:, :1], -5.0)
        obj[..., : x.shape[-1] // 2] = 5.0
        return obj, torch.zeros_like(obj)


def test_validation_scores_pixel_dice_by_hand():
    s = data.Sample("train_1", "train", np.full((8, 8, 3), 200, np.uint8), np.zeros((8, 8), np.int32))
    s.instances[0:4, 0:8] = 1  # 32 gland pixels; the prediction is the 32-pixel left half
    out = train.validation_scores(HalfObject(), [s], device="cpu")
    assert out["val_dice"] == 2 * 16 / (32 + 32)
    s.instances[:] = 0  # empty ground truth: Dice 0 against a non-empty prediction
    assert train.validation_scores(HalfObject(), [s], device="cpu")["val_dice"] == 0.0
    with pytest.raises(ValueError, match="empty"):
        train.validation_scores(HalfObject(), [], device="cpu")
