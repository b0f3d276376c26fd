"""Training of SA FCNs: a float phase, then weight quantization with retraining (NTQ).

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
post-training quantization with batch-norm re-estimation)::

    from qfcn import data, train
    ds = data.load_glas("data/glas")
    fit, val = train.split_validation(ds.train, 0.15, seed=0)
    cfg = train.TrainConfig(float_steps=2000, scheme="inq", bits=5, retrain_steps=300)
    base = train.train_model(fit, train.TrainConfig(float_steps=2000), out_dir="runs/float",
                             val_samples=val)
    inq = train.train_model(fit, cfg, out_dir="runs/inq5", init=base.float_path)
    ctl = train.train_model(fit, train.float_control_config(cfg), out_dir="runs/ctl",
                            init=base.float_path)
    ptq = train.recalibrate_bn(train.post_training_quantize(base.model, "inq", 5), fit, cfg)
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from qfcn import infer, runs
from qfcn.io import atomic_write_bytes, atomic_write_json, param_hash
from qfcn.splits import _is_test, bootstrap_resample, member_seed, split_validation  # noqa: F401 (re-export)
from qfcn.trainconfig import TrainConfig, extra_steps, float_control_config, lr_at  # noqa: F401 (re-export)

__all__ = [
    "TrainConfig",
    "TrainResult",
    "bootstrap_resample",
    "evaluate",
    "extra_steps",
    "float_control_config",
    "load_model",
    "lr_at",
    "member_seed",
    "post_training_quantize",
    "recalibrate_bn",
    "segmentation_loss",
    "split_validation",
    "train_ensemble",
    "train_model",
]

FORMAT = "qfcn.train/1"


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


# ------------------------------------------------------------------ files
def _atomic_save(obj: Any, path: Path) -> Path:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in module.state_dict().items()}


def _state_digest(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _model_record(model: nn.Module, cfg: TrainConfig, phase: str, history: list[dict[str, Any]]) -> dict[str, Any]:
    return {"format": FORMAT, "model_config": dict(model.config), "state_dict": _cpu_state(model),
            "train_config": cfg.to_dict(), "scheme": cfg.scheme, "bits": cfg.bits, "phase": phase,
            "history": history}


def _read_model_file(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """The dict of a ``float.pt`` / ``final.pt`` (weights_only load), with errors naming ``what``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: {path} does not exist (expected float.pt / final.pt of a finished run)")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(obj, dict) or "state_dict" not in obj or "model_config" not in obj:
        raise ValueError(f"{what}: {path} is not a model file written by qfcn.train (float.pt / final.pt)")
    return obj


def load_model(path: str | os.PathLike) -> nn.Module:
    """An SAFCN in eval mode on CPU from ``final.pt`` / ``float.pt`` (weights_only load)."""
    from qfcn.models import SAFCN

    obj = _read_model_file(path, "load_model")
    model = SAFCN.from_config(obj["model_config"])
    model.load_state_dict(obj["state_dict"])
    return model.eval()


@dataclass
class TrainResult:
    """A finished run: the model (eval mode, CPU), its history and its files."""

    model: nn.Module
    history: list[dict[str, Any]]
    out_dir: Path
    final_path: Path
    float_path: Path | None
    packed_path: Path | None
    config: TrainConfig


def _result(out_dir: Path, cfg: TrainConfig) -> TrainResult:
    final = out_dir / "final.pt"
    obj = torch.load(final, map_location="cpu", weights_only=True)
    packed = out_dir / "packed.qfcn"
    float_path = out_dir / "float.pt"
    return TrainResult(model=load_model(final), history=list(obj["history"]), out_dir=out_dir, final_path=final,
                       float_path=float_path if float_path.is_file() else None,
                       packed_path=packed if packed.is_file() else None, config=cfg)


# ------------------------------------------------------------------ evaluation
def evaluate(model: nn.Module, samples: Sequence[Any], *, contour_width: int = 3, contour_weight: float = 1.0,
             device: str | torch.device = "auto") -> dict[str, float]:
    """Whole-image fp32 validation: mean over images of the loss (as in training, every
    pixel valid) and of the pixel Dice of ``object probability > 0.5`` (1 when both the
    prediction and the ground truth are empty). The model's train flag is restored."""
    from qfcn import data

    samples = list(samples)
    if not samples:
        raise ValueError("evaluate: samples is empty")
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
                pred = obj[:, 0] > 0
                inter = float((pred & (to > 0.5)).sum())
                denom = float(pred.sum() + (to > 0.5).sum())
                dices.append(1.0 if denom == 0 else 2.0 * inter / denom)
    finally:
        model.train(was_training)
    return {"val_loss": float(np.mean(losses)), "val_dice": float(np.mean(dices))}


# ------------------------------------------------------------------ the run
@dataclass
class _Phase:
    name: str
    steps: int
    lr: float
    quant_step: bool  # call quantizer.step() when the phase starts


def _plan(cfg: TrainConfig, skip_float: bool) -> list[_Phase]:
    phases = [] if skip_float else [_Phase("float", cfg.float_steps, cfg.lr, False)]
    if cfg.scheme == "float":
        if cfg.control_steps:
            phases.append(_Phase("control", cfg.control_steps, cfg.retrain_lr, False))
        return phases
    if cfg.scheme == "inq":
        n = len(cfg.iterative_steps)
        segments = [cfg.retrain_steps] * (n - 1) + [0]
    else:  # one step (fake quant on), then all the extra steps
        segments = [extra_steps(cfg)]
    phases += [_Phase(f"{cfg.scheme}_{i + 1}", s, cfg.retrain_lr, True) for i, s in enumerate(segments)]
    return phases


def _epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, 2]).generate_state(1)[0])


class _EpochItems(torch.utils.data.Dataset):
    """``ds`` indexed by ``(epoch, i)``, so one (persistent-worker) loader spans epochs."""

    def __init__(self, ds: Any) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, i = key
        self.ds.set_epoch(epoch)
        return self.ds[i]


class _Batches:
    """Batches of step ``s`` onwards: epoch ``s // per_epoch``, order from ``(seed, epoch)``."""

    def __init__(self, dataset: Any, cfg: TrainConfig) -> None:
        self.ds, self.cfg = dataset, cfg
        self.n = len(dataset)
        self.per_epoch = self.n // cfg.batch_size
        if self.per_epoch == 0:
            raise ValueError(f"batch_size={cfg.batch_size} is larger than the {self.n} crops of an epoch (n_crops)")

    def keys(self, step: int) -> Iterator[list[tuple[int, int]]]:
        """``[(epoch, index), ...]`` of every batch from ``step`` on (endless)."""
        epoch, first = divmod(step, self.per_epoch)
        bs = self.cfg.batch_size
        while True:
            perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(_epoch_seed(self.cfg.seed, epoch)))
            for b in range(first, self.per_epoch):
                yield [(epoch, i) for i in perm[b * bs:(b + 1) * bs].tolist()]
            epoch, first = epoch + 1, 0

    def from_step(self, step: int) -> Iterator[dict[str, torch.Tensor]]:
        from torch.utils.data import DataLoader

        workers = self.cfg.num_workers
        yield from DataLoader(_EpochItems(self.ds), batch_sampler=self.keys(step), num_workers=workers,
                              persistent_workers=False, pin_memory=False,
                              prefetch_factor=4 if workers else None)


def _n_crops(cfg: TrainConfig, n_samples: int) -> int:
    """Crops per epoch: cfg.n_crops, or one per sample rounded up to whole batches."""
    if cfg.n_crops is not None:
        return cfg.n_crops
    return -(-n_samples // cfg.batch_size) * cfg.batch_size


def _data_digest(samples: Sequence[Any] | None) -> str | None:
    if samples is None:
        return None
    h = hashlib.sha256()
    for s in samples:
        h.update(f"{getattr(s, 'name', '?')}|{getattr(s, 'split', '?')}|".encode())
        h.update(hashlib.sha256(np.ascontiguousarray(s.image).tobytes()).digest())
        h.update(hashlib.sha256(np.ascontiguousarray(s.instances).tobytes()).digest())
    return h.hexdigest()[:16]


def _load_init(init: str | os.PathLike | nn.Module | None) -> tuple[dict | None, dict | None, str | None]:
    """(state_dict, model_config, digest) of an init model given as a path or a module."""
    if init is None:
        return None, None, None
    if isinstance(init, nn.Module):
        if not hasattr(init, "config"):
            raise ValueError("init: expected an SAFCN (with .config) or a path to float.pt / final.pt")
        state, config = _cpu_state(init), dict(init.config)
    else:
        obj = _read_model_file(init, "init")
        state, config = obj["state_dict"], dict(obj["model_config"])
    return state, config, _state_digest(state)


def _check_out_dir(out_dir: Path, params_hash: str) -> None:
    for name in ("done.json", "config.json"):
        path = out_dir / name
        if path.is_file():
            try:
                got = json.loads(path.read_text()).get("params_hash")
            except json.JSONDecodeError:
                continue
            if got != params_hash:
                raise ValueError(
                    f"{out_dir} holds a run with another configuration (params_hash {got} in {name}, "
                    f"this run has {params_hash}): use a fresh out_dir or delete the folder")


class _Run:
    """The mutable state of one training run (model, optimizer, quantizer, counters)."""

    def __init__(self, samples: list[Any], cfg: TrainConfig, out_dir: Path, val_samples: list[Any] | None,
                 plan: list[_Phase], params_hash: str, progress: bool, callback: Callable[[dict, nn.Module], None] | None) -> None:
        from qfcn import data

        self.cfg, self.out_dir, self.val, self.plan = cfg, out_dir, val_samples, plan
        self.params_hash, self.progress, self.callback = params_hash, progress, callback
        self.dev = infer.resolve_device(cfg.device)
        ds = data.GlasCrops(samples, crop_size=cfg.crop_size, n_crops=_n_crops(cfg, len(samples)), seed=cfg.seed,
                            augment=cfg.augment, contour_width=cfg.contour_width)
        self.batches = _Batches(ds, cfg)
        self.model: nn.Module | None = None
        self.opt: torch.optim.Optimizer | None = None
        self.q: Any = None
        self.step = 0
        self.phase_index, self.phase_step, self.phase_started = 0, 0, False
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None

    # ---------------------------------------------------------- pieces
    def _new_optimizer(self, lr: float) -> torch.optim.Optimizer:
        cfg = self.cfg
        params = [p for p in self.model.parameters() if p.requires_grad]
        if cfg.optimizer == "adam":
            opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=lr, weight_decay=cfg.weight_decay)
        else:
            opt = torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        if self.q is not None:
            self.q.attach_optimizer(opt)
        return opt

    def _attach_quantizer(self) -> None:
        from qfcn import quant

        cfg = self.cfg
        self.q = quant.attach_quantizer(self.model, cfg.scheme, cfg.bits, per_channel=cfg.per_channel,
                                        iterative_steps=cfg.iterative_steps, strategy=cfg.strategy, seed=cfg.seed)
        n_quant = sum(p.quant_step for p in self.plan)
        if self.q.n_steps != n_quant:
            raise RuntimeError(f"quantizer for {cfg.scheme}/{cfg.bits} has {self.q.n_steps} steps, the plan expects {n_quant}")

    def _save_checkpoint(self) -> None:
        rng = {"cpu": torch.get_rng_state()}
        if self.dev.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.dev)
        _atomic_save({
            "format": FORMAT, "params_hash": self.params_hash, "config": self.cfg.to_dict(),
            "model": _cpu_state(self.model), "optimizer": None if self.opt is None else self.opt.state_dict(),
            "scheduler": {"phase": self.plan[self.phase_index].name if self.phase_index < len(self.plan) else "end",
                          "phase_step": self.phase_step, "schedule": self.cfg.schedule},
            "quantizer": None if self.q is None else self.q.state_dict(),
            "step": self.step, "phase_index": self.phase_index, "phase_step": self.phase_step,
            "phase_started": self.phase_started, "history": self.history, "best": self.best, "rng": rng,
        }, self.out_dir / "checkpoint.pt")

    def resume(self, ckpt: dict[str, Any]) -> None:
        """Restore the state written by :meth:`_save_checkpoint` (the model is already built)."""
        self.step, self.history, self.best = int(ckpt["step"]), list(ckpt["history"]), ckpt["best"]
        self.phase_index, self.phase_step = int(ckpt["phase_index"]), int(ckpt["phase_step"])
        self.phase_started = bool(ckpt["phase_started"])
        if ckpt["quantizer"] is not None:  # attach (state-dict keys), load weights, then the quantizer
            self._attach_quantizer()
        self.model.load_state_dict(ckpt["model"])
        if self.q is not None:
            self.q.load_state_dict(ckpt["quantizer"])
        if self.phase_started and ckpt["optimizer"] is not None:
            self.opt = self._new_optimizer(self.plan[self.phase_index].lr)
            self.opt.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["rng"]["cpu"])
        if "cuda" in ckpt["rng"] and self.dev.type == "cuda":
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"], self.dev)

    def _validate(self, phase: str) -> dict[str, Any] | None:
        if not self.val:
            return None
        metrics = evaluate(self.model, self.val, contour_width=self.cfg.contour_width,
                           contour_weight=self.cfg.contour_weight, device=self.dev)
        entry = {"step": self.step, "phase": phase, **metrics}
        self.history.append(entry)
        if phase == "float":
            sign = 1.0 if self.cfg.select_metric == "val_loss" else -1.0
            value = sign * metrics[self.cfg.select_metric]
            if self.best is None or value < self.best["value"]:
                self.best = {"value": value, "step": self.step, "state": _cpu_state(self.model)}
        return entry

    def _train_step(self, batch: dict[str, torch.Tensor], lr: float) -> float:
        cfg, dev = self.cfg, self.dev
        for g in self.opt.param_groups:
            g["lr"] = lr
        x = batch["image"].to(dev, non_blocking=True)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if cfg.bf16:
            with torch.autocast(dev.type, dtype=torch.bfloat16):
                obj, con = self.model(x)
        else:
            obj, con = self.model(x)
        loss = segmentation_loss(obj, con, batch["object"].to(dev), batch["contour"].to(dev),
                                 batch["valid"].to(dev), cfg.contour_weight)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss is {float(loss)} at step {self.step + 1} ({self.plan[self.phase_index].name}): "
                                     f"lower lr ({cfg.lr}) / retrain_lr ({cfg.retrain_lr})")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return float(loss.detach())

    def _end_phase(self, phase: _Phase) -> None:
        self._validate(phase.name)
        if phase.name == "float":
            if self.cfg.select_best and self.best is not None:
                self.model.load_state_dict(self.best["state"])
                self.history.append({"step": self.step, "phase": "float", "selected_step": self.best["step"],
                                     self.cfg.select_metric: abs(self.best["value"])})
            self.best = None
            _atomic_save(_model_record(self.model, self.cfg, "float", self.history), self.out_dir / "float.pt")

    # ---------------------------------------------------------- loop
    def run(self) -> None:
        from tqdm import tqdm

        cfg = self.cfg
        total = sum(p.steps for p in self.plan)
        bar = tqdm(total=total, initial=self.step, desc=f"train {cfg.scheme}/{cfg.bits}", disable=not self.progress,
                   dynamic_ncols=True)
        self.model.to(self.dev)
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.model.train()
        try:
            batches = self.batches.from_step(self.step)
            while self.phase_index < len(self.plan):
                phase = self.plan[self.phase_index]
                if not self.phase_started:
                    if phase.quant_step:
                        if self.q is None:
                            self._attach_quantizer()
                        self.q.step()
                    self.opt = self._new_optimizer(phase.lr)
                    self.phase_started, self.phase_step = True, 0
                while self.phase_step < phase.steps:
                    lr = lr_at(cfg.schedule, phase.lr, self.phase_step, phase.steps)
                    loss = self._train_step(next(batches), lr)
                    self.step += 1
                    self.phase_step += 1
                    entry = {"step": self.step, "phase": phase.name, "loss": loss, "lr": lr}
                    self.history.append(entry)
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4f}", phase=phase.name, refresh=False)  # refresh: by update()
                    if cfg.val_every and self.step % cfg.val_every == 0 and self.phase_step < phase.steps:
                        self._validate(phase.name)
                    if self.step % cfg.ckpt_every == 0:
                        self._save_checkpoint()
                    if self.callback is not None:
                        self.callback(entry, self.model)
                self._end_phase(phase)
                self.phase_index, self.phase_step, self.phase_started, self.opt = self.phase_index + 1, 0, False, None
                self._save_checkpoint()
        finally:
            bar.close()

    def finish(self) -> TrainResult:
        """Put every weight on the grid, detach the quantizer, write final files."""
        from qfcn import quant

        if self.q is not None:
            self.q.quantize_all()
            self.q.detach()
            self.q = None
        self.model.to("cpu").to(memory_format=torch.contiguous_format).eval()
        out = self.out_dir
        _atomic_save(_model_record(self.model, self.cfg, "final", self.history), out / "final.pt")
        if self.cfg.scheme != "float":
            quant.save_packed(self.model, out / "packed.qfcn", self.cfg.scheme, self.cfg.bits)
        atomic_write_json(out / "history.json", self.history)
        atomic_write_json(out / "done.json", {"params_hash": self.params_hash, "steps": self.step,
                                                  "final": "final.pt", "scheme": self.cfg.scheme, "bits": self.cfg.bits})
        (out / "checkpoint.pt").unlink(missing_ok=True)
        return _result(out, self.cfg)


def train_model(samples: Sequence[Any], cfg: TrainConfig, *, out_dir: str | os.PathLike,
                val_samples: Sequence[Any] | None = None, init: str | os.PathLike | nn.Module | None = None,
                warm_start: bool = False, progress: bool = True,
                callback: Callable[[dict[str, Any], nn.Module], None] | None = None) -> TrainResult:
    """Train one SA FCN (float phase, then cfg.scheme/bits quantization) in ``out_dir``.

    Args:
        samples: annotated training samples (:class:`qfcn.data.Sample`; repeats allowed,
            test splits refused).
        cfg: the :class:`TrainConfig`.
        out_dir: the run folder; a rerun resumes from ``checkpoint.pt`` or, when the run
            is finished with the same config, data and init, returns at once.
        val_samples: whole images validated every ``cfg.val_every`` steps and at each
            phase end (history entries with 'val_loss' and 'val_dice').
        init: a finished float model (``float.pt`` / ``final.pt`` path or an SAFCN): the
            float phase is skipped and the run starts from these weights.
        warm_start: with ``init``, run the float phase from ``init``'s weights instead.
        progress: show a tqdm bar (loss in the postfix).
        callback: ``callback(entry, model)`` after each step, with the step's history
            entry and the training model, after the checkpoint of that step (raising from
            it interrupts the run; a rerun resumes from the last checkpoint).

    Returns:
        :class:`TrainResult` (model in eval mode on CPU; history: list of dicts with
        step, phase, loss, lr and validation entries; paths).
    """
    from qfcn.models import SAFCN

    if not isinstance(cfg, TrainConfig):
        raise ValueError(f"cfg: expected a TrainConfig, got {type(cfg).__name__} (use TrainConfig.from_dict)")
    samples = list(samples)
    if not samples:
        raise ValueError("samples: no training samples")
    for name, group in (("samples", samples), ("val_samples", val_samples or [])):
        tests = [getattr(s, "name", "?") for s in group if _is_test(s)]
        if tests:
            raise ValueError(f"{name}: test samples may not be used in training, got {tests[:5]}")
    val = list(val_samples) if val_samples is not None else None
    if cfg.select_best and not val:
        raise ValueError("TrainConfig.select_best=True needs val_samples (see split_validation)")
    if warm_start and init is None:
        raise ValueError("warm_start=True needs init")
    out_dir = Path(out_dir)
    init_state, init_config, init_digest = _load_init(init)
    identity = {"config": cfg.identity(), "init": init_digest, "warm_start": bool(warm_start),
                "data": _data_digest(samples), "val": _data_digest(val), "format": FORMAT}
    params_hash = param_hash(identity, 16)
    _check_out_dir(out_dir, params_hash)
    if runs.run_done(out_dir, params_hash):
        return _result(out_dir, cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "config.json", {"params_hash": params_hash, "identity": identity,
                                                     "config": cfg.to_dict()})
    plan = _plan(cfg, skip_float=init is not None and not warm_start)
    run = _Run(samples, cfg, out_dir, val, plan, params_hash, progress, callback)
    dev = run.dev
    cuda = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda, device_type="cuda"):
        torch.manual_seed(cfg.seed)
        run.model = SAFCN(**cfg.model)
        if init_state is not None:
            if dict(run.model.config) != init_config:
                raise ValueError(f"init: its model config {init_config} differs from TrainConfig.model "
                                 f"(-> {run.model.config})")
            run.model.load_state_dict(init_state)
        ckpt_path = out_dir / "checkpoint.pt"
        if ckpt_path.is_file():
            ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
            if ckpt.get("params_hash") != params_hash:
                raise ValueError(f"{ckpt_path} belongs to another configuration: use a fresh out_dir")
            run.resume(ckpt)
        run.run()
        return run.finish()


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
        member_samples = bootstrap_resample(samples, cfg.seed, m) if bootstrap else samples
        member_cfg = dataclasses.replace(cfg, seed=member_seed(cfg.seed, m))
        results.append(train_model(member_samples, member_cfg, out_dir=Path(out_dir) / f"member_{m}",
                                   val_samples=val_samples, init=inits[m],
                                   warm_start=warm_start and inits[m] is not None, progress=progress))
    return results


# ------------------------------------------------------------------ ablation helpers
def recalibrate_bn(model: nn.Module, samples: Sequence[Any], cfg: TrainConfig, n_batches: int = 8) -> nn.Module:
    """Re-estimate every BatchNorm's running mean/var on ``n_batches`` batches of training
    crops (no augmentation, seed ``cfg.seed``), as a cumulative average; weights untouched.
    In place; returns the model in eval mode on CPU."""
    from torch.utils.data import default_collate

    from qfcn import data

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
    from qfcn import quant

    scheme, bits = quant.check_scheme(scheme, bits)
    out = copy.deepcopy(model)
    q = quant.attach_quantizer(out, scheme, bits, per_channel=per_channel)
    q.quantize_all()
    q.detach()
    return out.eval()
