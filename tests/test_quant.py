"""Tests of qfcn.quant: INQ levels and rule, the incremental procedure, uniform fake quant, controllers."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from qfcn import quant
from qfcn.models import SAFCN
from qfcn.quant import (
    SCHEMES,
    attach_quantizer,
    attached_quantizer,
    check_scheme,
    inq_decode,
    inq_encode,
    inq_levels,
    inq_n1,
    inq_quantize,
    round_ste,
    uniform_decode,
    uniform_encode,
    uniform_quantize,
    uniform_scale,
)


def bits_of(t: torch.Tensor) -> torch.Tensor:
    return t.detach().contiguous().view(torch.int32)


def tiny_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.ConvTranspose2d(4, 3, 2, stride=2), nn.BatchNorm2d(3), nn.ReLU(),
        nn.Conv2d(3, 1, 1),
    )


# ---------------------------------------------------------------------------- schemes
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


# ---------------------------------------------------------------------------- INQ levels and rule
def test_inq_n1_hand_computed() -> None:
    assert inq_n1(torch.tensor([0.3, -1.0])) == 0  # floor(log2(4/3)) = 0
    assert inq_n1(torch.tensor([0.3])) == -2  # 4*0.3/3 = 0.4 -> floor(-1.32) = -2
    assert inq_n1(torch.tensor([2.0, -0.1])) == 1  # max exactly a power of two: 8/3 -> 1
    assert inq_n1(torch.tensor([0.5])) == -1  # 2/3 -> -1
    assert inq_n1(torch.tensor([1.5])) == 1  # 4*1.5/3 = 2 exactly -> 1 (boundary is exact)
    assert inq_n1(torch.tensor([1.4999999])) == 0
    assert inq_n1(torch.tensor([-0.75])) == 0  # 1 exactly -> 0
    assert inq_n1(torch.zeros(2, 3)) == 0  # all-zero layer: documented convention
    with pytest.raises(ValueError, match="inf or NaN"):
        inq_n1(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="empty"):
        inq_n1(torch.zeros(0))


def test_inq_levels_hand_computed() -> None:
    # b = 3: n2 = n1 + 1 - 2 = n1 - 1 -> zero plus 2 magnitudes
    assert inq_levels(3, 0).tolist() == [0.0, 0.5, 1.0]
    # b = 5: n2 = n1 - 7 -> zero plus 8 magnitudes
    assert inq_levels(5, -2).tolist() == [0.0] + [2.0**n for n in range(-9, -1)]
    assert len(inq_levels(5, 3)) == 9
    # b = 7: 32 magnitudes; b = 2: one
    assert inq_levels(7, 1).tolist() == [0.0] + [2.0**n for n in range(-30, 2)]
    assert inq_levels(2, 4).tolist() == [0.0, 16.0]
    with pytest.raises(ValueError, match="bits"):
        inq_levels(9, 0)


def test_inq_rule_b3_hand_computed() -> None:
    # levels {0, 0.5, 1}: 0.5 for [0.25, 0.75), 1 for [0.75, 1.5) and above (top level, never 0)
    w = torch.tensor([0.0, 0.2, 0.25, -0.3, 0.74, 0.75, -1.0, 1.49, 1.6, -7.0])
    expected = [0.0, 0.0, 0.5, -0.5, 0.5, 1.0, -1.0, 1.0, 1.0, -1.0]
    assert inq_quantize(w, 3, n1=0).tolist() == expected
    # levels from w itself: s = 7 -> n1 = floor(log2(28/3)) = 3, levels {0, 4, 8}
    assert inq_quantize(w, 3).tolist() == [0.0, 0, 0, 0, 0, 0, 0, 0, 0, -8.0]


def test_inq_rule_b5_hand_computed() -> None:
    # s = 0.3 -> n1 = -2, n2 = -9; zero below 2**-10 = 0.0009765625
    w = torch.tensor([0.3, -0.1, 0.01, 0.0009, 0.0009765625, -0.0015, 0.2, 0.14])
    expected = [0.25, -0.125, 0.0078125, 0.0, 0.001953125, -0.001953125, 0.25, 0.125]
    assert inq_n1(w) == -2
    assert inq_quantize(w, 5).tolist() == expected


def test_inq_rule_b7_max_power_of_two() -> None:
    # s = 2 exactly -> n1 = 1, n2 = 1 + 1 - 32 = -30; zero below 2**-31
    w = torch.tensor([2.0, -1.0, 0.75, 2.0**-31, 2.0**-32, 3e-10, -1.5, 1.2])
    expected = [2.0, -1.0, 1.0, 2.0**-30, 0.0, 0.0, -2.0, 1.0]
    assert inq_quantize(w, 7).tolist() == expected
    q = inq_quantize(w, 7)
    assert torch.equal(inq_quantize(q, 7), q)  # idempotent on the grid


def test_inq_all_zero_layer() -> None:
    w = torch.zeros(3, 2, 3, 3)
    q = inq_quantize(w, 5)
    assert torch.equal(bits_of(q), bits_of(torch.zeros_like(w)))  # +0.0 everywhere
    assert inq_encode(w, 5, inq_n1(w)).sum() == 0


def test_inq_quantize_matches_nearest_level_search() -> None:
    """The vectorized rule equals a brute-force search of the INQ interval table."""
    torch.manual_seed(1)
    w = torch.randn(5000) * 0.1
    for bits in (2, 3, 5, 7, 8):
        n1 = inq_n1(w)
        lv = inq_levels(bits, n1)
        a = w.double().abs()
        out = torch.zeros_like(a)
        for lo, beta in zip(lv[:-1], lv[1:]):
            out = torch.where(((lo + beta) / 2 <= a) & (a < 1.5 * beta), beta, out)
        out = torch.where(a >= 1.5 * lv[-1], lv[-1], out)
        assert torch.equal(inq_quantize(w, bits).double(), torch.sign(w.double()) * out), bits


@pytest.mark.parametrize("bits", range(2, 9))
def test_inq_codes_round_trip(bits: int) -> None:
    torch.manual_seed(bits)
    w = torch.randn(7, 5, 3, 3)
    n1 = inq_n1(w)
    q = inq_quantize(w, bits, n1)
    codes = inq_encode(q, bits, n1)
    assert codes.dtype == torch.uint8 and int(codes.max()) < 2**bits
    assert torch.equal(bits_of(inq_decode(codes, bits, n1)), bits_of(q))
    with pytest.raises(ValueError, match="not on the"):
        inq_encode(w, bits, n1)


# ---------------------------------------------------------------------------- INQ procedure
def test_partition_order_largest_first_and_frozen() -> None:
    net = tiny_net()
    w0 = {n: m.weight.detach().clone() for n, m in quant.quantized_layers(net)}
    q = attach_quantizer(net, "inq", 5)
    assert q.n_steps == 4 and not q.done and not q.fake_quant_enabled
    q.step()
    for name, m in q.layers:
        mask = q._mask[name]
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
    assert int(q._mask["0"].sum()) == round(0.5 * 9)


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
        masks.append(torch.cat([q._mask[n].flatten() for n, _ in q.layers]))
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
        frozen = {n: (q._mask[n].clone(), m.weight.detach().clone()) for n, m in q.layers}
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
        assert torch.equal(q._mask[n], q2._mask[n])
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


# ---------------------------------------------------------------------------- uniform
@pytest.mark.parametrize("bits", range(2, 9))
def test_uniform_matches_torch_fake_quantize(bits: int) -> None:
    torch.manual_seed(bits)
    qmax = 2 ** (bits - 1) - 1
    for w, ax in [(torch.randn(6, 4, 3, 3), 0), (torch.randn(4, 5, 2, 2), 1)]:
        scale = uniform_scale(w, bits, True, ax)
        ref = torch.fake_quantize_per_channel_affine(w, scale, torch.zeros(w.shape[ax], dtype=torch.int32),
                                                     ax, -qmax, qmax)
        assert torch.equal(bits_of(uniform_quantize(w, bits, True, ax)), bits_of(ref))
        s = float(uniform_scale(w, bits, False))
        ref_t = torch.fake_quantize_per_tensor_affine(w, s, 0, -qmax, qmax)
        assert torch.equal(bits_of(uniform_quantize(w, bits, per_channel=False)), bits_of(ref_t))


def test_uniform_hand_computed_and_zero_channel() -> None:
    w = torch.tensor([[0.6, -0.41, 0.05], [0.0, 0.0, 0.0]])
    # bits 3: qmax 3, scale row 0 = 0.2 -> q = 3, -2, 0; row 1 all zero (scale 0)
    out = uniform_quantize(w, 3)
    torch.testing.assert_close(out, torch.tensor([[0.6, -0.4, 0.0], [0.0, 0.0, 0.0]]), rtol=0, atol=1e-7)
    assert torch.isfinite(out).all()
    codes = uniform_encode(out, 3, uniform_scale(w, 3))
    assert codes.tolist() == [[6, 1, 3], [3, 3, 3]]
    assert torch.equal(uniform_decode(codes, 3, uniform_scale(w, 3)), out)
    with pytest.raises(ValueError, match="not on the 3-bit uniform grid"):
        uniform_encode(w, 3, uniform_scale(w, 3))


def test_round_ste_gradient() -> None:
    x = torch.tensor([0.4, 1.5, 2.5, -0.6], requires_grad=True)
    y = round_ste(x)
    assert y.tolist() == [0.0, 2.0, 2.0, -1.0]  # half to even
    y.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0, 1.0]
    w = torch.randn(3, 4, requires_grad=True)
    uniform_quantize(w, 4).sum().backward()
    torch.testing.assert_close(w.grad, torch.ones_like(w))


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
