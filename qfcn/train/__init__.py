"""Training of SA FCNs: a float phase, then weight quantization with retraining (NTQ).

The layer above data, models and quant (docs/method.md §3, §4). Modules: :mod:`~qfcn.train.config`
(TrainConfig), :mod:`~qfcn.train.loop` (one run: :func:`train_model`), :mod:`~qfcn.train.phases`,
:mod:`~qfcn.train.loss`, :mod:`~qfcn.train.batches`, :mod:`~qfcn.train.checkpoints` (run files),
:mod:`~qfcn.train.ensembles` (ensembles, PTQ, BN re-estimation, notebook 04's variants).

One run = one ``out_dir``. Phases, in order:

1. ``float``: ``cfg.float_steps`` steps from a fresh network (seeded by ``cfg.seed``), or
   skipped when ``init`` is a finished float model (so that INQ, uniform, a float control
   and post-training quantization can all start from the SAME float weights). With
   ``warm_start=True`` the float phase runs from ``init``'s weights instead.
2. ``control`` (scheme 'float' only, ``cfg.control_steps > 0``): extra float steps at
   ``retrain_lr``, the control for a quantized run's retraining
   (:func:`float_control_config` builds it from a quantized run's config).
3. Quantization (``cfg.scheme`` != 'float'): a :mod:`qfcn.quant` controller is attached;
   phase ``<scheme>_<i>`` starts with ``quantizer.step()`` and then retrains. INQ
   retrains ``retrain_steps`` after each partition except the last; uniform has a
   single step followed by ``retrain_steps * (len(iterative_steps) - 1)`` steps, so both
   schemes get the same extra steps (:func:`extra_steps`). Finally every weight is put
   on the grid (``quantize_all``) and the controller is detached: the result is a
   plain :class:`qfcn.models.SAFCN`.

Loss: ``BCE(object) + contour_weight * BCE(contour)``, BCE with logits, averaged over
the pixels where the crop's ``valid`` mask is 1. Learning rates follow ``cfg.schedule``
within each phase (every retraining phase restarts at ``retrain_lr`` with a fresh
optimizer, as INQ does).

Files in ``out_dir``: ``config.json`` (the config and its hash), ``checkpoint.pt``
(atomic, every ``ckpt_every`` steps and at each phase end; a rerun resumes from it),
``float.pt`` (the float model at the end of the float phase), ``final.pt`` (the final
model), ``packed.qfcn`` (n-bit codes, quantized runs), ``history.json`` and ``done.json``
(``params_hash``: a rerun with the same config returns at once; a different config in
the same folder is an error). Every ``.pt`` loads with ``torch.load(weights_only=True)``.

Determinism: on CPU the same config and data give the same weights and history, in one
go or interrupted and resumed: crops come from ``(seed, epoch, index)``, the batch order
of an epoch from ``(seed, epoch)``, the network from ``torch.manual_seed(seed)`` inside
a forked RNG, and the RNG state is checkpointed.

Example (the ablation pattern: one float model, then INQ, a float control and
post-training quantization with batch-norm re-estimation; :func:`derive_variants` does this
for a whole ensemble)::

    from qfcn import data, train
    ds = data.load_glas("data/glas")
    fit, val = data.split_validation(ds.train, 0.15, seed=0)
    cfg = train.TrainConfig(float_steps=2000, scheme="inq", bits=5, retrain_steps=300)
    base = train.train_model(fit, train.TrainConfig(float_steps=2000), out_dir="runs/float",
                             val_samples=val)
    inq = train.train_model(fit, cfg, out_dir="runs/inq5", init=base.float_path)
    ctl = train.train_model(fit, train.float_control_config(cfg), out_dir="runs/ctl",
                            init=base.float_path)
    ptq = train.recalibrate_bn(train.post_training_quantize(base.model, "inq", 5), fit, cfg)

A run that runs here:

>>> TrainConfig(scheme="inq", bits=32).scheme  # 32 bits means float
'float'
"""

from qfcn.train.checkpoints import TrainResult, load_model
from qfcn.train.config import TrainConfig, extra_steps, float_control_config, lr_at
from qfcn.train import diagnostics
from qfcn.train.ensembles import (VARIANTS, check_extra_bits, derive_extra_bits, derive_variants, pack_variants,
                                  post_training_quantize, recalibrate_bn, scheme_bits, size_table, train_ensemble,
                                  variant_steps)
from qfcn.train.loop import train_model
from qfcn.train.loss import segmentation_loss, validation_scores
from qfcn.train.phases import phase_starts

__all__ = [
    "VARIANTS",
    "TrainConfig",
    "TrainResult",
    "check_extra_bits",
    "derive_extra_bits",
    "derive_variants",
    "diagnostics",
    "extra_steps",
    "float_control_config",
    "load_model",
    "lr_at",
    "pack_variants",
    "phase_starts",
    "post_training_quantize",
    "recalibrate_bn",
    "scheme_bits",
    "segmentation_loss",
    "size_table",
    "train_ensemble",
    "train_model",
    "validation_scores",
    "variant_steps",
]
