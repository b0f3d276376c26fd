"""Benchmark of the weight quantizers -> benchmarks/results/quant.json.

1. Training-step time (forward + backward + SGD step) of the CPU-sized SA FCN, float vs
   INQ (mid-way: 2 of 4 partitions quantized, gradient masks and optimizer hook active)
   vs uniform (fake quant enabled), interleaved in ONE run; overhead = quantized / float - 1.
2. Time of one INQ partition step over the whole model (CPU net and paper-sized ~2.3M-weight net).
3. Bytes on disk of the packed paper-sized model per bit-width (2..8, INQ and uniform)
   vs the float32 checkpoint, measured from the files written.

Run: ``.venv/bin/python benchmarks/bench_quant.py`` (about a minute on 2 CPU cores).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from qfcn import quant
from qfcn.models import SAFCN

OUT = Path(__file__).resolve().parent / "results" / "quant.json"
CPU_NET = dict(width=0.25, n_stages=4)
PAPER_NET = dict(width=1.0, n_stages=6)


def _train_setup(scheme: str, bits: int, seed: int = 0):
    torch.manual_seed(seed)
    net = SAFCN(**CPU_NET).train()
    q = quant.attach_quantizer(net, scheme, bits)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
    q.attach_optimizer(opt)
    if scheme == "inq":
        q.step()
        q.step()  # mid-way: 75 % frozen
    elif scheme == "uniform":
        q.step()
    return net, opt


def bench_training_step(batch: int = 8, size: int = 128, rounds: int = 9, iters: int = 3) -> dict:
    """Batch and crop of the fast profile (params/fast.yaml)."""
    x = torch.rand(batch, 3, size, size)
    y = (torch.rand(batch, 1, size, size) > 0.5).float()
    setups = {"float": _train_setup("float", 32), "inq5": _train_setup("inq", 5),
              "uniform5": _train_setup("uniform", 5)}
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def one(net, opt) -> None:
        opt.zero_grad(set_to_none=True)
        obj, cnt = net(x)
        (loss_fn(obj, y) + loss_fn(cnt, y)).backward()
        opt.step()

    for net, opt in setups.values():  # warm-up
        one(net, opt)
    times: dict[str, list[float]] = {k: [] for k in setups}
    order = list(setups)
    for r in range(rounds):  # interleaved, order rotated, so that machine load hits every variant alike
        for k in order[r % 3:] + order[: r % 3]:
            net, opt = setups[k]
            t0 = time.perf_counter()
            for _ in range(iters):
                one(net, opt)
            times[k].append((time.perf_counter() - t0) / iters)
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    return {
        "seconds_per_step_min": best,
        "overhead_vs_float_min": {k: best[k] / best["float"] - 1 for k in best if k != "float"},
        "net": CPU_NET, "batch": batch, "size": size, "rounds": rounds, "iters_per_round": iters,
        "seconds_per_step_median": med,
        "overhead_vs_float": {k: med[k] / med["float"] - 1 for k in med if k != "float"},
    }


def bench_inq_step(cfg: dict, repeats: int = 5) -> dict:
    torch.manual_seed(0)
    net = SAFCN(**cfg)
    n = sum(m.weight.numel() for _, m in quant.quantized_layers(net))
    per_step, full = [], []
    for r in range(repeats):
        if r:
            net = SAFCN(**cfg)
        q = quant.attach_quantizer(net, "inq", 5)
        steps = []
        while not q.done:
            t0 = time.perf_counter()
            q.step()
            steps.append(time.perf_counter() - t0)
        per_step.append(steps)
        full.append(sum(steps))
        q.detach()
    return {
        "net": cfg, "n_weights": n,
        "seconds_per_step_median": [statistics.median(s[i] for s in per_step) for i in range(len(per_step[0]))],
        "seconds_per_step_min": [min(s[i] for s in per_step) for i in range(len(per_step[0]))],
        "seconds_mean_step": statistics.median(full) / len(per_step[0]),
        "seconds_mean_step_best_run": min(full) / len(per_step[0]),
        "speedup_vs_2p7s_reference": 2.7 / (statistics.median(full) / len(per_step[0])),
        "speedup_vs_2p7s_reference_best_run": 2.7 / (min(full) / len(per_step[0])),
    }


def bench_bytes(cfg: dict) -> dict:
    rows = []
    for scheme in ("inq", "uniform"):
        for bits in range(2, 9):
            torch.manual_seed(0)
            net = SAFCN(**cfg)
            q = quant.attach_quantizer(net, scheme, bits)
            q.quantize_all()
            rep = quant.packed_size_report(net)
            rows.append({k: rep[k] for k in ("scheme", "bits", "weight_bytes", "float_bytes", "header_bytes",
                                              "file_bytes", "float32_weight_bytes", "float32_checkpoint_bytes",
                                              "weight_compression", "file_compression")})
    torch.manual_seed(0)
    rep = quant.packed_size_report(SAFCN(**cfg), "float", 32)
    rows.append({k: rep[k] for k in rows[0]})
    return {"net": cfg, "rows": rows}


def main() -> None:
    t0 = time.perf_counter()
    res = {
        "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
        "device": "cpu", "loadavg_at_start": os.getloadavg(),
        "training_step": bench_training_step(),
        "inq_step_cpu_net": bench_inq_step(CPU_NET),
        "inq_step_paper_net": bench_inq_step(PAPER_NET),
        "bytes_paper_net": bench_bytes(PAPER_NET),
    }
    res["wall_seconds"] = time.perf_counter() - t0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=2) + "\n")
    ts = res["training_step"]
    print(f"training step (s, median): {ts['seconds_per_step_median']}")
    print(f"overhead vs float (median): {ts['overhead_vs_float']}  (min): {ts['overhead_vs_float_min']}")
    for k in ("inq_step_cpu_net", "inq_step_paper_net"):
        r = res[k]
        print(f"{k}: {r['n_weights']} weights, mean step {r['seconds_mean_step'] * 1e3:.1f} ms "
              f"(best run {r['seconds_mean_step_best_run'] * 1e3:.1f} ms; "
              f"{r['speedup_vs_2p7s_reference']:.0f}x / {r['speedup_vs_2p7s_reference_best_run']:.0f}x "
              "faster than 2.7 s)")
    print("scheme bits weight_bytes file_bytes float32_ckpt weight_x file_x")
    for r in res["bytes_paper_net"]["rows"]:
        print(f"{r['scheme']:8s} {r['bits']:2d} {r['weight_bytes']:10d} {r['file_bytes']:10d} "
              f"{r['float32_checkpoint_bytes']:10d} {r['weight_compression']:6.2f} {r['file_compression']:6.2f}")
    print(f"wrote {OUT} in {res['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
