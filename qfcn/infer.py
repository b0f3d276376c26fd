"""Whole-image inference with one SA FCN or an ensemble of them.

Conventions
-----------
- Input images are ``H x W x 3`` uint8 RGB arrays (as in :class:`qfcn.data.Sample`).
- Outputs are float32 numpy arrays: probabilities in [0, 1] (sigmoid of the logits),
  at the input resolution, whatever ``scale`` the network saw.
- An ensemble's ``object`` / ``contour`` maps are the mean of the members'
  probabilities; ``member_object`` keeps each member's object probability (K, H, W),
  from which suggestive annotation derives its uncertainty (pixel mean of the
  across-member standard deviation, docs/method.md §5).
- ``member_descriptor`` (K, D) keeps each member's descriptor (spatial mean of its last
  encoder map); ``descriptor`` (D,) is their mean. Members are initialised independently,
  so their channels do not correspond: suggestive annotation compares images member by
  member (:func:`qfcn.suggest.descriptor_similarity`, docs/method.md §5). When an image
  is tiled, each member's descriptor is the area-weighted mean of its tile descriptors
  (an approximation of the whole-image one; the model and its descriptor are described
  in docs/method.md §3).

Images with a side over ``tile + overlap`` pixels are cut into tiles of ``tile`` pixels
overlapping by at least ``overlap`` pixels; tile origins are multiples of ``align`` (the network's total down-sampling)
so that the pooling grid of every tile lines up with the whole image. Overlaps are
blended with linear ramps, so seams get no hard edge.

Example
-------
>>> import numpy as np
>>> from qfcn import infer, models
>>> net = models.SAFCN(width=0.125, n_stages=3)
>>> out = infer.predict(net, np.zeros((100, 120, 3), np.uint8), device="cpu")
>>> out["object"].shape, out["member_object"].shape, out["descriptor"].shape
((100, 120), (1, 100, 120), (16,))
>>> out["member_descriptor"].shape, out["member_descriptor"].dtype
((1, 16), dtype('float32'))
>>> out["object"].dtype, bool(0.0 <= out["object"].min() <= out["object"].max() <= 1.0)
(dtype('float32'), True)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

__all__ = ["blend_window", "predict", "predict_dataset", "resolve_device", "tile_starts"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' -> CUDA when available, else CPU; anything else goes to ``torch.device``."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device: expected 'auto', 'cpu', 'cuda[:i]' or a torch.device, got {device!r}") from err


def tile_starts(length: int, tile: int, overlap: int, align: int = 32) -> list[tuple[int, int]]:
    """(start, stop) windows covering ``range(length)`` along one axis.

    Starts are multiples of ``align``; consecutive windows overlap by at least
    ``overlap`` pixels; every window is ``tile`` long except the last, which ends at
    ``length`` and may be up to ``align - 1`` pixels longer. ``length <= tile + overlap``
    gives one window (cutting it would cost more than it saves).

    >>> tile_starts(522, 512, 64), tile_starts(577, 512, 64)
    ([(0, 522)], [(0, 512), (64, 577)])
    >>> tile_starts(900, 512, 64)
    [(0, 512), (384, 900)]
    >>> tile_starts(1000, 512, 64)
    [(0, 512), (224, 736), (480, 1000)]
    """
    if tile <= 0 or overlap < 0 or align <= 0:
        raise ValueError(f"tile, overlap, align: expected tile > 0, overlap >= 0, align > 0; got {tile}, {overlap}, {align}")
    stride = ((tile - overlap) // align) * align
    if stride <= 0:
        raise ValueError(f"tile={tile} minus overlap={overlap} must be at least align={align}")
    if length <= tile + overlap:
        return [(0, length)]
    last = ((length - tile) // align) * align
    n = -(-last // stride) + 1
    if n == 1:
        return [(0, length)]
    starts = [((k * last) // (n - 1) // align) * align for k in range(n)]
    return [(s, s + tile) for s in starts[:-1]] + [(last, length)]


def blend_window(length: int, ramp: int, left: bool, right: bool) -> np.ndarray:
    """1-D blending weights: linear ramps of ``ramp`` pixels on the sides that touch
    another tile (``left`` / ``right``), 1 elsewhere; strictly positive, float32."""
    w = np.ones(length, np.float32)
    ramp = min(ramp, length // 2)
    if ramp > 0:
        up = (np.arange(ramp, dtype=np.float32) + 1.0) / (ramp + 1.0)
        if left:
            w[:ramp] = up
        if right:
            w[length - ramp:] = up[::-1]
    return w


def _as_list(models: nn.Module | Sequence[nn.Module]) -> list[nn.Module]:
    out = [models] if isinstance(models, nn.Module) else list(models)
    if not out or not all(isinstance(m, nn.Module) for m in out):
        raise ValueError("models: expected an nn.Module or a non-empty sequence of nn.Module")
    return out


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        got = f"{type(image).__name__} {getattr(image, 'shape', '')} {getattr(image, 'dtype', '')}"
        raise ValueError(f"image: expected an H x W x 3 uint8 array, got {got}")


@contextlib.contextmanager
def _on_device(models: list[nn.Module], device: torch.device, channels_last: bool) -> Iterator[list[nn.Module]]:
    """Move models to ``device`` in eval mode; restore their device, memory format
    (contiguous) and train flags afterwards."""
    before = []
    for m in models:
        p = next(m.parameters(), None)
        before.append((p.device if p is not None else torch.device("cpu"), m.training))
    try:
        for m in models:
            m.eval()
            m.to(device)
            if channels_last:
                m.to(memory_format=torch.channels_last)
        yield models
    finally:
        for m, (dev, training) in zip(models, before):
            if channels_last:
                m.to(memory_format=torch.contiguous_format)
            m.to(dev)
            m.train(training)


def _forward(model: nn.Module, x: torch.Tensor, bf16: bool, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Probabilities (obj, contour) of shape (H, W) float32 and descriptor (D,) for x (1,3,H,W)."""
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    ctx = torch.autocast(x.device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with ctx:
        obj, con, desc = model(x, return_descriptor=True)
    return (torch.sigmoid(obj.float())[0, 0], torch.sigmoid(con.float())[0, 0], desc.float()[0])


def _predict_one(model: nn.Module, x: torch.Tensor, tile: int | None, overlap: int, align: int,
                 bf16: bool, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One model on x (1,3,H,W): whole image when it fits in ``tile``, else blended tiles."""
    h, w = x.shape[-2:]
    if tile is None:
        return _forward(model, x, bf16, channels_last)
    rows, cols = tile_starts(h, tile, overlap, align), tile_starts(w, tile, overlap, align)
    if len(rows) == 1 and len(cols) == 1:
        return _forward(model, x, bf16, channels_last)
    acc = torch.zeros(2, h, w, dtype=torch.float32, device=x.device)
    norm = torch.zeros(h, w, dtype=torch.float32, device=x.device)
    desc_sum: torch.Tensor | None = None
    area = 0
    for i, (r0, r1) in enumerate(rows):
        wr = blend_window(r1 - r0, overlap, i > 0, i < len(rows) - 1)
        for j, (c0, c1) in enumerate(cols):
            wc = blend_window(c1 - c0, overlap, j > 0, j < len(cols) - 1)
            weight = torch.from_numpy(np.outer(wr, wc)).to(x.device)
            obj, con, desc = _forward(model, x[..., r0:r1, c0:c1], bf16, channels_last)
            acc[0, r0:r1, c0:c1] += weight * obj
            acc[1, r0:r1, c0:c1] += weight * con
            norm[r0:r1, c0:c1] += weight
            n = (r1 - r0) * (c1 - c0)
            desc_sum = desc * n if desc_sum is None else desc_sum + desc * n
            area += n
    acc /= norm
    assert desc_sum is not None
    return acc[0], acc[1], desc_sum / area


def _align(models: list[nn.Module], align: int | None) -> int:
    if align is None:
        return max(int(getattr(m, "total_stride", 32)) for m in models)
    if isinstance(align, bool) or not isinstance(align, int) or align <= 0:
        raise ValueError(f"align: expected a positive int or None, got {align!r}")
    return align


def _predict_prepared(models: list[nn.Module], image: np.ndarray, device: torch.device, tile: int | None,
                      overlap: int, align: int, bf16: bool, scale: float, channels_last: bool) -> dict[str, np.ndarray]:
    _check_image(image)
    h, w = image.shape[:2]
    x = torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(2, 0, 1)[None].float().div_(255.0)
    if scale != 1.0:
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=scale < 1.0).clamp_(0.0, 1.0)
    objs, cons, descs = [], [], []
    with torch.inference_mode():
        for model in models:
            obj, con, desc = _predict_one(model, x, tile, overlap, align, bf16, channels_last)
            objs.append(obj)
            cons.append(con)
            descs.append(desc)
        member_obj = torch.stack(objs)
        member_con = torch.stack(cons)
        if scale != 1.0:
            member_obj = F.interpolate(member_obj[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
            member_con = F.interpolate(member_con[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
        member_obj = member_obj.clamp_(0.0, 1.0)
        member_con = member_con.clamp_(0.0, 1.0)
        member_desc = torch.stack(descs)
        return {
            "object": member_obj.mean(0).cpu().numpy().astype(np.float32),
            "contour": member_con.mean(0).cpu().numpy().astype(np.float32),
            "member_object": member_obj.cpu().numpy().astype(np.float32),
            "descriptor": member_desc.mean(0).cpu().numpy().astype(np.float32),
            "member_descriptor": member_desc.cpu().numpy().astype(np.float32),
        }


def _check_options(tile: int | None, overlap: int, scale: float) -> None:
    if tile is not None and (not isinstance(tile, int) or tile <= 0):
        raise ValueError(f"tile: expected a positive int or None (never tile), got {tile!r}")
    if not isinstance(overlap, int) or overlap < 0:
        raise ValueError(f"overlap: expected an int >= 0, got {overlap!r}")
    if not (isinstance(scale, (int, float)) and 0.0 < scale <= 4.0):
        raise ValueError(f"scale: expected a float in (0, 4], got {scale!r}")


def predict(models: nn.Module | Sequence[nn.Module], image: np.ndarray, *, device: str | torch.device = "auto",
            tile: int | None = 512, overlap: int = 64, bf16: bool = False, scale: float = 1.0,
            align: int | None = None, channels_last: bool = False) -> dict[str, np.ndarray]:
    """Object / contour probabilities of one image from one model or an ensemble.

    Args:
        models: an SAFCN (``forward(x, return_descriptor=True) -> (obj, contour, desc)``)
            or a list of them (an ensemble).
        image: H x W x 3 uint8 RGB.
        device: 'auto' (CUDA if available), 'cpu', 'cuda', ...; models are moved there
            for the call and moved back (device, train flag) afterwards.
        tile: the tile side; an image whose sides are all <= tile + overlap runs in one
            pass, bigger ones are tiled. None: never tile.
        overlap: minimum overlap of neighbouring tiles in pixels (also the blend ramp).
        bf16: autocast to bfloat16 (outputs are float32 either way).
        scale: resize the image by this factor before the network (bilinear, antialiased
            when shrinking) and resize the probabilities back to H x W.
        align: tile origins are multiples of this; None: the largest ``total_stride``
            of the models (32 when they have none), so pooling grids line up.
        channels_last: run the network in channels_last memory format.

    Returns:
        dict with 'object' (H, W) float32 ensemble-mean probability, 'contour' (H, W),
        'member_object' (K, H, W) float32 per-member object probability, 'descriptor'
        (D,) float32 mean of the members' descriptors, 'member_descriptor' (K, D)
        float32 each member's descriptor (member order as given).
    """
    _check_options(tile, overlap, scale)
    members = _as_list(models)
    align = _align(members, align)
    dev = resolve_device(device)
    with _on_device(members, dev, channels_last) as ms:
        return _predict_prepared(ms, image, dev, tile, overlap, align, bf16, float(scale), channels_last)


def predict_dataset(models: nn.Module | Sequence[nn.Module], samples: Sequence[Any], *, device: str | torch.device = "auto",
                    tile: int | None = 512, overlap: int = 64, bf16: bool = False, scale: float = 1.0,
                    align: int | None = None, channels_last: bool = False, progress: bool = True) -> list[dict[str, np.ndarray]]:
    """:func:`predict` for every sample (objects with an ``.image`` H x W x 3 uint8, or
    bare arrays); the models are moved to the device once. Returns one dict per sample,
    in order, each with an extra 'name' when the sample has one."""
    _check_options(tile, overlap, scale)
    members = _as_list(models)
    align = _align(members, align)
    dev = resolve_device(device)
    out: list[dict[str, Any]] = []
    with _on_device(members, dev, channels_last) as ms:
        for s in tqdm(samples, desc="predict", disable=not progress, leave=False):
            image = s if isinstance(s, np.ndarray) else getattr(s, "image", None)
            if image is None:
                raise ValueError(f"samples: expected Sample-like objects with .image or arrays, got {type(s).__name__}")
            res: dict[str, Any] = _predict_prepared(ms, image, dev, tile, overlap, align, bf16, float(scale), channels_last)
            if hasattr(s, "name"):
                res["name"] = s.name
            out.append(res)
    return out
