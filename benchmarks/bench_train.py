"""Benchmark of the training loop and whole-image inference -> benchmarks/results/train.json.

1. Seconds per training step of the CPU-sized SA FCN (width 0.25, 4 stages), crop 256,
   batch 8, measured through :func:`qfcn.train.train_model` itself (crops, loss,
   backward, optimizer; timed between consecutive step callbacks, the first step of
   every phase left out): float fp32, float channels_last + bf16 autocast, INQ 5-bit
   retraining fp32 and channels_last + bf16 (INQ runs start from a float ``float.pt``).
   The four configurations run interleaved, twice; one torch thread (shared cores).
2. Seconds per image of :func:`qfcn.infer.predict` on a GlaS-sized synthetic image
   (one model), at scale 0.5 and 1.0, tiled (tile 512, the default) and whole.

Run: ``.venv/bin/python benchmarks/bench_train.py`` (about 1 to 2 minutes on 2 CPU cores).
Ratios are computed within this one run; absolute numbers depend on the machine's load.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo's qfcn, even without an install
from qfcn import data, infer, train

OUT = Path(__file__).resolve().parent / "results" / "train.json"
STEPS = 3  # timed float steps per configuration and repeat (plus one untimed first step)
REPEATS = 2
THREADS = 1  # the 2 cores are shared: one thread gives stable numbers, two thrash under load


def _samples(n: int = 3) -> list[data.Sample]:
    out = []
    for i in range(1, n + 1):
        image, inst, _ = data.draw_split_image(0, "train", i, grade="benign", scale=1.0)
        out.append(data.Sample(f"train_{i}", "train", image, inst.astype("int32"), "benign"))
    return out


def _step_times(samples, cfg, out_dir, init=None) -> list[float]:
    stamps: list[tuple[str, float]] = []
    train.train_model(samples, cfg, out_dir=out_dir, init=init, progress=False,
                      callback=lambda e, m: stamps.append((e["phase"], time.perf_counter())))
    times = []
    for (p0, t0), (p1, t1) in itertools.pairwise(stamps):
        if p0 == p1:  # the first step of a phase also pays for quantizer.step() and a new optimizer
            times.append(t1 - t0)
    return times


def bench_steps(samples) -> dict:
    base = train.TrainConfig(crop_size=256, batch_size=8, n_crops=64, float_steps=STEPS + 1, ckpt_every=10 ** 6,
                             device="cpu", augment=True)
    fast = {"bf16": True, "channels_last": True}
    inq = {"scheme": "inq", "bits": 5, "retrain_steps": 2}  # 3 retraining phases of 2 steps: 3 timed steps
    res: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        warm = dataclasses.replace(base, float_steps=2)
        train.train_model(samples, warm, out_dir=tmp / "warm", progress=False)  # untimed warm-up, and the INQ init
        init = tmp / "warm" / "float.pt"
        configs = {
            "float_fp32": (base, None),
            "float_cl_bf16": (dataclasses.replace(base, **fast), None),
            "inq_retrain_fp32": (dataclasses.replace(base, **inq), init),
            "inq_retrain_cl_bf16": (dataclasses.replace(base, **inq, **fast), init),
        }
        for rep in range(REPEATS):  # interleaved, so that load drift hits every configuration alike
            for name, (cfg, init_path) in configs.items():
                res.setdefault(name, []).extend(_step_times(samples, cfg, tmp / f"{name}-{rep}", init_path))
    out: dict = {k: {"median_s": statistics.median(v), "min_s": min(v), "n": len(v)} for k, v in res.items()}
    out["ratios_vs_float_fp32"] = {
        stat: {k: out[k][stat] / out["float_fp32"][stat] for k in res} for stat in ("median_s", "min_s")}
    return out


def bench_infer(samples) -> dict:
    from qfcn.models import SAFCN

    torch.manual_seed(0)

    model = SAFCN(**train.TrainConfig().model).eval()
    image = samples[0].image
    out = {"image_hw": list(image.shape[:2])}
    variants = [(scale, name, tile) for scale in (0.5, 1.0) for name, tile in (("tiled512", 512), ("whole", None))]
    for scale, _, tile in variants:
        infer.predict(model, image, device="cpu", scale=scale, tile=tile)  # warm-up
    times: dict[str, list[float]] = {}
    for _ in range(3):
        for scale, name, tile in variants:
            t0 = time.perf_counter()
            infer.predict(model, image, device="cpu", scale=scale, tile=tile)
            times.setdefault(f"scale{scale}_{name}_s", []).append(time.perf_counter() - t0)
    out.update({k: {"median_s": statistics.median(v), "min_s": min(v)} for k, v in times.items()})
    return out


def main() -> None:
    torch.set_num_threads(THREADS)
    t0 = time.perf_counter()
    samples = _samples()
    result = {
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "cpus": os.cpu_count(), "loadavg_start": os.getloadavg()},
        "net": train.TrainConfig().model, "crop_size": 256, "batch_size": 8,
        "train_step": bench_steps(samples),
        "inference_per_image": bench_infer(samples),
    }
    result["machine"]["loadavg_end"] = os.getloadavg()
    result["wall_s"] = time.perf_counter() - t0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
