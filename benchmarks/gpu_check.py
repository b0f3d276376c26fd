"""GPU check: a few hundred paper-profile-sized training steps on CUDA -> steps/s and device
utilisation in JSON (benchmarks/results/gpu_check.json).

On CUDA: the model, crop and batch of ``params/paper.yaml``'s ensemble section (SAFCN width 1.0,
6 stages, crop 480, batch 4, bf16 autocast, channels_last), ``--steps`` steps (default 300) on
synthetic GlaS images at full size, loader workers and pinned memory from the device
(:func:`qfcn.train.batches.resolve_workers`). Utilisation is sampled every 0.5 s while training:
``torch.cuda.utilization()`` (needs pynvml), else ``nvidia-smi``, else null. Without CUDA (or
with ``--cpu``) it runs a tiny fallback (width 0.125, 3 stages, crop 32, batch 2, 6 steps) in a
few seconds and writes the same keys with device "cpu" (tests/train/test_gpu_check.py).

Run: ``PYTHONPATH=. python benchmarks/gpu_check.py [--steps 300] [--cpu] [--out FILE]``.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from qfcn import data, train  # noqa: E402

HERE = Path(__file__).resolve().parent
PAPER = HERE.parent / "params" / "paper.yaml"
WARM = 5  # untimed first steps (cuDNN autotuning, worker start)


def _utilisation() -> tuple[float | None, str | None]:
    """Current GPU utilisation in percent and where it came from (None, None if unavailable)."""
    try:
        return float(torch.cuda.utilization()), "torch.cuda.utilization"
    except Exception:  # noqa: BLE001 - pynvml missing or no device
        pass
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=5).stdout.split()
            return float(out[0]), "nvidia-smi"
        except (ValueError, IndexError, subprocess.SubprocessError):
            pass
    return None, None


class _Sampler(threading.Thread):
    """Samples :func:`_utilisation` every ``period`` s until stopped."""

    def __init__(self, period: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.period, self.values, self.source, self.stop = period, [], None, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.period):
            value, source = _utilisation()
            if value is None:
                return
            self.values.append(value)
            self.source = source


def _setup(cuda: bool, steps: int | None) -> tuple[dict, int, float, int]:
    """(TrainConfig keyword arguments, steps, image scale, number of images) for the device."""
    if cuda:
        p = yaml.safe_load(PAPER.read_text())["ensemble"]
        kw = {"model": {"width": p["width"], "n_stages": p["n_stages"]}, "crop_size": p["crop_size"],
              "batch_size": p["batch_size"], "lr": p["lr"], "bf16": bool(p.get("bf16", True)), "channels_last": True}
        return kw, steps or 300, 1.0, 8
    kw = {"model": {"width": 0.125, "n_stages": 3}, "crop_size": 32, "batch_size": 2, "bf16": False}
    return kw, steps or 6, 0.25, 2


def main(out: Path, steps: int | None = None, force_cpu: bool = False) -> dict:
    """Run the check and write ``out``; returns the JSON dict."""
    cuda = torch.cuda.is_available() and not force_cpu
    kw, n_steps, scale, n_images = _setup(cuda, steps)
    samples = []
    for k in range(n_images):
        image, inst, _ = data.draw_split_image(0, "train", k + 1, grade="benign", scale=scale)
        samples.append(data.Sample(f"train_{k + 1}", "train", image, inst.astype(np.int32), "benign"))
    cfg = train.TrainConfig(**kw, float_steps=n_steps, seed=0, ckpt_every=10 ** 6, device="cuda" if cuda else "cpu",
                            n_crops=max(64, kw["batch_size"] * 8))
    stamps: list[float] = []

    def on_step(entry: dict, model: torch.nn.Module) -> None:
        if cuda:
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    sampler = _Sampler()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        sampler.start()
        train.train_model(samples, cfg, out_dir=tmp, progress=False, callback=on_step)
        sampler.stop.set()
        timing = json.loads((Path(tmp) / "timing.json").read_text())
    dt = np.diff(stamps)[min(WARM, max(0, len(stamps) - 3)):]
    s_per_step = float(statistics.median(dt))
    res = {"device": "cuda" if cuda else "cpu",
           "device_name": torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine(),
           "torch": torch.__version__, "config": cfg.to_dict(), "steps": n_steps, "timed_steps": len(dt),
           "s_per_step": s_per_step, "steps_per_s": 1.0 / s_per_step,
           "images_per_s": cfg.batch_size / s_per_step, "data_share": timing["data_s"] / max(1e-9, timing["data_s"] + timing["step_s"]),
           "num_workers": timing["num_workers"], "pin_memory": cuda,
           "utilisation_mean_pct": statistics.mean(sampler.values) if sampler.values else None,
           "utilisation_samples": len(sampler.values), "utilisation_source": sampler.source,
           "max_memory_gib": torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else None,
           "wall_s": time.perf_counter() - t0}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    return res


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=None, help="training steps (default 300 on CUDA, 6 on CPU)")
    ap.add_argument("--cpu", action="store_true", help="force the CPU fallback")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "gpu_check.json")
    args = ap.parse_args()
    print(json.dumps(main(args.out, args.steps, args.cpu), indent=2))
