"""Tests of qfcn.quant.uniform: fake quantization against torch's, hand-computed codes, round_ste."""

from __future__ import annotations

import pytest
import torch

from qfcn.quant import round_ste, uniform_decode, uniform_encode, uniform_quantize, uniform_scale

from .helpers import bits_of


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
