"""Tests of qfcn.train.diagnostics: level spacing and how far NTQ retraining moved the free weights."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from train_tiny import TINY, make_samples, tiny_cfg

from qfcn import data, quant, train
from qfcn.models import SAFCN
from qfcn.train import diagnostics

pytestmark = pytest.mark.usefixtures("one_thread")


def test_level_spacing_inq_and_uniform():
    # 5 bits, n1 = -2: levels 0 and 2^-2 .. 2^-9
    w = torch.tensor([1e-5, 2.0**-9, 0.003, 0.1, 0.25, 0.4])
    got = diagnostics.level_spacing(w, "inq", 5, n1=-2).tolist()
    assert got == [2.0**-9, 2.0**-9, 2.0**-9, 2.0**-4, 2.0**-3, 2.0**-3]
    w2 = torch.tensor([[0.3, -0.1], [0.0, 0.05]])
    assert diagnostics.level_spacing(w2, "uniform", 3).flatten().tolist() == pytest.approx([0.1, 0.1, 1 / 60, 1 / 60])
    assert diagnostics.level_spacing(w2, "uniform", 3, per_channel=False).flatten().tolist() == pytest.approx([0.1] * 4)
    with pytest.raises(ValueError, match="float"):
        diagnostics.level_spacing(w2, "float", 32)


def _moved(net: nn.Module, scale: float, seed: int) -> nn.Module:
    """A copy of ``net`` with every conv weight moved by ``scale`` times its 5-bit uniform spacing
    (random sign), then put on the 5-bit uniform grid."""
    out, g = copy.deepcopy(net), torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, m in quant.quantized_layers(out):
            sp = diagnostics.level_spacing(m.weight, "uniform", 5, ch_axis=quant.layer_ch_axis(m)).float()
            sign = torch.randint(0, 2, m.weight.shape, generator=g).float() * 2 - 1
            m.weight += sign * scale * sp
    return train.post_training_quantize(out, "uniform", 5)


def test_uniform_movement_tracks_the_true_movement_in_spacings():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(16, 4, 7))  # 4 channels of 784 weights, spread evenly within their cells
    with torch.no_grad():
        net[0].weight.uniform_(-1, 1)
    still = diagnostics.retraining_movement(net, train.post_training_quantize(net, "uniform", 5), "uniform", 5)
    assert still["overall"]["level_change_fraction"] == 0 == still["overall"]["mean_levels_moved"]
    assert still["overall"]["free_fraction"] == 1.0  # uniform: no partitions, every weight retrains
    for true in (0.1, 0.3):
        got = diagnostics.retraining_movement(net, _moved(net, true, 1), "uniform", 5)["overall"]
        assert got["mean_levels_moved"] == pytest.approx(true, abs=0.03)
        assert got["level_change_fraction"] == pytest.approx(true, abs=0.03)


def test_inq_free_set_is_the_first_partition_complement_and_frozen_weights_never_count():
    torch.manual_seed(1)
    net = SAFCN(**TINY)
    moved = copy.deepcopy(net)
    with torch.no_grad():
        for _, m in quant.quantized_layers(moved):
            m.weight.mul_(1.3)  # every weight moves; INQ's n1 stays the float's
    ntq = copy.deepcopy(moved)
    q = quant.attach_quantizer(ntq, "inq", 5)
    q.quantize_all()
    q.detach()
    got = diagnostics.retraining_movement(net, ntq, "inq", 5)
    # the first partition's weights moved too, yet they are not free: they count as changed frozen ones
    assert got["overall"]["frozen_changed"] > 0
    assert got["overall"]["free_fraction"] == pytest.approx(0.5, abs=0.01)
    assert 0.2 < got["overall"]["level_change_fraction"] <= 1.0
    assert set(got["layers"]) == {n for n, _ in quant.quantized_layers(net)}
    with pytest.raises(ValueError, match="float run"):
        diagnostics.retraining_movement(net, ntq, "inq", 32)
    with pytest.raises(ValueError, match="differ"):
        diagnostics.retraining_movement(net, SAFCN(width=0.125, n_stages=2), "inq", 5)


def test_a_real_ntq_run_reconstructs_exactly_and_a_larger_retrain_lr_moves_more(tmp_path):
    samples = make_samples()
    float_cfg = tiny_cfg(float_steps=4)
    base = train.train_model(samples, float_cfg, out_dir=tmp_path / "float", progress=False)
    out = {}
    for lr in (1e-7, 1e-1):
        cfg = tiny_cfg(scheme="inq", bits=5, retrain_steps=3, retrain_lr=lr)
        ntq = train.train_model(samples, cfg, out_dir=tmp_path / f"ntq{lr}", init=base.final_path, progress=False)
        out[lr] = diagnostics.retraining_movement(base.model, ntq.model, "inq", 5, seed=cfg.seed)["overall"]
        assert out[lr]["frozen_changed"] == 0  # the first partition rebuilt exactly as the run froze it
    assert out[1e-7]["level_change_fraction"] < 0.01
    assert out[1e-1]["level_change_fraction"] > 10 * max(out[1e-7]["level_change_fraction"], 1e-3)
    assert out[1e-1]["mean_levels_moved"] > out[1e-7]["mean_levels_moved"]


def test_ensemble_movement_uses_each_members_seed(tmp_path):
    samples = make_samples()
    cfg = tiny_cfg(scheme="inq", bits=4, retrain_steps=2, strategy="random", seed=3)
    members = train.train_ensemble(samples, tiny_cfg(seed=3), k=2, out_dir=tmp_path / "f", bootstrap=False,
                                   progress=False)
    ntq = train.train_ensemble(samples, cfg, k=2, out_dir=tmp_path / "q", bootstrap=False, progress=False,
                               init=[str(r.final_path) for r in members], warm_start=False)
    rec = diagnostics.ensemble_movement([r.model for r in members], [r.model for r in ntq], cfg)
    assert (rec["scheme"], rec["bits"], rec["retrain_lr"], len(rec["members"])) == ("inq", 4, cfg.retrain_lr, 2)
    assert rec["overall"]["frozen_changed"] == 0  # random partitions rebuilt with member_seed(seed, m)
    wrong = diagnostics.retraining_movement(members[1].model, ntq[1].model, "inq", 4, strategy="random",
                                            seed=data.member_seed(3, 0))
    assert wrong["overall"]["frozen_changed"] > 0  # another seed: another partition
    with pytest.raises(ValueError, match="as many"):
        diagnostics.ensemble_movement([members[0].model], [], cfg)
