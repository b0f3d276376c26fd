"""Tests of the controllers: schemes, the incremental INQ procedure, uniform fake quant, attach/detach."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from qfcn import quant
from qfcn.models import SAFCN
from qfcn.quant import (SCHEMES, attach_quantizer, attached_quantizer, check_scheme, inq_decode, inq_quantize,
                        uniform_decode, uniform_quantize)

from .helpers import bits_of, tiny_net


def test_schemes_and_check_scheme() -> None:
    assert SCHEMES["float"] == {32} and SCHEMES["inq"] == set(range(2, 9)) == SCHEMES["uniform"]
    assert check_scheme("inq", 5) == ("inq", 5)
    assert check_scheme("uniform", 32) == ("float", 32)
    assert check_scheme("float", 32) == ("float", 32)
    for scheme, bits, match in [("inq", 1, "bits=1"), ("uniform", 9, "bits=9"), ("inq", 16, "bits=16"),
                                ("float", 5, "bits=5"), ("ternary", 2, "unknown quantization scheme"),
                                ("inq", "5", "bits must be an int"), ("inq", True, "bits must be an int")]:
        with pytest.raises(ValueError, match=match):
            check_scheme(scheme, bits)


def test_partition_order_largest_first_and_frozen() -> None:
    net = tiny_net()
    w0 = {n: m.weight.detach().clone() for n, m in quant.quantized_layers(net)}
    q = attach_quantizer(net, "inq", 5)
    assert q.n_steps == 4 and not q.done and not q.fake_quant_enabled
    q.step()
    for name, m in q.layers:
        mask = q.masks[name]
        n = m.weight.numel()
        assert int(mask.sum()) == round(0.5 * n)
        a = w0[name].abs()
        # every quantized weight is at least as large as every float one
        assert a[mask].min() >= a[~mask].max()
        expected = inq_quantize(w0[name], 5, q.n1[name])
        assert torch.equal(m.weight[mask], expected[mask])
        assert torch.equal(m.weight[~mask], w0[name][~mask])
    fractions = []
    while not q.done:
        q.step()
        fractions.append(q.quantized_fraction)
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)
    for name, m in q.layers:
        assert torch.equal(m.weight, inq_quantize(m.weight, 5, q.n1[name]))
    with pytest.raises(ValueError, match="no step left"):
        q.step()


def test_ties_select_exact_count() -> None:
    net = nn.Sequential(nn.Conv2d(1, 1, 3, bias=False))
    nn.init.constant_(net[0].weight, 0.3)
    q = attach_quantizer(net, "inq", 3, iterative_steps=(0.5, 1.0))
    q.step()
    assert int(q.masks["0"].sum()) == round(0.5 * 9)


def test_weight_grown_past_top_level_takes_top_level() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([0.3, -0.2]).view(2, 1, 1, 1))
    q = attach_quantizer(net, "inq", 5)  # n1 = -2 fixed from the float weights
    with torch.no_grad():
        net[0].weight.mul_(100.0)  # retraining blew them up
    q.quantize_all()
    assert net[0].weight.flatten().tolist() == [0.25, -0.25]
    assert q.done and q.fake_quant_enabled


def test_random_strategy_is_seeded() -> None:
    masks = []
    for seed in (3, 3, 4):
        net = tiny_net()
        q = attach_quantizer(net, "inq", 5, strategy="random", seed=seed)
        q.step()
        masks.append(torch.cat([q.masks[n].flatten() for n, _ in q.layers]))
    assert torch.equal(masks[0], masks[1]) and not torch.equal(masks[0], masks[2])


@pytest.mark.parametrize("make_opt", [
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.05),
    lambda p: torch.optim.AdamW(p, lr=0.05, weight_decay=0.5),
])
def test_frozen_weights_do_not_move_under_optimizer(make_opt) -> None:
    net = tiny_net()
    opt = make_opt(net.parameters())
    x = torch.randn(4, 2, 6, 6)

    def train(n: int) -> None:
        for _ in range(n):
            opt.zero_grad()
            net(x).pow(2).mean().backward()
            opt.step()

    train(3)  # momentum / Adam moments are populated before INQ starts
    q = attach_quantizer(net, "inq", 5)
    q.attach_optimizer(opt)
    for _ in range(2):
        q.step()
        frozen = {n: (q.masks[n].clone(), m.weight.detach().clone()) for n, m in q.layers}
        train(4)
        moved_free = False
        for name, m in q.layers:
            mask, before = frozen[name]
            assert torch.equal(bits_of(m.weight[mask]), bits_of(before[mask])), name
            moved_free |= not torch.equal(m.weight[~mask], before[~mask])
            assert m.weight.grad[mask].abs().sum() == 0  # gradient masked too
        assert moved_free  # the float rest is retrained
    q.detach()
    assert attached_quantizer(net) is None


def test_inq_state_dict_round_trip_weights_only() -> None:
    net = tiny_net()
    q = attach_quantizer(net, "inq", 5, strategy="random", seed=7)
    q.step()
    q.step()
    buf = io.BytesIO()
    torch.save({"model": net.state_dict(), "quant": q.state_dict()}, buf)
    buf.seek(0)
    ck = torch.load(buf, weights_only=True)

    other = tiny_net(seed=1)
    q2 = attach_quantizer(other, "inq", 5, strategy="random", seed=7)
    with pytest.raises(ValueError, match="load the model's state dict"):
        q2.load_state_dict(ck["quant"])
    other.load_state_dict(ck["model"])
    q2.load_state_dict(ck["quant"])
    assert q2.step_index == 2 and q2.n1 == q.n1
    q.step()
    q2.step()  # continues identically, random stream included
    for (n, m), (_, m2) in zip(q.layers, q2.layers):
        assert torch.equal(q.masks[n], q2.masks[n])
        assert torch.equal(m.weight, m2.weight)
    with pytest.raises(ValueError, match="scheme='inq' bits=7"):
        attach_quantizer(tiny_net(), "inq", 7).load_state_dict(ck["quant"])


def test_inq_codes_require_full_quantization() -> None:
    net = tiny_net()
    q = attach_quantizer(net, "inq", 4)
    q.step()
    with pytest.raises(ValueError, match="quantize_all"):
        q.codes()
    q.quantize_all()
    for name, m in q.layers:
        c = q.codes()[name]
        assert torch.equal(inq_decode(c["codes"], 4, c["n1"]), m.weight.detach())


def test_uniform_controller_lifecycle() -> None:
    net = tiny_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)  # built before attaching: must keep working
    w0 = {n: m.weight.detach().clone() for n, m in quant.quantized_layers(net)}
    q = attach_quantizer(net, "uniform", 4, per_channel=True)
    assert q.n_steps == 1 and not q.done and not q.fake_quant_enabled
    for name, m in q.layers:
        assert torch.equal(m.weight, w0[name])  # disabled: identity view
    q.step()
    assert q.done and q.fake_quant_enabled
    for name, m in q.layers:
        ax = quant.layer_ch_axis(m)
        assert torch.equal(m.weight, uniform_quantize(w0[name], 4, True, ax))
    net(torch.randn(2, 2, 4, 4)).pow(2).mean().backward()
    opt.step()
    latent = net[0].parametrizations.weight.original
    assert not torch.equal(latent, w0["0"])  # the optimizer moved the latent weight
    codes = q.codes()
    for name, m in q.layers:
        c = codes[name]
        assert torch.equal(uniform_decode(c["codes"], 4, c["scale"], True, c["ch_axis"]), m.weight.detach())
    sd = q.state_dict()
    assert sd["fake_quant_enabled"] and sd["layers"]["3"]["ch_axis"] == 1
    q.fake_quant_enabled = False
    assert torch.equal(net[0].weight, latent)
    q.load_state_dict(sd)
    assert q.fake_quant_enabled
    view = {n: m.weight.detach().clone() for n, m in q.layers}
    q.detach()
    for name, m in q.layers:
        assert not parametrize.is_parametrized(m) and torch.equal(m.weight, view[name])
    assert attached_quantizer(net) is None
    attach_quantizer(net, "uniform", 4)  # re-attach after detach is allowed


def test_float_controller_interface() -> None:
    net = tiny_net()
    for scheme, bits in [("float", 32), ("inq", 32), ("uniform", 32)]:
        q = attach_quantizer(net, scheme, bits)
        assert isinstance(q, quant.FloatQuantizer) and q.scheme == "float" and q.bits == 32
        assert q.done and q.n_steps == 0 and q.layers == [] and not q.fake_quant_enabled
        q.quantize_all()
        q.fake_quant_enabled = False
        q.attach_optimizer(torch.optim.SGD(net.parameters(), lr=0.1))
        assert q.codes() == {} and q.state_dict()["scheme"] == "float"
        with pytest.raises(ValueError, match="no step left"):
            q.step()
        q.detach()
    assert attached_quantizer(net) is None


def test_attach_bad_input_and_double_attach() -> None:
    net = tiny_net()
    for kwargs, match in [(dict(scheme="dorefa", bits=5), "unknown quantization scheme"),
                          (dict(scheme="inq", bits=9), "bits=9"),
                          (dict(scheme="uniform", bits=1), "bits=1"),
                          (dict(scheme="inq", bits=5, strategy="largest"), "strategy"),
                          (dict(scheme="inq", bits=5, iterative_steps=(0.5, 0.4, 1.0)), "iterative_steps"),
                          (dict(scheme="inq", bits=5, iterative_steps=(0.5, 0.9)), "iterative_steps"),
                          (dict(scheme="inq", bits=5, seed=1.5), "seed")]:
        with pytest.raises(ValueError, match=match):
            attach_quantizer(net, **kwargs)
    with pytest.raises(ValueError, match="no nn.Conv2d"):
        attach_quantizer(nn.Linear(3, 2), "inq", 5)
    q = attach_quantizer(net, "inq", 5)
    assert attached_quantizer(net) is q
    for scheme in ("inq", "uniform"):
        with pytest.raises(ValueError, match="already quantized by a inq 5-bit quantizer"):
            attach_quantizer(net, scheme, 5)
    with pytest.raises(ValueError, match="step\\(\\)"):
        q.fake_quant_enabled = True
    q.detach()
    with pytest.raises(ValueError, match="detached"):
        q.step()


def test_safcn_all_layers_quantized_bn_and_bias_float() -> None:
    net = SAFCN(width=0.125, n_stages=3)
    bn_before = {k: v.clone() for k, v in net.state_dict().items() if "bn" in k or "bias" in k}
    q = attach_quantizer(net, "inq", 5)
    q.quantize_all()
    names = {n for n, _ in q.layers}
    assert {n for n, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))} == names
    for k, v in net.state_dict().items():
        if k in bn_before:
            assert torch.equal(v, bn_before[k]), k


# ---------------------------------------------------------------------------- the controller lives on the model
def test_deepcopy_carries_inq_controller() -> None:
    net = tiny_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(2, 2, 6, 6)
    q = attach_quantizer(net, "inq", 5, strategy="random", seed=7)
    q.attach_optimizer(opt)
    q.step()
    net(x).pow(2).mean().backward()
    opt.step()
    q.step()
    twin = copy.deepcopy(net)
    q2 = attached_quantizer(twin)
    assert q2 is not None and q2 is not q and q2.model is twin
    modules = dict(twin.named_modules())
    assert all(modules[n] is m for n, m in q2.layers)
    assert q2.step_index == q.step_index == 2 and q2.n1 == q.n1
    for (n, m), (_, m2) in zip(q.layers, q2.layers):
        assert torch.equal(q2.masks[n], q.masks[n]) and q2.masks[n] is not q.masks[n]
        assert torch.equal(bits_of(m2.weight), bits_of(m.weight))
    # the copy masks its own gradients and keeps its frozen weights under its own optimizer
    opt2 = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    q2.attach_optimizer(opt2)
    frozen = {n: m.weight.detach().clone() for n, m in q2.layers}
    for _ in range(2):
        opt2.zero_grad()
        twin(x).pow(2).mean().backward()
        opt2.step()
    for n, m in q2.layers:
        mask = q2.masks[n]
        assert m.weight.grad[mask].abs().sum() == 0
        assert torch.equal(bits_of(m.weight[mask]), bits_of(frozen[n][mask]))
    # stepping the copy leaves the original alone
    before = {n: (q.masks[n].clone(), m.weight.detach().clone()) for n, m in q.layers}
    q2.step()
    assert q.step_index == 2 and q2.step_index == 3
    for n, m in q.layers:
        assert torch.equal(q.masks[n], before[n][0]) and torch.equal(bits_of(m.weight), bits_of(before[n][1]))
    # ... and the original continues with the same random stream as the copy did
    q.step()
    assert all(torch.equal(q.masks[n], q2.masks[n]) for n, _ in q.layers)
    q2.detach()
    assert attached_quantizer(twin) is None and attached_quantizer(net) is q


def test_deepcopy_carries_uniform_controller() -> None:
    net = tiny_net()
    q = attach_quantizer(net, "uniform", 4)
    q.step()
    twin = copy.deepcopy(net)
    q2 = attached_quantizer(twin)
    assert q2 is not q and q2.fake_quant_enabled and q2.model is twin
    for (_, m), (_, m2) in zip(q.layers, q2.layers):
        assert torch.equal(bits_of(m2.weight), bits_of(m.weight))
    q2.fake_quant_enabled = False
    assert q.fake_quant_enabled
    assert torch.equal(twin[0].weight, twin[0].parametrizations.weight.original)
    q2.detach()
    assert attached_quantizer(net) is q and parametrize.is_parametrized(net[0], "weight")


def test_attached_inq_keeps_parameters_and_state_dict() -> None:
    """Training sees the same parameters in the same order; checkpoints keep their keys and load."""
    net = tiny_net()
    params = [(n, p) for n, p in net.named_parameters()]
    keys, modules = list(net.state_dict()), [n for n, _ in net.named_modules()]
    q = attach_quantizer(net, "inq", 5)
    q.step()
    assert [(n, p) for n, p in net.named_parameters()] == params  # same objects, same order
    assert list(net.state_dict()) == keys and [n for n, _ in net.named_modules()] == modules
    assert not any(isinstance(b, torch.Tensor) and b is q.masks["0"] for b in net.buffers())
    plain = tiny_net(seed=1)
    plain.load_state_dict(net.state_dict())
    assert attached_quantizer(plain) is None
    q.detach()
    assert all(not hasattr(m, "weight_quantizer") for _, m in q.layers)
