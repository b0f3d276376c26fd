"""Benchmark qfcn.suggest.select_representative: vectorised greedy vs loop-based greedy.

Run: ``.venv/bin/python benchmarks/bench_suggest.py``; prints a table and writes
``benchmarks/results/suggest.json``. Shapes (n_candidates x n_pool): 20 x 85 (GlaS
training pool) and 20 x 5000 (a large pool); k = 10. Two loop references, both checked
to pick the same indices: ``loop_numpy`` (Python loop over candidates, numpy over the
pool) and ``loop_python`` (pure Python, F(A + c) evaluated per candidate). Ratios are
measured within one run. Also times one full suggestive pick (per-member centred similarity
of an 85-image pool, 4 members with 512-d descriptors, top-k_c, greedy).
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np

from qfcn import suggest

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "suggest.json"


def loop_numpy(sim: np.ndarray, k: int) -> list[int]:
    best = np.zeros(sim.shape[1])
    picked: list[int] = []
    for _ in range(k):
        best_c, best_gain = -1, -np.inf
        for c in range(sim.shape[0]):
            if c in picked:
                continue
            gain = np.maximum(sim[c] - best, 0.0).sum()
            if gain > best_gain:
                best_c, best_gain = c, gain
        picked.append(best_c)
        best = np.maximum(best, sim[best_c])
    return picked


def loop_python(sim: np.ndarray, k: int) -> list[int]:
    rows = sim.tolist()
    n_pool = len(rows[0])
    picked: list[int] = []
    for _ in range(k):
        best_c, best_val = -1, -float("inf")
        for c in range(len(rows)):
            if c in picked:
                continue
            sel = [rows[s] for s in picked + [c]]
            val = sum(max(0.0, *(r[x] for r in sel)) for x in range(n_pool))
            if val > best_val:
                best_c, best_val = c, val
        picked.append(best_c)
    return picked


def timeit(fn, *args, min_time: float = 0.3, max_repeat: int = 200) -> tuple[float, object]:
    """Median seconds per call over repeats filling about min_time (at least 3 calls)."""
    times, out = [], None
    start = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < min_time and len(times) < max_repeat):
        t0 = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def main() -> dict:
    rng = np.random.default_rng(0)
    k = 10
    rows = []
    for n_c, n_pool in [(20, 85), (20, 5000)]:
        desc = np.abs(rng.normal(size=(n_pool, 64)))  # ReLU-like descriptors
        cand = rng.choice(n_pool, size=n_c, replace=False)
        sim = suggest.cosine_similarity(desc[cand], desc)
        t_vec, p_vec = timeit(suggest.select_representative, sim, k)
        t_np, p_np = timeit(loop_numpy, sim, k)
        t_py, p_py = timeit(loop_python, sim, k, min_time=0.0)
        assert p_vec == p_np == p_py, (p_vec, p_np, p_py)
        rows.append({"n_candidates": n_c, "n_pool": n_pool, "k": k,
                     "vectorised_s": t_vec, "loop_numpy_s": t_np, "loop_python_s": t_py,
                     "ratio_loop_numpy_over_vectorised": t_np / t_vec,
                     "ratio_loop_python_over_vectorised": t_py / t_vec})
    desc = np.abs(rng.normal(size=(85, 4, 512)))
    u = rng.random(85)

    def full_pick():
        sim = suggest.descriptor_similarity(desc)
        return suggest.pick("suggestive", uncertainties=u, similarity=sim, k_pick=8, k_candidates=16)

    t_pick, _ = timeit(full_pick)
    result = {"select_representative": rows,
              "pick_suggestive_pool85_k4_d512_k8_kc16_s": t_pick,
              "numpy": np.__version__, "python": platform.python_version(),
              "machine": platform.machine(), "processor": platform.processor() or None}
    return result


if __name__ == "__main__":
    res = main()
    print(f"{'shape':>10} {'vectorised':>12} {'loop_numpy':>12} {'loop_python':>12} "
          f"{'np/vec':>8} {'py/vec':>8}")
    for r in res["select_representative"]:
        print(f"{r['n_candidates']:>4}x{r['n_pool']:<5} {r['vectorised_s'] * 1e3:>10.3f}ms "
              f"{r['loop_numpy_s'] * 1e3:>10.3f}ms {r['loop_python_s'] * 1e3:>10.1f}ms "
              f"{r['ratio_loop_numpy_over_vectorised']:>8.1f} "
              f"{r['ratio_loop_python_over_vectorised']:>8.0f}")
    print(f"pick('suggestive') incl. per-member centred similarity, pool 85, K 4, d 512: "
          f"{res['pick_suggestive_pool85_k4_d512_k8_kc16_s'] * 1e3:.3f} ms")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}")
