"""The suggestive-annotation FCN (SA FCN, Yang et al. 2017) used throughout the study.

Architecture (docs/method.md §3):

- Input normalisation: ``x`` is float RGB in ``[0, 1]`` with shape ``(N, C, H, W)``; the
  model computes ``(x - 0.5) / 0.25`` internally (fixed constants, nothing learned,
  nothing stored in the state dict), so callers never normalise.
- Encoder: a 3x3 stem conv (``C -> c_0``) and ``n_stages`` stages of residual
  bottleneck blocks (1x1, 3x3, 1x1 with a 1x1 projection shortcut when the channel
  count changes), 2x2 max-pooling before every stage but the first. Stage ``i`` has
  ``c_i = min(max_channels, round(base_channels * width) * 2**i)`` channels, so the
  total stride is ``2**(n_stages - 1)``. ``width=1, n_stages=6`` is the paper-sized
  network (32 ... 1024 channels, 1024-d descriptor); ``width=0.25, n_stages=4`` is a
  small CPU network (8 ... 64 channels).
- Decoder: every stage map goes through a 1x1 conv to ``d = round(base_channels *
  width)`` channels and is brought to full resolution, either by a depthwise transposed
  conv (kernel ``2s``, stride ``s``, initialised as bilinear interpolation, learnable:
  ``upsample="transposed"``) or by fixed bilinear interpolation
  (``upsample="bilinear"``). The maps are concatenated and fused (1x1 then 3x3 conv).
- Two 1x1 heads give per-pixel logits for the gland OBJECT and the gland CONTOUR.
- Descriptor: spatial mean of the last encoder map, each cell weighted by the fraction
  of its pixels that lie in the valid (unpadded) image, shape ``(N, c_last)``.

Any ``H, W`` works: the input is padded on the bottom/right to a multiple of the total
stride (``reflect``, or ``replicate`` when the image is too small to reflect) and the
logits are cropped back. Every conv is followed by BatchNorm (except the heads and the
upsampling transposed convs). Channels-last memory format and bfloat16 autocast are the
caller's options (``model.to(memory_format=torch.channels_last)``,
``torch.autocast(device_type, dtype=torch.bfloat16)``); the upsampling transposed convs always
run in float32 (on CPU their bfloat16 kernel is about 4x slower), and the logits are float32.

Example:
    >>> import torch
    >>> from qfcn.models import SAFCN
    >>> net = SAFCN(width=0.25, n_stages=4).eval()
    >>> obj, cnt = net(torch.rand(1, 3, 37, 53))
    >>> obj.shape, cnt.shape, net.descriptor(torch.rand(2, 3, 37, 53)).shape
    (torch.Size([1, 1, 37, 53]), torch.Size([1, 1, 37, 53]), torch.Size([2, 64]))
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SAFCN", "Bottleneck", "stage_channels"]

_UPSAMPLE_MODES = ("transposed", "bilinear")
_NORM_MEAN = 0.5
_NORM_STD = 0.25


def stage_channels(width: float, n_stages: int, base_channels: int = 32, max_channels: int = 1024) -> list[int]:
    """Channels of each encoder stage: ``min(max_channels, round(base_channels*width) * 2**i)``.

    The first stage has at least 4 channels (so the bottleneck's inner width ``c//4`` is >= 1).

    >>> stage_channels(1.0, 6)
    [32, 64, 128, 256, 512, 1024]
    >>> stage_channels(0.25, 4)
    [8, 16, 32, 64]
    """
    c0 = max(4, int(round(base_channels * width)))
    return [min(max_channels, c0 * 2**i) for i in range(n_stages)]


def _conv_bn_relu(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=k // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class Bottleneck(nn.Module):
    """Residual bottleneck block: 1x1 (cout//4) -> 3x3 (cout//4) -> 1x1 (cout), BN after each conv.

    The shortcut is the identity when ``cin == cout``, else a 1x1 conv + BN (projection).
    Shapes: ``(N, cin, H, W) -> (N, cout, H, W)``.
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        mid = max(1, cout // 4)
        self.conv1 = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        if cin != cout:
            self.shortcut: nn.Module = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = F.relu(self.bn2(self.conv2(y)), inplace=True)
        y = self.bn3(self.conv3(y))
        return F.relu(y + self.shortcut(x), inplace=True)


def _bilinear_kernel(stride: int) -> torch.Tensor:
    """(2s, 2s) kernel of a stride-``s`` transposed conv that performs bilinear upsampling."""
    k = 2 * stride
    center = (k - 1) / 2.0
    og = torch.arange(k, dtype=torch.float32)
    filt = 1.0 - (og - center).abs() / stride
    return filt[:, None] * filt[None, :]


class _UpBranch(nn.Module):
    """Decoder branch of one stage: 1x1 conv to ``d`` channels + BN + ReLU, then upsample by ``s``."""

    def __init__(self, cin: int, d: int, stride: int, upsample: str) -> None:
        super().__init__()
        self.reduce = _conv_bn_relu(cin, d, 1)
        self.stride = stride
        self.upsample = upsample
        self.up: nn.Module | None = None
        if stride > 1 and upsample == "transposed":
            up = nn.ConvTranspose2d(d, d, 2 * stride, stride=stride, padding=stride // 2, groups=d, bias=False)
            with torch.no_grad():
                up.weight.copy_(_bilinear_kernel(stride).expand_as(up.weight))
            self.up = up

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.reduce(x)
        if self.stride == 1:
            return y
        if self.up is not None:
            # float32 even inside bf16 autocast: oneDNN has no fast bf16 grouped transposed
            # conv on CPU (4x slower than float32, benchmarks/results/throughput.json)
            with torch.autocast(y.device.type, enabled=False):
                return self.up(y.float())
        return F.interpolate(y, scale_factor=self.stride, mode="bilinear", align_corners=False)


class SAFCN(nn.Module):
    """The SA FCN with two heads (gland object, gland contour) and a descriptor.

    Args (keyword-only):
        in_channels: channels of the input image (3 for RGB).
        width: width multiplier applied to ``base_channels`` (> 0).
        n_stages: number of encoder stages, 1..8 (total stride ``2**(n_stages-1)``).
        blocks_per_stage: bottleneck blocks per stage (>= 1).
        base_channels: channels of the first stage at ``width=1``.
        max_channels: cap on the channels of any stage.
        upsample: ``"transposed"`` (learnable depthwise transposed conv, bilinear init)
            or ``"bilinear"`` (fixed interpolation).

    Attributes:
        config: dict of the constructor's arguments (``SAFCN.from_config(net.config)``
            rebuilds the same architecture).
        channels: list of stage channels; ``descriptor_dim == channels[-1]``.
        total_stride: ``2**(n_stages - 1)``.
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        width: float = 1.0,
        n_stages: int = 6,
        blocks_per_stage: int = 1,
        base_channels: int = 32,
        max_channels: int = 1024,
        upsample: str = "transposed",
    ) -> None:
        super().__init__()
        _check_int("in_channels", in_channels, 1, 64)
        _check_int("n_stages", n_stages, 1, 8)
        _check_int("blocks_per_stage", blocks_per_stage, 1, 64)
        _check_int("base_channels", base_channels, 1, 4096)
        _check_int("max_channels", max_channels, 4, 65536)
        if isinstance(width, bool) or not isinstance(width, (int, float)) or not math.isfinite(width) or width <= 0:
            raise ValueError(f"width must be a finite number > 0, got {width!r}")
        if upsample not in _UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {_UPSAMPLE_MODES}, got {upsample!r}")
        self.config: dict[str, Any] = dict(
            in_channels=in_channels,
            width=float(width),
            n_stages=n_stages,
            blocks_per_stage=blocks_per_stage,
            base_channels=base_channels,
            max_channels=max_channels,
            upsample=upsample,
        )
        self.channels = stage_channels(width, n_stages, base_channels, max_channels)
        self.total_stride = 2 ** (n_stages - 1)
        self.descriptor_dim = self.channels[-1]
        d = max(4, int(round(base_channels * width)))

        self.stem = _conv_bn_relu(in_channels, self.channels[0], 3)
        stages = []
        cin = self.channels[0]
        for cout in self.channels:
            blocks = [Bottleneck(cin if b == 0 else cout, cout) for b in range(blocks_per_stage)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.branches = nn.ModuleList(
            _UpBranch(c, d, 2**i, upsample) for i, c in enumerate(self.channels)
        )
        self.fuse = nn.Sequential(_conv_bn_relu(d * n_stages, d, 1), _conv_bn_relu(d, d, 3))
        self.object_head = nn.Conv2d(d, 1, 1)
        self.contour_head = nn.Conv2d(d, 1, 1)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "SAFCN":
        """Build a network from ``net.config`` (unknown keys are an error)."""
        if not isinstance(config, dict):
            raise ValueError(f"config must be a dict, got {type(config).__name__}")
        allowed = {"in_channels", "width", "n_stages", "blocks_per_stage", "base_channels", "max_channels", "upsample"}
        unknown = set(config) - allowed
        if unknown:
            raise ValueError(f"unknown SAFCN config keys {sorted(unknown)}; expected a subset of {sorted(allowed)}")
        return cls(**config)

    # ------------------------------------------------------------------ internals
    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise ValueError(f"input must be a 4-d tensor (N, C, H, W), got {getattr(x, 'shape', type(x))}")
        if x.shape[1] != self.config["in_channels"]:
            raise ValueError(f"input has {x.shape[1]} channels, expected in_channels={self.config['in_channels']}")
        if not x.is_floating_point():
            raise ValueError(f"input must be a float tensor in [0, 1], got dtype {x.dtype}")
        if x.shape[0] == 0 or x.shape[2] == 0 or x.shape[3] == 0:
            raise ValueError(f"input has an empty dimension: {tuple(x.shape)}")

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        s = self.total_stride
        h, w = x.shape[-2:]
        ph, pw = (-h) % s, (-w) % s
        if ph == 0 and pw == 0:
            return x
        mode = "reflect" if (ph < h and pw < w) else "replicate"
        return F.pad(x, (0, pw, 0, ph), mode=mode)

    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - _NORM_MEAN) / _NORM_STD
        y = self.stem(x)
        feats = []
        for i, stage in enumerate(self.stages):
            if i > 0:
                y = F.max_pool2d(y, 2)
            y = stage(y)
            feats.append(y)
        return feats

    def _descriptor_from(self, last: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Mean of ``last`` (N, C, Hc, Wc), each cell weighted by its fraction of unpadded pixels."""
        s = self.total_stride
        hc, wc = last.shape[-2:]
        rows = (h - s * torch.arange(hc, device=last.device)).clamp(0, s).float()
        cols = (w - s * torch.arange(wc, device=last.device)).clamp(0, s).float()
        wgt = rows[:, None] * cols[None, :]
        return (last.float() * wgt).sum(dim=(2, 3)) / wgt.sum()

    # ------------------------------------------------------------------ public
    def forward(self, x: torch.Tensor, return_descriptor: bool = False):
        """Object and contour logits for ``x`` of shape ``(N, C, H, W)`` in ``[0, 1]``.

        Returns ``(object_logits, contour_logits)``, each ``(N, 1, H, W)`` float32, plus the
        descriptor ``(N, channels[-1])`` float32 as a third item when ``return_descriptor``.
        """
        self._check_input(x)
        h, w = x.shape[-2:]
        feats = self._encode(self._pad(x))
        ups = [branch(f) for branch, f in zip(self.branches, feats)]
        z = self.fuse(torch.cat(ups, dim=1))
        obj = self.object_head(z)[..., :h, :w].float()
        cnt = self.contour_head(z)[..., :h, :w].float()
        if return_descriptor:
            return obj, cnt, self._descriptor_from(feats[-1], h, w)
        return obj, cnt

    def descriptor(self, x: torch.Tensor) -> torch.Tensor:
        """Spatial mean of the last encoder map (padding-weighted, see module doc): ``(N, channels[-1])`` float32."""
        self._check_input(x)
        h, w = x.shape[-2:]
        feats = self._encode(self._pad(x))
        return self._descriptor_from(feats[-1], h, w)


def _check_int(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an int in [{lo}, {hi}], got {value!r}")
