"""Training throughput of the CPU-sized SA FCN: one job with 2 threads, one with 1 thread, and two
1-thread jobs at once (what ``--workers 2`` does). Writes benchmarks/results/threads.json.

    .venv/bin/python benchmarks/bench_threads.py
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
STEPS = 40
JOB = f"""
import sys, tempfile, time, torch
from qfcn import data, train
torch.set_num_threads(int(sys.argv[1]))
ds = data.load_glas(data.make_glas(sys.argv[2], seed=0, n_train=16, n_test_a=1, n_test_b=1, scale=0.5))
cfg = train.TrainConfig(model=dict(width=0.25, n_stages=4), crop_size=128, batch_size=8, float_steps={STEPS},
                        seed=0, bf16=True, channels_last=True, ckpt_every=10**6)
t = time.perf_counter()
train.train_model(ds.train, cfg, out_dir=tempfile.mkdtemp(), progress=False)
print((time.perf_counter() - t) / {STEPS})
"""


def _jobs(threads: int, n: int, root: str) -> list[float]:
    procs = [subprocess.Popen([sys.executable, "-c", JOB, str(threads), root], stdout=subprocess.PIPE, text=True)
             for _ in range(n)]
    return [float(p.communicate()[0].strip().splitlines()[-1]) for p in procs]


def main() -> None:
    root = tempfile.mkdtemp() + "/glas"
    _jobs(1, 1, root)  # writes the data set once, warms caches
    one_2t = _jobs(2, 1, root)[0]
    one_1t = _jobs(1, 1, root)[0]
    two_1t = _jobs(1, 2, root)
    res = {"seconds_per_step": {"1 job x 2 threads": one_2t, "1 job x 1 thread": one_1t,
                                "2 jobs x 1 thread (each)": two_1t},
           "throughput_steps_per_s": {"1 job x 2 threads": 1 / one_2t, "2 jobs x 1 thread": sum(1 / t for t in two_1t)},
           "speedup_2x1_vs_1x2": (sum(1 / t for t in two_1t)) * one_2t,
           "setup": f"SAFCN width 0.25, 4 stages, crop 128, batch 8, bf16 + channels_last, {STEPS} steps, CPU"}
    out = HERE / "results" / "threads.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
