"""One training run: the loop over phases, checkpoints and resume (:func:`train_model`).

The phases, files and determinism of a run are described in :mod:`qfcn.train`; the RNG state
is checkpointed with the model, optimizer and quantizer state, so a resumed run is identical.

>>> cfg = TrainConfig(scheme="uniform", bits=5, float_steps=20, retrain_steps=10)
>>> [(p.name, p.steps) for p in _plan(cfg, skip_float=False)]
[('float', 20), ('uniform_1', 30)]
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from qfcn import data, infer, quant
from qfcn.io import atomic_write_json, param_hash, run_done
from qfcn.models import SAFCN
from qfcn.train.batches import _Batches, _n_crops, resolve_workers
from qfcn.train.checkpoints import (FORMAT, TrainResult, _atomic_save, _check_out_dir, _cpu_state, _data_digest,
                                    _load_init, _model_record, _result)
from qfcn.train.config import TrainConfig, lr_at
from qfcn.train.loss import segmentation_loss, validation_scores
from qfcn.train.phases import _Phase, _plan


class _Run:
    """The mutable state of one training run (model, optimizer, quantizer, counters)."""

    def __init__(self, samples: list[Any], cfg: TrainConfig, out_dir: Path, val_samples: list[Any] | None,
                 plan: list[_Phase], params_hash: str, progress: bool, callback: Callable[[dict, nn.Module], None] | None) -> None:
        self.cfg, self.out_dir, self.val, self.plan = cfg, out_dir, val_samples, plan
        self.params_hash, self.progress, self.callback = params_hash, progress, callback
        self.dev = infer.resolve_device(cfg.device)
        ds = data.GlasCrops(samples, crop_size=cfg.crop_size, n_crops=_n_crops(cfg, len(samples)), seed=cfg.seed,
                            augment=cfg.augment, contour_width=cfg.contour_width)
        self.batches = _Batches(ds, cfg, self.dev)
        #: seconds of this session (a resumed run counts from the resume): waiting for batches,
        #: training steps (forward, backward, optimizer), validation / checkpoints / callbacks.
        self.timing = {"steps": 0, "data_s": 0.0, "step_s": 0.0, "other_s": 0.0}
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
        metrics = validation_scores(self.model, self.val, contour_width=self.cfg.contour_width,
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
        obj_t, con_t, valid = (batch[k].to(dev, non_blocking=True) for k in ("object", "contour", "valid"))
        loss = segmentation_loss(obj, con, obj_t, con_t, valid, cfg.contour_weight)
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
    def _start_phase(self, phase: _Phase) -> None:
        """Quantization step (attaching the quantizer first) and a fresh optimizer."""
        if phase.quant_step:
            if self.q is None:
                self._attach_quantizer()
            self.q.step()
        self.opt = self._new_optimizer(phase.lr)
        self.phase_started, self.phase_step = True, 0

    def _after_step(self, phase: _Phase, loss: float, lr: float, bar: Any) -> None:
        """Count the step, record it, validate / checkpoint when due, call the callback."""
        cfg = self.cfg
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

    def run(self) -> None:
        """Run the remaining phases from the current (fresh or resumed) state."""
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
                    self._start_phase(phase)
                while self.phase_step < phase.steps:
                    lr = lr_at(cfg.schedule, phase.lr, self.phase_step, phase.steps)
                    t0 = time.perf_counter()
                    batch = next(batches)
                    t1 = time.perf_counter()
                    loss = self._train_step(batch, lr)
                    t2 = time.perf_counter()
                    self._after_step(phase, loss, lr, bar)
                    tm = self.timing
                    tm["steps"] += 1
                    tm["data_s"] += t1 - t0
                    tm["step_s"] += t2 - t1
                    tm["other_s"] += time.perf_counter() - t2
                self._end_phase(phase)
                self.phase_index, self.phase_step, self.phase_started, self.opt = self.phase_index + 1, 0, False, None
                self._save_checkpoint()
        finally:
            bar.close()

    def finish(self) -> TrainResult:
        """Put every weight on the grid, detach the quantizer, write final files."""
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
        atomic_write_json(out / "timing.json", {**self.timing, "device": str(self.dev),
                                                "num_workers": resolve_workers(self.cfg.num_workers, self.dev)})
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
    samples, val = _checked_inputs(samples, cfg, val_samples, init, warm_start)
    out_dir = Path(out_dir)
    init_state, init_config, init_digest = _load_init(init)
    identity = {"config": cfg.identity(), "init": init_digest, "warm_start": bool(warm_start),
                "data": _data_digest(samples), "val": _data_digest(val), "format": FORMAT}
    params_hash = param_hash(identity, 16)
    _check_out_dir(out_dir, params_hash)
    if run_done(out_dir, params_hash):
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
        run.model = _new_model(cfg, init_state, init_config)
        _resume_if_checkpointed(run, out_dir / "checkpoint.pt")
        run.run()
        return run.finish()


def _checked_inputs(samples: Sequence[Any], cfg: TrainConfig, val_samples: Sequence[Any] | None,
                    init: Any, warm_start: bool) -> tuple[list[Any], list[Any] | None]:
    """(samples, val) as lists after the argument checks of :func:`train_model`."""
    if not isinstance(cfg, TrainConfig):
        raise ValueError(f"cfg: expected a TrainConfig, got {type(cfg).__name__} (use TrainConfig.from_dict)")
    samples = list(samples)
    if not samples:
        raise ValueError("samples: no training samples")
    for name, group in (("samples", samples), ("val_samples", val_samples or [])):
        tests = [getattr(s, "name", "?") for s in group if data.is_test(s)]
        if tests:
            raise ValueError(f"{name}: test samples may not be used in training, got {tests[:5]}")
    val = list(val_samples) if val_samples is not None else None
    if cfg.select_best and not val:
        raise ValueError("TrainConfig.select_best=True needs val_samples (see split_validation)")
    if warm_start and init is None:
        raise ValueError("warm_start=True needs init")
    return samples, val


def _new_model(cfg: TrainConfig, init_state: dict | None, init_config: dict | None) -> nn.Module:
    """A fresh SAFCN (draws from the seeded RNG), loaded with ``init_state`` when given."""
    model = SAFCN(**cfg.model)
    if init_state is not None:
        if dict(model.config) != init_config:
            raise ValueError(f"init: its model config {init_config} differs from TrainConfig.model "
                             f"(-> {model.config})")
        model.load_state_dict(init_state)
    return model


def _resume_if_checkpointed(run: _Run, ckpt_path: Path) -> None:
    if ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if ckpt.get("params_hash") != run.params_hash:
            raise ValueError(f"{ckpt_path} belongs to another configuration: use a fresh out_dir")
        run.resume(ckpt)
