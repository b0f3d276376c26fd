"""Tests of qfcn.infer: shapes, probability ranges, ensembles, tiling."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from qfcn import infer
from qfcn.models import SAFCN

TINY = {"width": 0.125, "n_stages": 3}


pytestmark = pytest.mark.usefixtures("one_thread")


def _net(seed: int) -> SAFCN:
    torch.manual_seed(seed)
    net = SAFCN(**TINY)
    with torch.no_grad():  # non-trivial batch-norm statistics so that outputs vary over the image
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = np.full((90, 130, 3), 200, np.uint8)
    yy, xx = np.mgrid[:90, :130]
    img[(yy - 40) ** 2 + (xx - 60) ** 2 < 400] = (150, 60, 140)
    return np.clip(img + rng.integers(-20, 20, img.shape), 0, 255).astype(np.uint8)


def test_tile_starts_and_blend_window_hand_values():
    assert infer.tile_starts(300, 512, 64) == [(0, 300)]
    assert infer.tile_starts(900, 512, 64) == [(0, 512), (384, 900)]
    assert infer.tile_starts(1000, 512, 64) == [(0, 512), (224, 736), (480, 1000)]
    assert infer.tile_starts(576, 512, 64) == [(0, 576)]  # up to tile + overlap: one window
    assert infer.tile_starts(577, 512, 64) == [(0, 512), (64, 577)]
    for length in range(1, 1200, 37):
        w = infer.tile_starts(length, 128, 32, 16)
        assert w[0][0] == 0 and w[-1][1] == length
        assert all(s % 16 == 0 for s, _ in w)
        assert all(a1 - b0 >= 32 for (_, a1), (b0, _) in itertools.pairwise(w))
    np.testing.assert_allclose(infer.blend_window(6, 2, True, False), [1 / 3, 2 / 3, 1, 1, 1, 1])
    np.testing.assert_allclose(infer.blend_window(4, 2, True, True), [1 / 3, 2 / 3, 2 / 3, 1 / 3])
    with pytest.raises(ValueError, match="overlap"):
        infer.tile_starts(100, 64, 64, 32)


def test_resolve_device():
    assert infer.resolve_device("cpu") == torch.device("cpu")
    assert infer.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device"):
        infer.resolve_device("abacus")


def test_predict_shapes_and_ranges(image):
    nets = [_net(0), _net(1)]
    out = infer.predict(nets, image, device="cpu")
    assert out["object"].shape == out["contour"].shape == (90, 130)
    assert out["member_object"].shape == (2, 90, 130)
    assert out["descriptor"].shape == (nets[0].descriptor_dim,)
    assert out["member_descriptor"].shape == (2, nets[0].descriptor_dim)
    np.testing.assert_allclose(out["descriptor"], out["member_descriptor"].mean(0), atol=1e-6)
    for key in ("object", "contour", "member_object", "descriptor", "member_descriptor"):
        assert out[key].dtype == np.float32
    for key in ("object", "contour", "member_object"):
        assert 0.0 <= out[key].min() and out[key].max() <= 1.0
    np.testing.assert_allclose(out["object"], out["member_object"].mean(0), atol=1e-6)
    single = infer.predict(nets[1], image, device="cpu")
    np.testing.assert_allclose(single["object"], out["member_object"][1], atol=1e-6)
    # by hand: sigmoid of the network's own logits
    with torch.no_grad():
        obj, _, desc = nets[1](torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255, return_descriptor=True)
    np.testing.assert_allclose(single["object"], torch.sigmoid(obj)[0, 0].numpy(), atol=1e-5)
    np.testing.assert_allclose(single["descriptor"], desc[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(out["member_descriptor"][1], desc[0].numpy(), atol=1e-5)  # member order kept


def test_tiled_matches_untiled(image):
    net = _net(2)
    whole = infer.predict(net, image, device="cpu", tile=None)
    tiled = infer.predict(net, image, device="cpu", tile=40, overlap=16)
    assert len(infer.tile_starts(90, 40, 16, 4)) > 2 and len(infer.tile_starts(130, 40, 16, 4)) > 3
    diff = np.abs(whole["object"] - tiled["object"])
    assert diff.max() < 0.02 and diff.mean() < 2e-3
    assert np.abs(whole["contour"] - tiled["contour"]).max() < 0.02
    np.testing.assert_allclose(tiled["descriptor"], whole["descriptor"], atol=0.05)


def test_predict_restores_mode_and_rejects_bad_input(image):
    net = _net(3).train()
    infer.predict(net, image, device="cpu")
    assert net.training
    with pytest.raises(ValueError, match="uint8"):
        infer.predict(net, image.astype(np.float32), device="cpu")
    with pytest.raises(ValueError, match="models"):
        infer.predict([], image)
    with pytest.raises(ValueError, match="scale"):
        infer.predict(net, image, scale=0)
    with pytest.raises(ValueError, match="device"):
        infer.predict(net, image, device="gpu0")


def test_scale_and_bf16_keep_the_input_size(image):
    net = _net(4)
    half = infer.predict(net, image, device="cpu", scale=0.5)
    assert half["object"].shape == (90, 130) and half["member_object"].dtype == np.float32
    bf = infer.predict(net, image, device="cpu", bf16=True, channels_last=True)
    ref = infer.predict(net, image, device="cpu")
    assert np.abs(bf["object"] - ref["object"]).max() < 0.1


def test_predict_dataset(image):
    class S:
        def __init__(self, name, img):
            self.name, self.image = name, img

    net = _net(5)
    outs = infer.predict_dataset(net, [S("a", image), S("b", image[:40, :50])], device="cpu", progress=False)
    assert [o["name"] for o in outs] == ["a", "b"]
    assert outs[1]["object"].shape == (40, 50)
    np.testing.assert_allclose(outs[0]["object"], infer.predict(net, image, device="cpu")["object"], atol=1e-6)
    assert outs[1]["member_descriptor"].shape == (1, net.descriptor_dim)
    ens = infer.predict_dataset([_net(5), _net(6), _net(7)], [image], device="cpu", progress=False)
    assert ens[0]["member_descriptor"].shape == (3, net.descriptor_dim)
    assert ens[0]["member_descriptor"].dtype == np.float32
