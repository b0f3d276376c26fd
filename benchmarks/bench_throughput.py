"""Fast-profile training throughput, old (the worktree's base commit) vs new, in ONE run
-> benchmarks/results/throughput.json and benchmarks/results/augment_examples.png.

Every configuration runs as TWO 1-thread training jobs at once (how the study runs with
``--workers 2`` on the 2-core machine), fast-profile settings: SAFCN width 0.25, 4 stages,
crop 128, batch 8, lr 0.002, bf16 autocast, synthetic GlaS at scale 0.5. Steps/s per core =
the pair's summed steps/s / 2. Each job times the steps between step callbacks (the first
``WARM`` left out) and, by wrapping ``_Batches.from_step``, the seconds spent waiting for
each batch (data share = wait / step interval). The old code is ``git archive <base> qfcn``
in a temp folder (base: ``$QFCN_BASE`` or ``git merge-base HEAD main``); configurations are
interleaved over ``REPEATS`` rounds so machine load drifts hit all alike.

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/bench_throughput.py`` (3-6 minutes).
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STEPS, WARM, REPEATS = 30, 4, 3
JOB = r"""
import json, sys, time, numpy as np, torch
torch.set_num_threads(1)
import qfcn
from qfcn import data, train
from qfcn.train import batches as B
arr = np.load(sys.argv[1])
samples = [data.Sample(f"train_{k + 1}", "train", arr[f"image{k}"], arr[f"inst{k}"], "benign")
           for k in range(int(arr["n"]))]
waits = []
orig = B._Batches.from_step
def timed(self, step):
    it = orig(self, step)
    while True:
        t = time.perf_counter(); b = next(it); waits.append(time.perf_counter() - t); yield b
B._Batches.from_step = timed
stamps = []
extra = json.loads(sys.argv[3])
cfg = train.TrainConfig(model=dict(width=0.25, n_stages=4), crop_size=128, batch_size=8, lr=0.002, bf16=True,
                        float_steps=int(sys.argv[4]), seed=0, ckpt_every=10 ** 6, device="cpu", **extra)
train.train_model(samples, cfg, out_dir=sys.argv[2], progress=False,
                  callback=lambda e, m: stamps.append(time.perf_counter()))
w = int(sys.argv[5])
dt = np.diff(stamps)[w:]
print(json.dumps({"qfcn": qfcn.__file__, "s_per_step": float(np.median(dt)), "mean_s_per_step": float(dt.mean()),
                  "data_wait_s": float(np.median(waits[w + 1:])), "data_share": float(sum(waits[w + 1:]) / dt.sum())}))
"""
#: side-by-side pairs: two 1-thread jobs at once, (code, extra TrainConfig fields) each. "old_code" is
#: the base commit with the TrainConfig the notebooks build (bf16, defaults otherwise); "new" the
#: same TrainConfig on this code (new defaults: batched augmentation, channels_last, auto workers).
PAIRS = {
    "old_vs_new": (("old", {}), ("new", {})),
    "old_vs_new_contiguous": (("old", {}), ("new", {"channels_last": False})),
    "workers0_x2": (("new", {"num_workers": 0}), ("new", {"num_workers": 0})),
    "workers1_x2": (("new", {"num_workers": 1}), ("new", {"num_workers": 1})),
}
EXAMPLES = r"""
import sys, numpy as np, torch
from qfcn import data
arr = np.load(sys.argv[1])
s = data.Sample("train_1", "train", arr["image0"], arr["inst0"], "benign")
ds = data.GlasCrops([s], crop_size=128, n_crops=6, seed=3)
items = [ds[i] for i in range(6)]
np.savez(sys.argv[2], image=np.stack([it["image"].numpy() for it in items]),
         contour=np.stack([it["contour"].numpy() for it in items]))
"""


def _base_tree(tmp: Path) -> tuple[str, Path]:
    base = os.environ.get("QFCN_BASE") or subprocess.check_output(
        ["git", "merge-base", "HEAD", "main"], cwd=REPO, text=True).strip()
    out = tmp / "old"
    out.mkdir()
    archive = subprocess.check_output(["git", "archive", base, "qfcn"], cwd=REPO)
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return base, out


def _write_samples(path: Path, n: int = 12) -> None:
    sys.path.insert(0, str(REPO))
    from qfcn import data
    arrays = {"n": n}
    for k in range(n):
        image, inst, _ = data.draw_split_image(0, "train", k + 1, grade=("benign", "malignant")[k % 2], scale=0.5)
        arrays[f"image{k}"], arrays[f"inst{k}"] = image, inst.astype(np.int32)
    np.savez(path, **arrays)


def _pair(trees: dict[str, Path], samples: Path, jobs: tuple, tmp: Path) -> list[dict]:
    """Run the two (code, extra) jobs at once; their timings."""
    procs = []
    for code, extra in jobs:
        env = {**os.environ, "PYTHONPATH": str(trees[code]), "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, "-c", JOB, str(samples), tempfile.mkdtemp(dir=tmp),
                                       json.dumps(extra), str(STEPS), str(WARM)], env=env, stdout=subprocess.PIPE, text=True,
                                      cwd=tmp))  # not the repo: `python -c` puts the cwd first on sys.path
    outs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError(f"a training job failed ({jobs})")
    return [json.loads(o.strip().splitlines()[-1]) for o in outs]


def _figure(trees: dict[str, Path], samples: Path, tmp: Path) -> None:
    rows = {}
    for code, tree in trees.items():
        env = {**os.environ, "PYTHONPATH": str(tree)}
        subprocess.run([sys.executable, "-c", EXAMPLES, str(samples), str(tmp / f"ex_{code}.npz")], env=env, check=True,
                       cwd=tmp)
        rows[code] = np.load(tmp / f"ex_{code}.npz")
    fig, axes = plt.subplots(2, 6, figsize=(13, 4.6))
    for r, (code, ex) in enumerate(rows.items()):
        for c in range(6):
            ax = axes[r, c]
            ax.imshow(ex["image"][c].transpose(1, 2, 0))
            ax.contour(ex["contour"][c], levels=[0.5], colors="yellow", linewidths=0.6)
            ax.set_xticks([]), ax.set_yticks([])
        axes[r, 0].set_ylabel(f"{code}: {'scipy per item' if code == 'old' else 'batched tensors'}")
    fig.suptitle("Augmented 128 px crops, seed 3, items 0-5 (contour target in yellow)")
    fig.tight_layout()
    fig.savefig(HERE / "results" / "augment_examples.png", dpi=80)


def main() -> dict:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base, old_tree = _base_tree(tmp)
        trees = {"old": old_tree, "new": REPO}
        samples = tmp / "samples.npz"
        _write_samples(samples)
        _pair(trees, samples, PAIRS["workers0_x2"], tmp)  # warm-up (imports, caches)
        runs: dict[str, list[list[dict]]] = {k: [] for k in PAIRS}
        for _ in range(REPEATS):
            for name, jobs in PAIRS.items():
                runs[name].append(_pair(trees, samples, jobs, tmp))
        _figure(trees, samples, tmp)
    res: dict = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "loadavg_end": os.getloadavg()},
                 "base_commit": base,
                 "setup": f"fast profile: SAFCN width 0.25, 4 stages, crop 128, batch 8, bf16, 1 thread per job, "
                          f"2 jobs at once (a pair), {STEPS} steps per job ({WARM} untimed), {REPEATS} rounds",
                 "pairs": {k: [{"code": c, "extra": e} for c, e in jobs] for k, jobs in PAIRS.items()},
                 "runs": runs}
    for name in ("old_vs_new", "old_vs_new_contiguous"):  # same load for both jobs of a pair
        ratios = [a["s_per_step"] / b["s_per_step"] for a, b in runs[name]]
        res[name] = {"speedup_median": statistics.median(ratios), "speedups": ratios,
                     "old_steps_per_s_per_core": statistics.median(1 / a["s_per_step"] for a, _ in runs[name]),
                     "new_steps_per_s_per_core": statistics.median(1 / b["s_per_step"] for _, b in runs[name]),
                     "old_data_share": statistics.median(a["data_share"] for a, _ in runs[name]),
                     "new_data_share": statistics.median(b["data_share"] for _, b in runs[name]),
                     "old_data_wait_s": statistics.median(a["data_wait_s"] for a, _ in runs[name]),
                     "new_data_wait_s": statistics.median(b["data_wait_s"] for _, b in runs[name])}
    per_core = {k: statistics.median(sum(1 / j["s_per_step"] for j in pair) / 2 for pair in runs[k])
                for k in ("workers0_x2", "workers1_x2")}
    res["workers"] = {"steps_per_s_per_core": per_core, "workers1_over_workers0": per_core["workers1_x2"] / per_core["workers0_x2"],
                      "data_share": {k: statistics.median(j["data_share"] for p in runs[k] for j in p) for k in per_core}}
    res["wall_s"] = time.perf_counter() - t0
    return res


if __name__ == "__main__":
    (HERE / "results").mkdir(exist_ok=True)
    result = main()
    (HERE / "results" / "throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
