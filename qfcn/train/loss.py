"""The training loss and whole-image validation scores.

Loss (docs/method.md §3): ``BCE(object) + contour_weight * BCE(contour)``, BCE with logits,
averaged over the pixels where the crop's ``valid`` mask is 1.

>>> z = torch.zeros(1, 1, 2, 2)
>>> round(float(segmentation_loss(z, z, torch.ones(1, 2, 2), torch.zeros(1, 2, 2))), 4)  # 2 ln 2
1.3863
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from qfcn import data, infer, metrics


def segmentation_loss(object_logits: torch.Tensor, contour_logits: torch.Tensor, target_object: torch.Tensor,
                      target_contour: torch.Tensor, valid: torch.Tensor | None = None,
                      contour_weight: float = 1.0) -> torch.Tensor:
    """``BCE(object) + contour_weight * BCE(contour)`` with logits, mean over valid pixels.

    Logits (N,1,H,W) or (N,H,W); targets and ``valid`` (N,H,W) in {0,1}. Computed in float32.
    """
    obj = object_logits.float().reshape(target_object.shape)
    con = contour_logits.float().reshape(target_contour.shape)
    bo = F.binary_cross_entropy_with_logits(obj, target_object.float(), reduction="none")
    bc = F.binary_cross_entropy_with_logits(con, target_contour.float(), reduction="none")
    per_pixel = bo + contour_weight * bc
    if valid is None:
        return per_pixel.mean()
    v = valid.float()
    return (per_pixel * v).sum() / v.sum().clamp_min(1.0)



def validation_scores(model: nn.Module, samples: Sequence[Any], *, contour_width: int = 3,
                      contour_weight: float = 1.0, device: str | torch.device = "auto") -> dict[str, float]:
    """Whole-image fp32 validation: ``{"val_loss", "val_dice"}``, means over images of the loss
    (as in training, every pixel valid) and of :func:`qfcn.metrics.pixel_dice` of
    ``object probability > 0.5`` against the ground-truth objects (1 when both are empty).
    ``samples`` have ``.image`` (H, W, 3) uint8 and ``.instances`` (H, W). The model's train
    flag is restored."""
    samples = list(samples)
    if not samples:
        raise ValueError("validation_scores: samples is empty")
    dev = infer.resolve_device(device)
    was_training = model.training
    model.eval()
    losses, dices = [], []
    try:
        with torch.inference_mode():
            for s in samples:
                obj_t, con_t = data.object_contour_targets(s.instances, contour_width)
                x = data.to_tensor_image(s.image).to(dev)[None]
                obj, con = model(x)
                to = torch.as_tensor(np.asarray(obj_t), dtype=torch.float32, device=dev)[None]
                tc = torch.as_tensor(np.asarray(con_t), dtype=torch.float32, device=dev)[None]
                losses.append(float(segmentation_loss(obj, con, to, tc, None, contour_weight)))
                dices.append(metrics.pixel_dice(obj_t, (obj[0, 0] > 0).cpu().numpy()))
    finally:
        model.train(was_training)
    return {"val_loss": float(np.mean(losses)), "val_dice": float(np.mean(dices))}

