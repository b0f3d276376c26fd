"""Benchmark: evaluation (threshold tuning + post-processing + GlaS metrics) of 165 full-size
GlaS images predicted by a barely trained network, before and after the bounded evaluation
(issue 12, "Evaluation bounded"; docs/method.md §6).

Run as ``PYTHONPATH=. .venv/bin/python benchmarks/bench_eval.py [--n-images 165]``. Simulates
165 probability-map pairs of 522 x 775 pixels (GlaS scale 1) over elliptic glands: two in
three from a *poor* network (smooth noise over a faint gland signal: thousands of seed
fragments per image at thresholds 0.5 / 0.5) and one in three *real-looking* (blurred
glands and contours). Both paths do what ``qfcn.score.evaluate_ensemble`` does after
prediction: tune the thresholds on the first 15 maps (the validation images), then
post-process and score all 165. The old path is the code of commit ``OLD_COMMIT`` loaded
from git (``git show``) as the package ``qfcn_old``; the new one is this tree's. Both run in
one process, one after the other, so the ratio is measured on the same machine load. Also
times resizing 165 half-resolution map pairs to full size (``qfcn.score.to_source``).
Writes ``benchmarks/results/eval.json``. Target: the new path under 60 s.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from qfcn import metrics, postprocess, score

OLD_COMMIT = "5067eff308618503ff5c963dab8602496a819c6f"  # before bounded evaluation (wave 2)
HEIGHT, WIDTH, N_VAL, TARGET_S = 522, 775, 15, 60.0
FIXED = dict(min_area=50, hole_area=500)  # original-resolution pixels, as notebook 04


def load_old(commit: str = OLD_COMMIT) -> tuple[Any, Any]:
    """``(postprocess, metrics)`` of ``commit``, importable side by side with today's qfcn."""
    root = Path(__file__).resolve().parents[1]
    pkg = Path(tempfile.mkdtemp()) / "qfcn_old"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for mod in ("matching", "metrics", "postprocess"):
        src = subprocess.run(["git", "show", f"{commit}:qfcn/{mod}.py"], cwd=root, check=True,
                             capture_output=True, text=True).stdout
        (pkg / f"{mod}.py").write_text(src.replace("from qfcn import", "from qfcn_old import"))
    sys.path.insert(0, str(pkg.parent))
    return importlib.import_module("qfcn_old.postprocess"), importlib.import_module("qfcn_old.metrics")


def gland_map(rng: np.random.Generator, n: int = 12) -> np.ndarray:
    """(H, W) int32 instance map of ``n`` random ellipses (later ones overwrite earlier ones)."""
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    gt = np.zeros((HEIGHT, WIDTH), np.int32)
    for lab in range(1, n + 1):
        cy, cx = rng.uniform(40, HEIGHT - 40), rng.uniform(40, WIDTH - 40)
        ry, rx = rng.uniform(20, 60, size=2)
        th = rng.uniform(0, np.pi)
        u = (yy - cy) * np.cos(th) + (xx - cx) * np.sin(th)
        v = -(yy - cy) * np.sin(th) + (xx - cx) * np.cos(th)
        gt[(u / ry) ** 2 + (v / rx) ** 2 <= 1] = lab
    return gt


def prob_maps(rng: np.random.Generator, gt: np.ndarray, poor: bool) -> tuple[np.ndarray, np.ndarray]:
    """float32 (object, contour) probabilities for ``gt``: poor = faint signal + smooth noise."""
    fg = ndimage.gaussian_filter((gt > 0).astype(float), 3)
    edge = ndimage.gaussian_filter((ndimage.morphological_gradient(gt, size=3) > 0).astype(float), 1.5)

    def noise(sigma: float) -> np.ndarray:
        z = ndimage.gaussian_filter(rng.standard_normal(gt.shape), sigma)
        return z / z.std()

    if poor:
        obj, cnt = 0.45 + 0.15 * (fg - 0.5) + 0.18 * noise(1.2), 0.35 + 0.3 * edge + 0.18 * noise(1.2)
    else:
        obj, cnt = fg + 0.05 * noise(2), 1.6 * edge + 0.05 * noise(2)
    return np.clip(obj, 0, 1).astype(np.float32), np.clip(cnt, 0, 1).astype(np.float32)


def evaluate(pp: Any, mx: Any, objs: list, cnts: list, gts: list, new: bool) -> tuple[dict[str, Any], float, float]:
    """Tune on the first N_VAL maps, score all: (result with ``cpu_s``, tuning seconds, scoring
    seconds); seconds are wall-clock, ``cpu_s`` the process CPU time of both (the machine is
    shared, so CPU time is the load-independent figure; the code is single-threaded)."""
    c0, t0 = time.process_time(), time.perf_counter()
    if new:
        tuned = pp.tune_postprocess(objs[:N_VAL], cnts[:N_VAL], gts[:N_VAL], extend=3, **FIXED)
        best, n_points, edge = tuned.thresholds, len(tuned.table), tuned.edge
    else:
        best, table = pp.tune_postprocess(objs[:N_VAL], cnts[:N_VAL], gts[:N_VAL], **FIXED)
        n_points, edge = len(table), None
    t1 = time.perf_counter()
    res = mx.glas_metrics(gts, [pp.instances_from_probs(o, c, **best) for o, c in zip(objs, cnts)])
    t2 = time.perf_counter()
    out: dict[str, Any] = {"cpu_s": time.process_time() - c0}
    out.update({k: res[k] for k in ("f1", "object_dice", "object_hausdorff", "n_pred", "n_gt")})
    out.update(thresholds={k: best[k] for k in ("object_threshold", "contour_threshold")},
               grid_points=n_points, edge=edge)
    return out, t1 - t0, t2 - t1


def main() -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-images", type=int, default=165)
    ap.add_argument("--skip-old", action="store_true", help="time the new path only")
    n = ap.parse_args().n_images
    rng = np.random.default_rng(0)
    gts = [gland_map(rng) for _ in range(n)]
    maps = [prob_maps(rng, g, poor=k % 3 != 2) for k, g in enumerate(gts)]
    objs, cnts = [m[0] for m in maps], [m[1] for m in maps]
    frags = [postprocess.instances_from_probs(o, c, return_stats=True)[1]["n_components"]
             for o, c, k in zip(objs, cnts, range(n)) if k % 3 != 2][:10]
    t0 = time.perf_counter()
    for o, c in zip(objs, cnts):
        score.to_source(o[::2, ::2], o.shape), score.to_source(c[::2, ::2], c.shape)
    t_resize = time.perf_counter() - t0
    new, new_tune, new_score = evaluate(postprocess, metrics, objs, cnts, gts, new=True)
    result: dict[str, Any] = {
        "n_images": n, "n_val": N_VAL, "height": HEIGHT, "width": WIDTH, "poor_share": 2 / 3, **FIXED,
        "seed_components_per_poor_image_at_0.5": float(np.mean(frags)),
        "resize_half_to_full_s": t_resize,
        "new": {"tune_s": new_tune, "score_s": new_score, "total_s": new_tune + new_score, **new},
        "target_s": TARGET_S, "meets_target": new_tune + new_score < TARGET_S,
        "load_average_1min": os.getloadavg()[0],
    }
    if not ap.parse_args().skip_old:
        old_pp, old_mx = load_old()
        old, old_tune, old_score = evaluate(old_pp, old_mx, objs, cnts, gts, new=False)
        result["old"] = {"commit": OLD_COMMIT, "tune_s": old_tune, "score_s": old_score,
                         "total_s": old_tune + old_score, **old}
        result["speedup"] = result["old"]["total_s"] / result["new"]["total_s"]
        result["speedup_cpu"] = result["old"]["cpu_s"] / result["new"]["cpu_s"]
    out = Path(__file__).resolve().parent / "results" / "eval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
