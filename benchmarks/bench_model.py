"""Inference time of the SA FCN per 775 x 522 image -> benchmarks/results/model.json.

CPU-sized (width 0.25, 4 stages) and paper-sized (width 1, 6 stages) networks, fp32
(contiguous) vs channels_last + bfloat16 autocast, batch 1, ``torch.inference_mode``.
Runs on CUDA too when one is visible (then both devices are measured). Median of a few
repeats after one warm-up; ratios are within one run.

Run: ``.venv/bin/python benchmarks/bench_model.py`` (about a minute on 2 CPU cores).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import torch

from qfcn.models import SAFCN

OUT = Path(__file__).resolve().parent / "results" / "model.json"
NETS = {"cpu_net": dict(width=0.25, n_stages=4), "paper_net": dict(width=1.0, n_stages=6)}
H, W = 522, 775


def _time(net: SAFCN, x: torch.Tensor, device: str, mode: str, repeats: int) -> float:
    if mode == "channels_last_bf16":
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    def run() -> None:
        with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=mode != "fp32"):
            net(x)
        if device == "cuda":
            torch.cuda.synchronize()
    run()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main() -> None:
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    res: dict = {"torch": torch.__version__, "threads": torch.get_num_threads(), "image_hw": [H, W],
                 "loadavg_at_start": os.getloadavg(), "results": []}
    for device in devices:
        for name, cfg in NETS.items():
            torch.manual_seed(0)
            repeats = 3 if (device == "cpu" and name == "paper_net") else 5
            row = {"device": device, "net": name, "config": cfg}
            for mode in ("fp32", "channels_last_bf16"):
                net = SAFCN(**cfg).eval().to(device)
                x = torch.rand(1, 3, H, W, device=device)
                row[f"seconds_{mode}"] = _time(net, x, device, mode, repeats)
            row["speedup_channels_last_bf16"] = row["seconds_fp32"] / row["seconds_channels_last_bf16"]
            res["results"].append(row)
            print(f"{device:4s} {name:9s} fp32 {row['seconds_fp32']:.3f} s  channels_last+bf16 "
                  f"{row['seconds_channels_last_bf16']:.3f} s  (x{row['speedup_channels_last_bf16']:.2f})")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
