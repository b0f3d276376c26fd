"""Seconds per training step and per suggestion stage at the fast profile's sizes (CPU).

One stage = train K members on the annotated images (warm-started, as in later stages of
notebook 03), predict every unannotated image with the ensemble, rank by uncertainty and pick
k by greedy max-cover. Writes benchmarks/results/stage.json.

    .venv/bin/python benchmarks/bench_stage.py
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from qfcn import data, infer, suggest, train

HERE = Path(__file__).resolve().parent
K, STEPS, K_PICK, K_C = 3, 25, 9, 18


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    ds = data.load_glas(data.make_glas(tmp / "glas", seed=0, n_train=85, n_test_a=1, n_test_b=1, scale=0.5))
    by_name = {s.name: s for s in ds.train}
    pool = list(by_name)
    cfg = train.TrainConfig(model=dict(width=0.25, n_stages=4), crop_size=128, batch_size=8, lr=2e-3,
                            float_steps=STEPS, retrain_steps=10, scheme="inq", bits=5, bf16=True, seed=0)
    timing: dict[str, list[float]] = {"train": [], "predict": []}

    def train_fn(round_, annotated):
        t = time.perf_counter()
        rs = train.train_ensemble([by_name[n] for n in annotated], cfg, k=K, out_dir=tmp / f"stage_{round_}",
                                  progress=False)
        timing["train"].append(time.perf_counter() - t)
        return [r.model for r in rs]

    def predict_fn(models, names):
        t = time.perf_counter()
        preds = infer.predict_dataset(models, [by_name[n] for n in names], progress=False)
        timing["predict"].append(time.perf_counter() - t)
        return (np.array([suggest.uncertainty(p["member_object"]) for p in preds]),
                np.stack([p["member_descriptor"] for p in preds]), {})

    t0 = time.perf_counter()
    res = suggest.run_suggestion(pool, selection="suggestive", k_pick=K_PICK, k_candidates=K_C, budget=0.5,
                                 initial_fraction=0.3, seed=0, train_fn=train_fn, predict_fn=predict_fn,
                                 k_members=K, progress=False)
    total = time.perf_counter() - t0
    steps_per_member = STEPS + cfg.retrain_steps * (len(cfg.iterative_steps) - 1)
    out = {"setup": f"85 training images at scale 0.5, K={K} INQ-5 members, {steps_per_member} steps each "
                    f"(crop 128, batch 8, bf16), k={K_PICK}, K_c={K_C}, CPU",
           "stages": len(res.rounds) - 1, "seconds_total": total,
           "seconds_per_stage": [r.seconds for r in res.rounds[1:]],
           "seconds_train_per_stage": timing["train"], "seconds_predict_per_stage": timing["predict"],
           "seconds_per_training_step": float(np.mean(timing["train"]) / (K * steps_per_member))}
    path = HERE / "results" / "stage.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
