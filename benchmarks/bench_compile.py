"""torch.compile (inductor) on this CPU for the training step and for inference -> results/compile.json.

Fast-profile settings (SAFCN width 0.25, 4 stages, crop 128, batch 8, bf16 autocast,
channels_last, one thread). For each of {train step, inference forward} it measures eager
and compiled seconds per call (median of interleaved repeats) and the compile time (first
compiled call minus one eager call), and scores compile as it would pay over a fast-profile
run: ``amortised_ratio = eager_s * N / (compile_s + compiled_s * N)`` with N = 200 training
steps (a fast-profile final network) or N = 145 images (fast profile: 85 train + 60 test
predictions of one model). It is kept only where that ratio is >= 1.2 (issue 12).

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/bench_compile.py`` (1-3 minutes on 2 cores).
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from qfcn.models import SAFCN  # noqa: E402
from qfcn.train.loss import segmentation_loss  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "compile.json"
KEEP_RATIO = 1.2
N_TRAIN, N_INFER, REPEATS = 200, 145, 8


def _train_fn(model: torch.nn.Module, fwd, opt: torch.optim.Optimizer, batch: dict) -> callable:
    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            obj, con = fwd(batch["x"])
        loss = segmentation_loss(obj, con, batch["object"], batch["contour"], batch["valid"], 1.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def _infer_fn(fwd, x: torch.Tensor) -> callable:
    def run() -> None:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            fwd(x)
    return run


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _measure(make) -> dict:
    """make(compiled: bool) -> a zero-argument call; returns eager / compiled timings."""
    eager, comp = make(False), make(True)
    first_eager = _timed(eager)
    first_comp = _timed(comp)
    _timed(eager), _timed(comp)  # second calls (recompiles for train/eval flips show up here)
    te, tc = [], []
    for _ in range(REPEATS):
        te.append(_timed(eager))
        tc.append(_timed(comp))
    e, c = statistics.median(te), statistics.median(tc)
    return {"eager_s": e, "compiled_s": c, "first_eager_s": first_eager, "first_compiled_s": first_comp,
            "compile_s": max(0.0, first_comp - e), "speedup_per_call": e / c}


def _verdict(r: dict, n: int) -> dict:
    ratio = r["eager_s"] * n / (r["compile_s"] + r["compiled_s"] * n)
    return {**r, "n_calls_amortised": n, "amortised_ratio": ratio, "kept": ratio >= KEEP_RATIO}


def main() -> dict:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    batch = {"x": torch.rand(8, 3, 128, 128).contiguous(memory_format=torch.channels_last),
             "object": (torch.rand(8, 128, 128) > 0.5).float(), "contour": (torch.rand(8, 128, 128) > 0.8).float(),
             "valid": torch.ones(8, 128, 128)}

    def make_train(compiled: bool):
        torch.manual_seed(0)
        m = SAFCN(width=0.25, n_stages=4).to(memory_format=torch.channels_last).train()
        return _train_fn(m, torch.compile(m) if compiled else m, torch.optim.Adam(m.parameters(), 1e-3), batch)

    x = torch.rand(1, 3, 272, 400).contiguous(memory_format=torch.channels_last)  # a fast-profile image, padded

    def make_infer(compiled: bool):
        torch.manual_seed(0)
        m = SAFCN(width=0.25, n_stages=4).to(memory_format=torch.channels_last).eval()
        return _infer_fn(torch.compile(m) if compiled else m, x)

    out = {"machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": 1,
                       "cpus": os.cpu_count(), "loadavg_start": os.getloadavg(),
                       "c_compiler": shutil.which("gcc") or shutil.which("cc")},
           "setup": "SAFCN width 0.25, 4 stages, crop 128, batch 8, bf16 autocast, channels_last, 1 thread",
           "keep_if_amortised_ratio_at_least": KEEP_RATIO}
    for name, make, n in (("train_step", make_train, N_TRAIN), ("inference_forward", make_infer, N_INFER)):
        try:
            out[name] = _verdict(_measure(make), n)
        except Exception as exc:  # noqa: BLE001 - record why compile is unavailable here
            out[name] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}", "kept": False}
    out["machine"]["loadavg_end"] = os.getloadavg()
    return out


if __name__ == "__main__":
    res = main()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
