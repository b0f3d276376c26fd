"""Ensembles, post-training quantization, batch-norm re-estimation and notebook 04's variants.

The final ensemble is N float members trained on the same images with seeds
``data.member_seed(seed, m)``; the NTQ networks and every control the ablations need are derived
from the SAME float members (docs/method.md §7): :data:`VARIANTS` names the controls,
:func:`derive_variants` trains / quantizes them, :func:`derive_extra_bits` adds NTQ at further
bit-widths (``ntq<b>``, each with its step-matched ``float_control<b>``), :func:`variant_steps`
records how many gradient steps each variant had (the float control is step-matched to its NTQ),
:func:`scheme_bits` says which grid each variant's weights lie on, :func:`pack_variants` and
:func:`size_table` measure packed sizes.

>>> scheme_bits("float_control", "inq", 5), scheme_bits("ptq_bn", "inq", 5), scheme_bits("uniform", "inq", 5)
(('float', 32), ('inq', 5), ('uniform', 5))
>>> scheme_bits("ntq", "inq", 32)  # 32 bits: a float run
('float', 32)
>>> scheme_bits("ntq7", "inq", 32), scheme_bits("float_control7", "inq", 5)  # extra bit-widths
(('inq', 7), ('float', 32))
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import default_collate

from qfcn import data, infer, quant
from qfcn.train.checkpoints import TrainResult
from qfcn.train.config import TrainConfig, extra_steps, float_control_config
from qfcn.train.loop import train_model

#: controls derived from the float members of notebook 04 (its ``variants`` parameter).
VARIANTS = ("float_control", "other_scheme", "ptq", "ptq_bn")
#: names of the ensembles :func:`derive_extra_bits` adds for bit-width ``<b>``.
_EXTRA = re.compile(r"(ntq|float_control)([0-9]+)")


def train_ensemble(samples: Sequence[Any], cfg: TrainConfig, *, k: int, out_dir: str | os.PathLike,
                   val_samples: Sequence[Any] | None = None, bootstrap: bool = True,
                   init: Sequence[str | os.PathLike | nn.Module] | str | os.PathLike | None = None,
                   warm_start: bool = True, progress: bool = True) -> list[TrainResult]:
    """Train ``k`` members one after another in ``out_dir/member_<m>``.

    Member ``m`` trains on :func:`bootstrap_resample` ``(samples, cfg.seed, m)`` (or all
    samples when ``bootstrap`` is False) with seed :func:`member_seed` ``(cfg.seed, m)``.
    ``init``: one model file per member (previous-stage checkpoints, or a single path for
    all) to start from; ``warm_start=True`` (default) runs the float phase from them, False
    skips it (e.g. quantizing a float ensemble). Only one member's optimizer exists at a time.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k: expected an int >= 1, got {k!r}")
    if init is None or isinstance(init, (str, os.PathLike, nn.Module)):
        inits = [init] * k
    else:
        inits = list(init)
        if len(inits) != k:
            raise ValueError(f"init: expected {k} model files (one per member), got {len(inits)}")
    samples = list(samples)
    results = []
    for m in range(k):
        member_samples = data.bootstrap_resample(samples, cfg.seed, m) if bootstrap else samples
        member_cfg = dataclasses.replace(cfg, seed=data.member_seed(cfg.seed, m))
        results.append(train_model(member_samples, member_cfg, out_dir=Path(out_dir) / f"member_{m}",
                                   val_samples=val_samples, init=inits[m],
                                   warm_start=warm_start and inits[m] is not None, progress=progress))
    return results


def recalibrate_bn(model: nn.Module, samples: Sequence[Any], cfg: TrainConfig, n_batches: int = 8) -> nn.Module:
    """Re-estimate every BatchNorm's running mean/var on ``n_batches`` batches of training
    crops (no augmentation, seed ``cfg.seed``), as a cumulative average; weights untouched.
    In place; returns the model in eval mode on CPU."""
    if isinstance(n_batches, bool) or not isinstance(n_batches, int) or n_batches < 1:
        raise ValueError(f"n_batches: expected an int >= 1, got {n_batches!r}")
    dev = infer.resolve_device(cfg.device)
    ds = data.GlasCrops(list(samples), crop_size=cfg.crop_size, n_crops=n_batches * cfg.batch_size, seed=cfg.seed,
                        augment=False, contour_width=cfg.contour_width)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    model.to(dev).eval()
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        with torch.no_grad():
            for b in range(n_batches):
                batch = default_collate([ds[i] for i in range(b * cfg.batch_size, (b + 1) * cfg.batch_size)])
                model(batch["image"].to(dev))
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        model.to("cpu").eval()
    return model


def post_training_quantize(model: nn.Module, scheme: str, bits: int, *, per_channel: bool = True) -> nn.Module:
    """A copy of ``model`` with every conv weight on the ``scheme``/``bits`` grid, no
    retraining (attach, quantize_all, detach). Eval mode; the input is untouched."""
    scheme, bits = quant.check_scheme(scheme, bits)
    out = copy.deepcopy(model)
    q = quant.attach_quantizer(out, scheme, bits, per_channel=per_channel)
    q.quantize_all()
    q.detach()
    return out.eval()


def _quantized(scheme: str, bits: int) -> bool:
    return bits != 32 and scheme != "float"


def scheme_bits(name: str, ntq_scheme: str, ntq_bits: int) -> tuple[str, int]:
    """(scheme, bits) of the weights of variant ``name`` in a run with NTQ ``ntq_scheme``/``ntq_bits``.

    'float' and 'float_control' are float (32); 'ntq', 'ptq', 'ptq_bn' and 'single' are on
    the NTQ grid (float when the run is not quantized); 'ntq<b>' is ``ntq_scheme`` at b bits
    and 'float_control<b>' float (:func:`derive_extra_bits`); any other name is the other
    scheme (e.g. 'uniform') at ``ntq_bits``.
    """
    if name in ("float", "float_control"):
        return "float", 32
    extra = _EXTRA.fullmatch(name)
    if extra:  # derive_extra_bits: 'ntq<b>' on the NTQ scheme at b bits, 'float_control<b>' float
        return ("float", 32) if extra[1] == "float_control" else quant.check_scheme(ntq_scheme, int(extra[2]))
    if name in ("ntq", "ptq", "ptq_bn", "single"):
        return (ntq_scheme, ntq_bits) if _quantized(ntq_scheme, ntq_bits) else ("float", 32)
    return name, ntq_bits


def derive_variants(float_members: Sequence[TrainResult], train_set: Sequence[Any], ntq_cfg: TrainConfig, *,
                    n_members: int, variants: Sequence[str], out_dir: str | os.PathLike,
                    progress: bool = True) -> dict[str, list[nn.Module]]:
    """Every ensemble of notebook 04, derived from the same finished float members.

    Keys, in order: 'float' (the members' models), then for a quantized ``ntq_cfg``: 'ntq'
    (``ntq_cfg`` from the float weights, in ``out_dir/ntq``) and the requested ``variants``:
    'float_control' (:func:`float_control_config`: the step-matched float comparison of 'ntq',
    i.e. the same ``extra_steps(ntq_cfg)`` gradient steps at ``retrain_lr`` from the same float
    weights, without quantization; :func:`variant_steps` records this), the other
    scheme under its own name ('uniform' for INQ runs, 'inq' otherwise), 'ptq'
    (:func:`post_training_quantize`, no retraining) and 'ptq_bn' (PTQ then
    :func:`recalibrate_bn` with ``ntq_cfg``'s crops and seed); last 'single': the main
    ensemble's first member. Trained variants go to ``out_dir/<name>/member_<m>`` (no
    bootstrap; a rerun reuses finished members).
    """
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise ValueError(f"variants: unknown {unknown}; expected a subset of {list(VARIANTS)}")
    out_dir = Path(out_dir)
    ensembles: dict[str, list[nn.Module]] = {"float": [r.model for r in float_members]}
    quantized = ntq_cfg.scheme != "float"

    def derived(cfg: TrainConfig, name: str) -> list[nn.Module]:
        return _derived(float_members, train_set, cfg, n_members, out_dir / name, progress)

    if quantized:
        ensembles["ntq"] = derived(ntq_cfg, "ntq")
        if "float_control" in variants:
            ensembles["float_control"] = derived(float_control_config(ntq_cfg), "float_control")
        if "other_scheme" in variants:
            other = "uniform" if ntq_cfg.scheme == "inq" else "inq"
            ensembles[other] = derived(dataclasses.replace(ntq_cfg, scheme=other), other)
        if "ptq" in variants or "ptq_bn" in variants:
            ptq = [post_training_quantize(m, ntq_cfg.scheme, ntq_cfg.bits) for m in ensembles["float"]]
            if "ptq" in variants:
                ensembles["ptq"] = ptq
            if "ptq_bn" in variants:
                ensembles["ptq_bn"] = [recalibrate_bn(copy.deepcopy(q), train_set, ntq_cfg) for q in ptq]
    ensembles["single"] = ensembles["ntq" if quantized else "float"][:1]
    return ensembles


def _derived(float_members: Sequence[TrainResult], train_set: Sequence[Any], cfg: TrainConfig, n_members: int,
             out_dir: Path, progress: bool) -> list[nn.Module]:
    """``cfg`` trained from each float member's final weights (no float phase, no bootstrap)."""
    rs = train_ensemble(train_set, cfg, k=n_members, out_dir=out_dir, bootstrap=False,
                        init=[str(r.final_path) for r in float_members], warm_start=False, progress=progress)
    return [r.model for r in rs]


def check_extra_bits(scheme: str, bits: Sequence[int]) -> list[int]:
    """Notebook 04's ``extra_ntq_bits`` for NTQ scheme ``scheme``: a list of distinct quantized
    bit-widths (:func:`qfcn.quant.check_scheme`); ValueError naming the parameter otherwise.

    >>> check_extra_bits("inq", [7, 6]), check_extra_bits("float", [])
    ([7, 6], [])
    """
    if not isinstance(bits, (list, tuple)):
        raise ValueError(f"extra_ntq_bits: expected a list of bit-widths, got {bits!r}")
    bits = list(bits)
    if len(set(bits)) != len(bits):
        raise ValueError(f"extra_ntq_bits: expected distinct bit-widths, got {bits}")
    for b in bits:
        try:
            pair = quant.check_scheme(scheme, b)
        except ValueError as exc:
            raise ValueError(f"extra_ntq_bits={bits}: {exc}") from None
        if pair[0] == "float":
            raise ValueError(f"extra_ntq_bits={bits}: NTQ at {b} bits needs ntq_scheme 'inq' or 'uniform' and bits "
                             f"in 2..8, got ntq_scheme {scheme!r}")
    return bits


def derive_extra_bits(float_members: Sequence[TrainResult], train_set: Sequence[Any], cfg: TrainConfig, *,
                      scheme: str, bits: Sequence[int], n_members: int, out_dir: str | os.PathLike,
                      progress: bool = True) -> dict[str, list[nn.Module]]:
    """NTQ at further bit-widths from the same float members, each with its step-matched float control.

    For each ``b`` of ``bits`` (:func:`check_extra_bits`), in order: 'ntq<b>' (``cfg`` with
    ``scheme``/``b``, trained like 'ntq' in :func:`derive_variants`, in ``out_dir/ntq<b>``; the
    main 'ntq' folder when ``(scheme, b)`` is ``cfg``'s own) and 'float_control<b>'
    (:func:`float_control_config` of it: the same extra steps, float). ``cfg`` is the run's NTQ
    or float config; only its scheme/bits are replaced, so a float run (SA) gets SA+NTQ-b from
    its own float members. The float control's extra steps do not depend on the bit-width, so
    every 'float_control<b>' is the same training as 'float_control' and shares its folder
    ``out_dir/float_control`` (trained once, reused). Empty ``bits``: ``{}``.
    """
    bits = check_extra_bits(scheme, bits)
    out_dir = Path(out_dir)
    out: dict[str, list[nn.Module]] = {}
    for b in bits:
        qcfg = dataclasses.replace(cfg, scheme=scheme, bits=b, control_steps=0)
        own = (cfg.scheme, cfg.bits) == (qcfg.scheme, qcfg.bits)
        out[f"ntq{b}"] = _derived(float_members, train_set, qcfg, n_members, out_dir / ("ntq" if own else f"ntq{b}"),
                                  progress)
        out[f"float_control{b}"] = _derived(float_members, train_set, float_control_config(qcfg), n_members,
                                            out_dir / "float_control", progress)
    return out


def variant_steps(names: Sequence[str], cfg: TrainConfig, scheme: str) -> dict[str, dict[str, Any]]:
    """Gradient steps of each variant's members, for the record (docs/method.md §7).

    ``cfg``: the run's NTQ config (its float config for a float run); ``scheme``: the scheme of
    'ntq<b>'. Per name: ``float_steps`` (the shared float phase), ``extra_steps`` after it (at
    ``retrain_lr``; 0 for 'float', 'ptq', 'ptq_bn', whose batch-norm re-estimation takes no
    gradient step), and ``step_matched_to``: for 'float_control' / 'float_control<b>' the NTQ
    ensemble whose extra steps it repeats in float ('ntq' / 'ntq<b>'), else None.

    >>> cfg = TrainConfig(scheme="inq", bits=5, retrain_steps=10)
    >>> variant_steps(["float", "ntq", "float_control", "ntq7", "ptq"], cfg, "inq")["float_control"]
    {'float_steps': 200, 'extra_steps': 30, 'step_matched_to': 'ntq'}
    """
    main = "ntq" if cfg.scheme != "float" else "float"
    out = {}
    for name in names:
        extra = _EXTRA.fullmatch(name)
        base = name if name != "single" else main
        if extra:
            n = extra_steps(dataclasses.replace(cfg, scheme=scheme, bits=int(extra[2]), control_steps=0))
            matched = f"ntq{extra[2]}" if extra[1] == "float_control" else None
        else:
            n = 0 if base in ("float", "ptq", "ptq_bn") else extra_steps(cfg)
            matched = "ntq" if base == "float_control" else None
        out[name] = dict(float_steps=cfg.float_steps, extra_steps=n, step_matched_to=matched)
    return out


def pack_variants(ensembles: dict[str, list[nn.Module]], out_dir: str | os.PathLike, ntq_scheme: str,
                  ntq_bits: int) -> dict[str, dict[str, Any]]:
    """Pack the first member of every quantized variant to ``out_dir/<name>.qfcn``; returns
    ``{name: quant.save_packed report}`` (bytes measured on disk; float variants skipped)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for name, models in ensembles.items():
        scheme, bits = scheme_bits(name, ntq_scheme, ntq_bits)
        if bits == 32:
            continue
        sizes[name] = quant.save_packed(models[0], out_dir / f"{name}.qfcn", scheme=scheme, bits=bits)
    return sizes


def size_table(model: nn.Module, size_bits: Sequence[int], out_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Measured sizes of ``model`` post-training quantized to INQ at each of ``size_bits``.

    Writes ``out_dir/inq<b>.qfcn``; one row per bit-width: ``bits``, ``weight_bytes`` (packed
    codes), ``file_bytes`` (the whole packed file), ``float32_weight_bytes``,
    ``float32_checkpoint_bytes`` and ``weight_ratio`` = float32 / packed weight bytes.

    >>> import tempfile
    >>> from qfcn.models import SAFCN
    >>> rows = size_table(SAFCN(width=0.125, n_stages=3), [8, 4], tempfile.mkdtemp())
    >>> [(r["bits"], r["weight_ratio"] > 3.5) for r in rows]
    [(8, True), (4, True)]
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for b in size_bits:
        rep = quant.save_packed(post_training_quantize(model, "inq", b), out_dir / f"inq{b}.qfcn", scheme="inq", bits=b)
        rows.append(dict(bits=b, weight_bytes=rep["weight_bytes"], file_bytes=rep["file_bytes"],
                         float32_weight_bytes=rep["float32_weight_bytes"],
                         float32_checkpoint_bytes=rep["float32_checkpoint_bytes"]))
    for row in rows:
        row["weight_ratio"] = row["float32_weight_bytes"] / row["weight_bytes"]
    return rows
