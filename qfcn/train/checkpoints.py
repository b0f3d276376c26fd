"""Run files of :mod:`qfcn.train`: model files, the finished-run record, run identity.

A run folder holds ``config.json`` (config and ``params_hash``), ``checkpoint.pt``, ``float.pt``,
``final.pt``, ``packed.qfcn`` (quantized runs), ``history.json`` and ``done.json``. Model files
are dicts ``{"format", "model_config", "state_dict", "train_config", "scheme", "bits", "phase",
"history"}``, written atomically and loadable with ``torch.load(weights_only=True)``.

>>> from qfcn.models import SAFCN
>>> _ = torch.manual_seed(0)
>>> net = SAFCN(width=0.125, n_stages=3)
>>> state = _cpu_state(net)
>>> _state_digest(state) == _state_digest(_cpu_state(net)), len(_state_digest(state))
(True, 16)
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from qfcn.io import atomic_write_bytes
from qfcn.models import SAFCN
from qfcn.train.config import TrainConfig

FORMAT = "qfcn.train/1"


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

