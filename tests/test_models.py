"""Tests of qfcn.models: shapes, padding/cropping, descriptor, config, bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qfcn.models import SAFCN, stage_channels


@pytest.fixture(scope="module")
def small() -> SAFCN:
    torch.manual_seed(0)
    return SAFCN(width=0.25, n_stages=4).eval()


def test_stage_channels_paper_and_small() -> None:
    assert stage_channels(1.0, 6) == [32, 64, 128, 256, 512, 1024]
    assert stage_channels(0.25, 4) == [8, 16, 32, 64]
    assert stage_channels(2.0, 6, max_channels=1024) == [64, 128, 256, 512, 1024, 1024]
    assert stage_channels(0.01, 2) == [4, 8]  # floor of 4 channels


def test_paper_sized_network_layout() -> None:
    net = SAFCN()
    assert net.channels == [32, 64, 128, 256, 512, 1024]
    assert net.descriptor_dim == 1024 and net.total_stride == 32
    n_conv = sum(m.weight.numel() for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))
    assert 1.5e6 < n_conv < 3e6  # the ~2M-weight network of the INQ timing
    assert any(isinstance(m, nn.ConvTranspose2d) for m in net.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) > 20


@pytest.mark.parametrize("h,w", [(37, 53), (8, 8), (5, 7), (64, 33)])
def test_output_shapes_odd_sizes(small: SAFCN, h: int, w: int) -> None:
    with torch.no_grad():
        obj, cnt, desc = small(torch.rand(2, 3, h, w), return_descriptor=True)
    assert obj.shape == (2, 1, h, w) and cnt.shape == (2, 1, h, w)
    assert obj.dtype == torch.float32 and cnt.dtype == torch.float32
    assert desc.shape == (2, 64)
    assert torch.isfinite(obj).all() and torch.isfinite(cnt).all()


def test_descriptor_matches_forward_and_is_batch_independent(small: SAFCN) -> None:
    x = torch.rand(3, 3, 37, 53)
    with torch.no_grad():
        d = small.descriptor(x)
        _, _, d2 = small(x, return_descriptor=True)
        d_one = small.descriptor(x[1:2])
    assert d.shape == (3, small.descriptor_dim)
    torch.testing.assert_close(d, d2)
    torch.testing.assert_close(d[1:2], d_one, rtol=1e-5, atol=1e-6)


def _last_map(net: SAFCN, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    feats = {}
    handle = net.stages[-1].register_forward_hook(lambda m, i, o: feats.setdefault("last", o))
    with torch.no_grad():
        d = net.descriptor(x)
    handle.remove()
    return d, feats["last"]


def test_descriptor_weights_cells_by_valid_pixels(small: SAFCN) -> None:
    # stride 8: 32 x 48 is not padded -> plain mean of the 4 x 6 map
    d, last = _last_map(small, torch.rand(1, 3, 32, 48))
    torch.testing.assert_close(d, last.mean(dim=(2, 3)))
    # 9 x 20 -> padded to 16 x 24, map 2 x 3; row weights (8, 1), column weights (8, 8, 4) pixels
    d, last = _last_map(small, torch.rand(1, 3, 9, 20))
    wgt = torch.tensor([8.0, 1.0])[:, None] * torch.tensor([8.0, 8.0, 4.0])[None, :]
    expected = (last * wgt).sum(dim=(2, 3)) / wgt.sum()
    torch.testing.assert_close(d, expected)
    assert not torch.allclose(d, last.mean(dim=(2, 3)))


def test_pad_crop_consistency(small: SAFCN) -> None:
    """An input already a multiple of the stride is not padded; its crop equals direct evaluation."""
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        obj, _ = small(x)
        z_obj = small.object_head(
            small.fuse(torch.cat([b(f) for b, f in zip(small.branches, small._encode(x))], 1))
        )
    torch.testing.assert_close(obj, z_obj)


def test_bilinear_variant_and_blocks() -> None:
    net = SAFCN(width=0.125, n_stages=3, blocks_per_stage=2, upsample="bilinear").eval()
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in net.modules())
    with torch.no_grad():
        obj, cnt = net(torch.rand(1, 3, 19, 23))
    assert obj.shape == (1, 1, 19, 23) and cnt.shape == (1, 1, 19, 23)


def test_transposed_upsampling_starts_as_bilinear() -> None:
    net = SAFCN(width=0.25, n_stages=3)
    up = net.branches[2].up
    assert isinstance(up, nn.ConvTranspose2d) and up.stride == (4, 4)
    y = up(torch.ones(1, up.in_channels, 6, 6))
    assert y.shape[-2:] == (24, 24)
    torch.testing.assert_close(y[..., 4:-4, 4:-4], torch.ones_like(y[..., 4:-4, 4:-4]))


def test_config_round_trip() -> None:
    net = SAFCN(width=0.5, n_stages=3, base_channels=16, upsample="bilinear")
    assert net.config == dict(in_channels=3, width=0.5, n_stages=3, blocks_per_stage=1, base_channels=16,
                              max_channels=1024, upsample="bilinear")
    clone = SAFCN.from_config(net.config)
    assert clone.config == net.config
    clone.load_state_dict(net.state_dict())  # same architecture
    with pytest.raises(ValueError, match="unknown SAFCN config keys"):
        SAFCN.from_config({**net.config, "depth": 3})


def test_training_step_and_grads() -> None:
    net = SAFCN(width=0.125, n_stages=3).train()
    obj, cnt = net(torch.rand(2, 3, 20, 28))
    (obj.mean() + cnt.mean()).backward()
    assert net.stem[0].weight.grad is not None and net.stem[0].weight.grad.abs().sum() > 0


def test_channels_last_and_bf16_autocast(small: SAFCN) -> None:
    x = torch.rand(1, 3, 37, 53)
    with torch.no_grad():
        ref, _ = small(x)
        cl = SAFCN.from_config(small.config).eval()
        cl.load_state_dict(small.state_dict())
        cl = cl.to(memory_format=torch.channels_last)
        out_cl, _ = cl(x.contiguous(memory_format=torch.channels_last))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out_bf, cnt_bf = small(x)
    torch.testing.assert_close(out_cl, ref, rtol=1e-4, atol=1e-4)
    assert out_bf.dtype == torch.float32 and cnt_bf.dtype == torch.float32
    assert (out_bf - ref).abs().max() < 0.5


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(width=0), "width"),
        (dict(width=float("nan")), "width"),
        (dict(n_stages=0), "n_stages"),
        (dict(n_stages=2.0), "n_stages"),
        (dict(blocks_per_stage=0), "blocks_per_stage"),
        (dict(upsample="nearest"), "upsample"),
        (dict(in_channels=True), "in_channels"),
    ],
)
def test_bad_constructor_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SAFCN(**kwargs)


def test_bad_inputs(small: SAFCN) -> None:
    with pytest.raises(ValueError, match="4-d"):
        small(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match="in_channels=3"):
        small(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="float"):
        small(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="empty"):
        small.descriptor(torch.rand(1, 3, 0, 32))


def test_upsampling_runs_in_float32_inside_bf16_autocast():
    """oneDNN's bf16 grouped transposed conv is ~4x slower on CPU than float32: the upsampling
    branches opt out of autocast (the rest of the network still runs in bf16)."""
    from qfcn.models import _UpBranch
    net = SAFCN(width=0.125, n_stages=3).train()
    seen = []
    for m in net.modules():
        if isinstance(m, _UpBranch) and m.up is not None:
            m.up.register_forward_hook(lambda mod, inp, out: seen.append((inp[0].dtype, out.dtype)))
            m.reduce.register_forward_hook(lambda mod, inp, out: seen.append(("reduce", out.dtype)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        obj, _ = net(torch.rand(2, 3, 32, 32))
    ups = [s for s in seen if s[0] != "reduce"]
    assert len(ups) == 2 and all(s == (torch.float32, torch.float32) for s in ups)
    assert all(dt == torch.bfloat16 for tag, dt in seen if tag == "reduce")
    assert obj.dtype == torch.float32
