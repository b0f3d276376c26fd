"""Small models and bit-level comparisons shared by the quantizer tests."""

from __future__ import annotations

import torch
from torch import nn

from qfcn.models import SAFCN

#: the SA FCN of the packing tests
CFG = dict(width=0.125, n_stages=3)


def bits_of(t: torch.Tensor) -> torch.Tensor:
    return t.detach().contiguous().view(torch.int32)


def tiny_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.ConvTranspose2d(4, 3, 2, stride=2), nn.BatchNorm2d(3), nn.ReLU(),
        nn.Conv2d(3, 1, 1),
    )


def make_net(seed: int = 0, **kw) -> SAFCN:
    torch.manual_seed(seed)
    net = SAFCN(**{**CFG, **kw})
    # non-trivial batch-norm statistics and biases, so the float parts are checked too
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.num_batches_tracked.fill_(17)
    return net


def assert_bit_identical(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        x, y = sa[k], sb[k]
        assert x.dtype == y.dtype and x.shape == y.shape, k
        if x.is_floating_point():
            assert torch.equal(x.contiguous().view(torch.int32), y.contiguous().view(torch.int32)), k
        else:
            assert torch.equal(x, y), k
