"""Does the representativeness step carry signal? Both similarity forms on a trained ensemble
-> benchmarks/results/similarity.json (``docs/method.md §5``, issue 10).

A tiny suggestive round on a small synthetic GlaS: ``N_TRAIN`` training images at scale
``SCALE``, a seeded 10% initial set, ``K`` float SA FCNs (width 0.25, 4 stages) trained
``STEPS`` steps each on bootstrap resamples of it, then every unannotated image predicted
(:func:`qfcn.infer.predict_dataset`: uncertainty, per-member descriptors). For each
similarity form (:data:`qfcn.suggest.SIMILARITY_FORMS`) it reports

* the spread of the off-diagonal similarities (min, 5/50/95 percentiles, max, sd);
* the round's pick (``K_C`` most uncertain candidates, ``K_PICK`` by greedy max-cover):
  coverage ``F`` against ``R`` random subsets of the same candidates of the same size, as
  a z-score (:func:`qfcn.suggest.coverage_against_random`), and the share of ``F`` that
  the first pick already reaches (near 1: ``F`` is saturated, sets are hard to tell apart);
* the same z-score for ``N_SETS`` further candidate sets of ``K_C`` pool images drawn at
  random (more picks from the same ensemble, no extra training): mean, median, share >= 2;
* each form's pick scored under the other form's ``F`` (cross-check);
* a check that uses neither form: the generator's per-image content (``synth.json``:
  grade, difficulty, glands, decoys, touching pairs; standardised over the pool). Does the
  similarity follow content (Spearman correlation of similarity with minus the content
  distance; how often an image's most similar image has its grade, against the base
  rate), and does the pick represent the pool's content (mean over the pool of the
  content distance to the nearest picked image, against random subsets of the same
  candidates, as a z-score where positive = closer than random)?

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/bench_similarity.py`` (one torch thread,
about a minute). Everything is measured within this one run.
"""
from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo's qfcn
from qfcn import data, infer, suggest, train

OUT = Path(__file__).resolve().parent / "results" / "similarity.json"
N_TRAIN, SCALE, K, STEPS = 40, 0.5, 4, 40
K_PICK, K_C, R, N_SETS, SEED = 8, 16, 200, 30, 0


def spread(sim: np.ndarray) -> dict:
    off = sim[~np.eye(sim.shape[0], dtype=bool)]
    q = np.percentile(off, [5, 50, 95])
    return {"min": float(off.min()), "p05": float(q[0]), "median": float(q[1]), "p95": float(q[2]),
            "max": float(off.max()), "sd": float(off.std())}


def pick_and_check(sim: np.ndarray, cands: list[int], rng: np.random.Generator) -> dict:
    chosen = [cands[j] for j in suggest.select_representative(sim[cands], K_PICK)]
    check = suggest.coverage_against_random(sim, chosen, cands, n_draws=R, rng=rng)
    return {"picked": chosen, **check,
            "first_pick_share": suggest.coverage(sim, chosen[:1]) / check["coverage"]}


CONTENT = ("difficulty", "n_glands", "n_decoys", "n_touching_pairs")


def content_vectors(root: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(n, 5) standardised generator content and (n,) grade labels of the named images."""
    info = json.loads((root / "synth.json").read_text())["images"]
    grade = np.array([info[n]["grade"] == "malignant" for n in names], dtype=float)
    x = np.column_stack([grade] + [[float(info[n][k]) for n in names] for k in CONTENT])
    return (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1.0), grade


def content_check(sim: np.ndarray, content: np.ndarray, grade: np.ndarray) -> dict:
    """How well the similarity follows the generator's content (no network involved)."""
    dist = np.linalg.norm(content[:, None] - content[None], axis=-1)
    off = ~np.eye(len(grade), dtype=bool)
    nearest = np.argmax(np.where(off, sim, -np.inf), axis=1)
    same = grade[:, None] == grade[None, :]
    return {"spearman_sim_vs_minus_content_distance": float(stats.spearmanr(sim[off], -dist[off])[0]),
            "nearest_same_grade": float(np.mean(grade[nearest] == grade)),
            "same_grade_base_rate": float(same[off].mean())}


def content_coverage_z(dist: np.ndarray, picked: list[int], cands: list[int], rng: np.random.Generator) -> float:
    """(random mean - picked) / sd of the mean content distance of the pool to its nearest picked image."""
    draws = np.array(cands)[np.argsort(rng.random((R, len(cands))), axis=1)[:, :len(picked)]]
    rand = dist[draws].min(axis=1).mean(axis=1)
    return float((rand.mean() - dist[picked].min(axis=0).mean()) / rand.std(ddof=1))


def train_and_predict(tmp: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    root = data.make_glas(tmp / "glas", seed=SEED, n_train=N_TRAIN, n_test_a=1, n_test_b=1, scale=SCALE)
    ds = data.load_glas(root)
    names = [s.name for s in ds.train]
    initial, pool = suggest.initial_split(names, 0.1, SEED)
    by_name = {s.name: s for s in ds.train}
    cfg = train.TrainConfig(model=dict(width=0.25, n_stages=4), crop_size=96, batch_size=8, lr=2e-3,
                            float_steps=STEPS, seed=SEED)
    t0 = time.perf_counter()
    members = train.train_ensemble([by_name[n] for n in initial], cfg, k=K, out_dir=tmp / "ens", progress=False)
    t1 = time.perf_counter()
    preds = infer.predict_dataset([r.model for r in members], [by_name[n] for n in pool], device="cpu",
                                  progress=False)
    t2 = time.perf_counter()
    u = np.array([suggest.uncertainty(p["member_object"]) for p in preds])
    desc = np.stack([p["member_descriptor"] for p in preds])
    content, grade = content_vectors(root, pool)
    return u, desc, {"n_initial": len(initial), "n_pool": len(pool), "train_s": t1 - t0, "predict_s": t2 - t1,
                     "content": content, "grade": grade}


def main() -> dict:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        u, desc, info = train_and_predict(Path(tmp))
    content, grade = info.pop("content"), info.pop("grade")
    dist = np.linalg.norm(content[:, None] - content[None], axis=-1)
    sims = {form: suggest.descriptor_similarity(desc, form) for form in suggest.SIMILARITY_FORMS}
    cands = suggest.top_uncertain(u, K_C)
    set_rng = np.random.default_rng([SEED, 1])
    extra_sets = [sorted(set_rng.choice(len(u), K_C, replace=False).tolist()) for _ in range(N_SETS)]
    forms = {}
    for i, (form, sim) in enumerate(sims.items()):
        main_pick = pick_and_check(sim, cands, np.random.default_rng([SEED, 2, i]))
        main_pick["content_coverage_z"] = content_coverage_z(dist, main_pick["picked"], cands,
                                                             np.random.default_rng([SEED, 5]))
        extra = [pick_and_check(sim, c, np.random.default_rng([SEED, 3, i, j])) for j, c in enumerate(extra_sets)]
        zs = np.array([e["coverage_z"] for e in extra], dtype=float)
        cz = np.array([content_coverage_z(dist, e["picked"], c, np.random.default_rng([SEED, 6, j]))
                       for j, (e, c) in enumerate(zip(extra, extra_sets))])
        forms[form] = {"spread": spread(sim), "content": content_check(sim, content, grade),
                       "uncertain_candidates": main_pick,
                       "random_candidate_sets": {"n": N_SETS, "z_mean": float(np.nanmean(zs)),
                                                 "z_median": float(np.nanmedian(zs)),
                                                 "share_z_ge_2": float(np.mean(zs >= 2.0)),
                                                 "z_min": float(np.nanmin(zs)),
                                                 "content_coverage_z_mean": float(cz.mean()),
                                                 "content_coverage_z_median": float(np.median(cz))}}
    for form, other in zip(suggest.SIMILARITY_FORMS, suggest.SIMILARITY_FORMS[::-1]):
        picked = forms[form]["uncertain_candidates"]["picked"]
        forms[form]["scored_under_" + other] = suggest.coverage_against_random(
            sims[other], picked, cands, n_draws=R, rng=np.random.default_rng([SEED, 4]))
    return {"setup": f"synthetic GlaS, {N_TRAIN} training images at scale {SCALE}; {info['n_initial']} initial "
                     f"(10%), K={K} float members (width 0.25, 4 stages), {STEPS} steps each (crop 96, "
                     f"batch 8); pool {info['n_pool']}; k_pick={K_PICK}, K_c={K_C}, R={R}; one torch thread",
            **info, "descriptor_shape": list(desc.shape), "forms": forms,
            "torch": torch.__version__, "numpy": np.__version__, "machine": platform.machine()}


if __name__ == "__main__":
    t = time.perf_counter()
    res = main()
    res["total_s"] = time.perf_counter() - t
    for form, r in res["forms"].items():
        s, p, rs = r["spread"], r["uncertain_candidates"], r["random_candidate_sets"]
        print(f"{form:>20}: sim [{s['min']:.3f}, {s['max']:.3f}] p05-p95 [{s['p05']:.3f}, {s['p95']:.3f}] "
              f"sd {s['sd']:.3f} | F {p['coverage']:.3f} vs {p['coverage_random_mean']:.3f} "
              f"+- {p['coverage_random_sd']:.3f}: z {p['coverage_z']:.2f}, first pick {p['first_pick_share']:.3f} "
              f"| {rs['n']} random candidate sets: z mean {rs['z_mean']:.2f}, >=2 in {rs['share_z_ge_2']:.0%}")
        c = r["content"]
        print(f"{'':>20}  content: spearman {c['spearman_sim_vs_minus_content_distance']:.3f}, nearest same grade "
              f"{c['nearest_same_grade']:.2f} (base {c['same_grade_base_rate']:.2f}); content coverage z: "
              f"uncertain candidates {p['content_coverage_z']:.2f}, random sets mean "
              f"{rs['content_coverage_z_mean']:.2f}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=1) + "\n")
    print(f"{res['total_s']:.0f} s; wrote {OUT}")
