"""How far NTQ retraining moved the free weights, in units of the quantizer's level spacing.

Issue 10 asks whether INQ retraining (docs/method.md §4) acts at all: at ``retrain_lr`` 1e-4 it
moved weights by about 1e-3 where the 5-bit level spacing is about 1e-2, so almost every free
weight was frozen on the level its FLOAT value would have had. This module measures that from
the two saved models of one member, the float model (the NTQ run's ``init``) and the finished
NTQ model; nothing is retrained.

Definitions (per quantized layer; a member's ``overall`` pools its layers' free weights):

- **free** weights: the weights that retraining could move. INQ: those NOT frozen by the
  first partition (the first ``iterative_steps`` fraction). That partition depends on the float
  weights only, so it is rebuilt exactly by the project's own quantizer (attached to a copy of
  the float model with the run's bits, fractions, strategy and seed, one ``step()``). Later
  partitions depend on the retrained weights, which are not saved, so they are not rebuilt:
  the free set is every weight that was free during the first retraining phase, each of which
  stayed free until its own partition froze it. Uniform: every weight (fake quantization acts on
  all of them for all the extra steps).
- **spacing** of a weight: the gap between the two adjacent levels of the grid around its float
  value. INQ (``n1`` from the float weights, as the quantizer fixes it): ``beta - alpha`` for the
  levels ``alpha <= |w| < beta`` (``alpha`` may be 0); at or above the top level, the top gap.
  Uniform: the float weights' scale of the weight's output channel (``max|w| / (2**(b-1)-1)``).
- The finished NTQ model is on its grid (the run ends with ``quantize_all``), so the continuous
  retrained weight is not available and ``|dw| / spacing`` cannot be read off it; movement is
  read at the grid's resolution instead, by each weight's signed level index (uniform: its
  integer code, each model on its own grid since the scale follows ``max|w|``; INQ: the rank of
  its power of two, on the float weights' grid). ``level_change_fraction``: the share of free
  weights whose level differs from the level of their float value; ``mean_levels_moved``: the
  mean of ``|level_ntq - level_float|`` over the free weights. With movements below one cell and
  weights spread evenly within their rounding cells, its expectation is the mean ``|dw|`` over
  the cell width: the spacing for uniform; for INQ the cell of level ``2**e`` is
  ``[3/4, 3/2) * 2**e``, i.e. 3/4 of the level, between 3/4 and 3/2 of the spacing.
  ``median_spacing`` (per layer, weight units) gives the scale. ``frozen_changed``: weights of
  the first partition whose NTQ level is not their float level; 0 when the reconstruction
  matches the run (a check).

>>> import torch
>>> from qfcn.models import SAFCN
>>> _ = torch.manual_seed(0)
>>> net = SAFCN(width=0.125, n_stages=2)
>>> from qfcn.train.ensembles import post_training_quantize
>>> same = retraining_movement(net, post_training_quantize(net, "inq", 5), "inq", 5)
>>> same["overall"]["level_change_fraction"], same["overall"]["frozen_changed"], round(same["overall"]["free_fraction"], 2)
(0.0, 0, 0.5)
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from qfcn import data, quant
from qfcn.quant.uniform import uniform_grid
from qfcn.train.config import TrainConfig
from qfcn.train.ensembles import scheme_bits

__all__ = ["level_spacing", "retraining_movement", "ensemble_movement", "variants_movement"]

_KEYS = ("level_change_fraction", "mean_levels_moved")


def level_spacing(w: torch.Tensor, scheme: str, bits: int, *, n1: int | None = None, per_channel: bool = True,
                  ch_axis: int = 0) -> torch.Tensor:
    """Gap between the adjacent grid levels around each weight of ``w`` (float64, shape of ``w``).

    INQ: ``beta - alpha`` for the levels ``alpha <= |w| < beta`` (top gap at or above the top
    level; ``n1`` defaults to ``quant.inq_n1(w)``). Uniform: the scale of the weight's channel
    (per channel along ``ch_axis``, or per tensor); a channel of zeros has spacing 0.

    >>> level_spacing(torch.tensor([0.1, 0.3, 0.6, 0.9, 3.0]), "inq", 3, n1=0).tolist()
    [0.5, 0.5, 0.5, 0.5, 0.5]
    >>> level_spacing(torch.tensor([0.01, 0.2, 0.3]), "inq", 4, n1=-1).tolist()
    [0.0625, 0.125, 0.25]
    """
    scheme, bits = quant.check_scheme(scheme, bits)
    w = w.detach()
    if scheme == "inq":
        levels = quant.inq_levels(bits, quant.inq_n1(w) if n1 is None else n1)
        idx = torch.searchsorted(levels, w.abs().double().contiguous(), right=True)  # levels <= |w|
        gaps = torch.cat([levels.diff(), levels.diff()[-1:]])  # gaps[i]: levels[i] -> the next (top: last gap)
        return gaps[(idx - 1).clamp(min=0)]
    if scheme == "uniform":
        scale = quant.uniform_scale(w, bits, per_channel, ch_axis).double()
        if per_channel:
            shape = [1] * w.dim()
            shape[ch_axis] = w.shape[ch_axis]
            scale = scale.reshape(shape)
        return scale.expand(w.shape).clone()
    raise ValueError(f"scheme: a float model has no level spacing (expected 'inq' or 'uniform', got {scheme!r})")


def _first_partition(float_model: nn.Module, bits: int, iterative_steps: Sequence[float], strategy: str,
                     seed: int) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """(frozen mask, n1) per layer after the first INQ partition of ``float_model`` (a copy)."""
    q = quant.attach_quantizer(copy.deepcopy(float_model).cpu(), "inq", bits, iterative_steps=iterative_steps,
                               strategy=strategy, seed=seed)
    q.step()
    masks, n1 = q.masks, dict(q.n1)
    q.detach()
    return {k: v.cpu() for k, v in masks.items()}, n1


def _inq_index(q: torch.Tensor, bits: int, n1: int) -> torch.Tensor:
    """Signed level index of INQ values ``q`` (on the grid): 0 for zero, +-1 for +-2**n2 ... +-K for +-2**n1."""
    _, e = torch.frexp(q)  # q = +-2**(e-1)
    n2 = n1 + 1 - 2 ** (bits - 1) // 2
    return torch.where(q == 0, torch.zeros_like(e), torch.sign(q).to(e.dtype) * (e - 1 - n2 + 1))


def _layer(wf: torch.Tensor, wq: torch.Tensor, frozen: torch.Tensor, scheme: str, bits: int, n1: int | None,
           per_channel: bool, ch_axis: int) -> dict[str, Any]:
    """Movement numbers of one layer (sums; means filled in by :func:`_finish`)."""
    wf, wq = wf.detach().float(), wq.detach().float()
    spacing = level_spacing(wf, scheme, bits, n1=n1, per_channel=per_channel, ch_axis=ch_axis)
    if scheme == "inq":  # one grid: n1 is fixed from the float weights
        kf = _inq_index(quant.inq_quantize(wf, bits, n1), bits, n1)
        kq = _inq_index(quant.inq_quantize(wq, bits, n1), bits, n1)
    else:  # integer codes, each on its own grid (the scale follows max|w| during retraining)
        kf = uniform_grid(wf, bits, quant.uniform_scale(wf, bits, per_channel, ch_axis), per_channel, ch_axis,
                          ste=False)[0]
        kq = uniform_grid(wq, bits, quant.uniform_scale(wq, bits, per_channel, ch_axis), per_channel, ch_axis,
                          ste=False)[0]
    moved = (kq - kf).abs().double()
    changed = moved > 0
    free = ~frozen & (spacing > 0)
    return dict(n_weights=wf.numel(), n_free=int(free.sum()), n_changed=int((changed & free).sum()),
                sum_moved=float(moved[free].sum()), frozen_changed=int((changed & frozen).sum()),
                median_spacing=float(spacing[free].median()) if bool(free.any()) else None)


def _finish(d: dict[str, Any]) -> dict[str, Any]:
    n = d["n_free"]
    return dict(n_weights=d["n_weights"], n_free=n, free_fraction=n / max(d["n_weights"], 1),
                level_change_fraction=d["n_changed"] / n if n else None,
                mean_levels_moved=d["sum_moved"] / n if n else None, frozen_changed=d["frozen_changed"],
                **({"median_spacing": d["median_spacing"]} if "median_spacing" in d else {}))


def retraining_movement(float_model: nn.Module, ntq_model: nn.Module, scheme: str, bits: int, *,
                        iterative_steps: Sequence[float] = (0.5, 0.75, 0.875, 1.0), strategy: str = "pruning",
                        seed: int = 0, per_channel: bool = True) -> dict[str, Any]:
    """Movement of the free weights of one NTQ member from its float model (module docstring).

    ``scheme``/``bits``/``iterative_steps``/``strategy``/``seed``/``per_channel``: the NTQ run's
    (``seed``: the member's training seed, used by strategy 'random' only). Returns
    ``{"layers": {name: {...}}, "overall": {...}}`` with ``n_weights, n_free, free_fraction,
    level_change_fraction, mean_levels_moved, frozen_changed`` (layers also
    ``median_spacing``, in weight units). A layer without free weights has ``None`` means.
    """
    scheme, bits = quant.check_scheme(scheme, bits)
    if scheme == "float":
        raise ValueError("retraining_movement: expected scheme 'inq' or 'uniform' with bits in 2..8, got a float run")
    fl, nt = quant.quantized_layers(float_model), dict(quant.quantized_layers(ntq_model))
    if [n for n, _ in fl] != list(nt) or any(m.weight.shape != nt[n].weight.shape for n, m in fl):
        raise ValueError("retraining_movement: ntq_model's conv layers differ from float_model's (not derived from it)")
    masks, n1 = (_first_partition(float_model, bits, iterative_steps, strategy, seed) if scheme == "inq"
                 else ({}, {}))
    layers, total = {}, dict(n_weights=0, n_free=0, n_changed=0, sum_moved=0.0, frozen_changed=0)
    for name, m in fl:
        wf = m.weight.detach().cpu()
        frozen = masks.get(name, torch.zeros_like(wf, dtype=torch.bool))
        raw = _layer(wf, nt[name].weight.detach().cpu(), frozen, scheme, bits, n1.get(name), per_channel,
                     quant.layer_ch_axis(m))
        layers[name] = _finish(raw)
        for k in total:
            total[k] += raw[k]
    return {"layers": layers, "overall": _finish(total)}


def ensemble_movement(float_models: Sequence[nn.Module], ntq_models: Sequence[nn.Module],
                      cfg: TrainConfig) -> dict[str, Any]:
    """:func:`retraining_movement` of every member ``m`` (seed ``data.member_seed(cfg.seed, m)``, as
    :func:`qfcn.train.train_ensemble` trains them) of an ensemble derived with ``cfg`` (the NTQ
    config: scheme, bits, iterative_steps, strategy, per_channel).

    Returns ``{"scheme", "bits", "retrain_lr", "retrain_steps", "members": [overall dict per
    member], "overall": {level_change_fraction, mean_levels_moved (means over members),
    free_fraction, frozen_changed (sum)}}`` -- a JSON-able record.
    """
    if len(float_models) != len(ntq_models) or not float_models:
        raise ValueError(f"ensemble_movement: expected as many NTQ as float members (>= 1), got "
                         f"{len(ntq_models)} and {len(float_models)}")
    members = [retraining_movement(f, q, cfg.scheme, cfg.bits, iterative_steps=cfg.iterative_steps,
                                   strategy=cfg.strategy, seed=data.member_seed(cfg.seed, m),
                                   per_channel=cfg.per_channel)["overall"]
               for m, (f, q) in enumerate(zip(float_models, ntq_models))]
    overall = {k: (sum(d[k] for d in members) / len(members) if all(d[k] is not None for d in members) else None)
               for k in (*_KEYS, "free_fraction")}
    overall["frozen_changed"] = sum(d["frozen_changed"] for d in members)
    return dict(scheme=cfg.scheme, bits=cfg.bits, retrain_lr=cfg.retrain_lr, retrain_steps=cfg.retrain_steps,
                members=members, overall=overall)


def variants_movement(ensembles: dict[str, Sequence[nn.Module]], cfg: TrainConfig,
                      scheme: str) -> dict[str, dict[str, Any]]:
    """:func:`ensemble_movement` of every retrained quantized ensemble of notebook 04 against
    ``ensembles['float']``: 'ntq', the other scheme ('inq' / 'uniform') and every 'ntq<b>'
    (:func:`qfcn.train.ensembles.derive_extra_bits`), each with its grid from
    :func:`~qfcn.train.ensembles.scheme_bits` (``cfg``: the run's NTQ config, its float config
    for a float run; ``scheme``: notebook 04's ``ntq_scheme``). Float variants and PTQ (not
    retrained) are skipped; a float run without extra bit-widths gives ``{}``.
    """
    out = {}
    for name, models in ensembles.items():
        if name in ("ntq", "inq", "uniform") or (name.startswith("ntq") and name[3:].isdigit()):
            s, b = scheme_bits(name, scheme, cfg.bits)
            if s != "float":
                run_cfg = dataclasses.replace(cfg, scheme=s, bits=b, control_steps=0)
                out[name] = ensemble_movement(ensembles["float"], models, run_cfg)
    return out

