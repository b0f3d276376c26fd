"""Regime pilot (issue 10): which final-network configuration overfits, measured WITHOUT a test
part -> benchmarks/results/regime_pilot.json.

The standard profile needs float final networks whose training-image F1 exceeds their held-out
F1 (otherwise "does quantization reduce overfitting?" is never posed). This pilot trains one
float network on each of two disjoint random folds of the pool (``n`` images each: 34 is the final
annotated set at budget 0.5 of a 68-image pool), tunes post-processing on the fixed validation
images as notebook 04 does, and scores both folds with both networks. The gap is cross-fitted so
that the folds' own difficulty cancels: ``gap = mean over the two networks of F1(own fold) -
F1(other fold)``, i.e. how much better an image scores when it was trained on. Test A / Test B
are not loaded (a first version compared the annotated half with the rest of the pool and measured
the halves' difficulty, not overfitting). The chosen configuration is the cheapest whose gap is
>= 0.05 (margin over the 0.03 the study must show on Test A).

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/pilot_regime.py [--jobs 2]`` (about 15 minutes).
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = dict(seed=0, n_train=85, n_test_a=1, n_test_b=1, difficulty=0.5, scale=0.5, val_fraction=0.2,
            labels="instances")
#: name -> (SAFCN width, n_stages, float steps, annotated images per fold)
CONFIGS = {
    "fast_w0.25_s4_200_n34": (0.25, 4, 200, 34),
    "w0.25_s6_600_n34": (0.25, 6, 600, 34),
    "w0.25_s6_600_n20": (0.25, 6, 600, 20),
    "w0.5_s6_600_n20": (0.5, 6, 600, 20),
    "w0.5_s6_1200_n34": (0.5, 6, 1200, 34),
}


def _dataset(root: Path):
    from qfcn.data import prepare
    ds, _ = prepare.prepare_glas(root, synthetic=True, params=DATA, contour_width_px=2)
    return ds


def run_fold(name: str, fold: int, root: str) -> dict:
    """Train on fold ``fold`` of configuration ``name``; pooled F1 on both folds."""
    import torch
    torch.set_num_threads(1)
    from qfcn import score, train
    ds = _dataset(Path(root))
    width, n_stages, steps, n = CONFIGS[name]
    order = np.random.default_rng(0).permutation(len(ds.train))
    folds = [[ds.train[i] for i in order[:n]], [ds.train[i] for i in order[n:2 * n]]]
    cfg = train.TrainConfig(model=dict(width=width, n_stages=n_stages), crop_size=128, batch_size=8, lr=0.002,
                            float_steps=steps, bf16=True, seed=fold, contour_width=2)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        res = train.train_model(folds[fold], cfg, out_dir=tmp, progress=False)
    t_train = time.perf_counter() - t0
    ev = score.evaluate_ensemble([res.model], {"own": folds[fold], "other": folds[1 - fold]}, val=ds.val, min_area=50)
    n_weights = sum(p.numel() for p in res.model.parameters() if p.dim() == 4)
    return dict(name=name, fold=fold, train_s=t_train, s_per_step=t_train / steps, conv_weights=n_weights,
                own_f1=ev["splits"]["own"]["f1"], other_f1=ev["splits"]["other"]["f1"])


def summarise(name: str, folds: list[dict]) -> dict:
    width, n_stages, steps, n = CONFIGS[name]
    gap = float(np.mean([f["own_f1"] - f["other_f1"] for f in folds]))
    return dict(name=name, width=width, n_stages=n_stages, float_steps=steps, n_annotated=n,
                conv_weights=folds[0]["conv_weights"], s_per_step=float(np.mean([f["s_per_step"] for f in folds])),
                train_f1=float(np.mean([f["own_f1"] for f in folds])),
                held_out_f1=float(np.mean([f["other_f1"] for f in folds])), gap=gap, folds=folds)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()
    names = args.only or list(CONFIGS)
    with tempfile.TemporaryDirectory() as root:
        _dataset(Path(root))  # written once, read by every job
        jobs = [(nm, f) for nm in names for f in (0, 1)]
        with ProcessPoolExecutor(args.jobs) as pool:
            done = list(pool.map(run_fold, *zip(*jobs), [root] * len(jobs)))
    rows = [summarise(nm, [d for d in done if d["name"] == nm]) for nm in names]
    for r in rows:
        print(f"{r['name']:>22}: own-fold F1 {r['train_f1']:.3f} other fold {r['held_out_f1']:.3f} gap {r['gap']:+.3f} "
              f"({r['s_per_step']:.3f} s/step, {r['conv_weights']} conv weights)")
    out = HERE / "results" / "regime_pilot.json"
    prev = json.loads(out.read_text()).get("configs", []) if out.exists() else []
    prev = [p for p in prev if "folds" in p]  # rows of the first, uncrossed version are not comparable
    keep = [p for p in prev if p["name"] not in names]
    out.write_text(json.dumps({"machine": {"platform": platform.platform(), "threads_per_job": 1,
                                           "jobs_at_once": args.jobs},
                               "data": DATA, "annotated": "random half of the pool (seed 0)",
                               "holdout": "the other half of the pool (never a test part)",
                               "configs": keep + rows}, indent=2) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
