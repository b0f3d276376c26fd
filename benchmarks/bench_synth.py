"""Benchmark and look at the synthetic GlaS generator (docs/method.md §2) at GlaS resolution.

Renders a few 775x522 images per difficulty (0, 0.5, 1; grades alternating benign / malignant)
and writes simple statistics to ``benchmarks/results/synth.json`` (seconds per image, also in units of a fixed blur workload timed in the same run, glands
per image, touching pairs, fragmented / solid / cribriform glands, mean gland area, decoy and
fold pixel fractions, colour statistics in skimage HED units) and the example figure
``benchmarks/results/synth_examples.png`` (image beside its annotation outlines, decoys
outlined in yellow).

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/bench_synth.py [n_per_difficulty]``.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402
from skimage.color import rgb2hed  # noqa: E402
from skimage.segmentation import find_boundaries  # noqa: E402

from qfcn.data import synth  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DIFFICULTIES = (0.0, 0.5, 1.0)
SHAPE = (522, 775)


def _render(d: float, i: int):
    rng = np.random.default_rng(np.random.SeedSequence([2024, int(round(d * 100)), i]))
    grade = ("benign", "malignant")[i % 2]
    t = time.perf_counter()
    out = synth.render_layers(rng, d, *SHAPE, grade=grade, scale=1.0)
    return out, time.perf_counter() - t


def _stats(rows: list) -> dict:
    images, insts, masks, infos = zip(*rows)
    hed = [rgb2hed(im) for im in images]
    areas = [np.bincount(x.ravel())[1:] for x in insts]
    grey = [im.mean(-1) for im in images]
    mean = {k: round(float(np.mean([f[k] for f in infos])), 4) for k in
            ("n_glands", "n_touching_pairs", "n_fragmented", "n_solid", "n_cribriform", "n_buds", "n_decoys",
             "decoy_fraction", "fold_fraction")}
    mean.update({
        "mean_gland_area_px": round(float(np.mean(np.concatenate(areas))), 1),
        "gland_pixel_fraction": round(float(np.mean([(x > 0).mean() for x in insts])), 4),
        "decoys_on_glands_px": int(sum((m & (x > 0)).sum() for m, x in zip(masks, insts))),
        "h_median": round(float(np.median([np.median(h[..., 0]) for h in hed])), 4),
        "h_p99": round(float(np.median([np.percentile(h[..., 0], 99) for h in hed])), 4),
        "e_median": round(float(np.median([np.median(h[..., 1]) for h in hed])), 4),
        "grey_mean": round(float(np.mean([g.mean() for g in grey])), 1),
        "grey_std_in_glands": round(float(np.mean([g[x > 0].std() for g, x in zip(grey, insts)])), 1),
        "grey_std_in_stroma": round(float(np.mean([g[x == 0].std() for g, x in zip(grey, insts)])), 1),
    })
    return mean


def _overlay(image: np.ndarray, inst: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Image faded, glands tinted by label, gland outlines green, decoy outlines yellow."""
    out = image.astype(np.float32) * 0.55 + 255 * 0.45
    hue = np.random.default_rng(0).uniform(60, 255, (int(inst.max()) + 1, 3))
    out[inst > 0] = 0.6 * out[inst > 0] + 0.4 * hue[inst[inst > 0]]
    out[find_boundaries(inst, mode="inner")] = (0, 160, 0)
    out[find_boundaries(mask, mode="inner")] = (230, 200, 0)
    return out.astype(np.uint8)


def _figure(examples: dict, path: Path) -> None:
    fig, axes = plt.subplots(len(examples), 4, figsize=(20, 4.4 * len(examples)))
    for r, (d, rows) in enumerate(examples.items()):
        for c, (image, inst, mask, info) in enumerate(rows[:2]):
            axes[r, 2 * c].imshow(image)
            axes[r, 2 * c].set_title(f"d={d} {info['grade']}: {info['n_glands']} glands, "
                                     f"{info['n_fragmented']} fragmented, {info['n_decoys']} decoys", fontsize=10)
            axes[r, 2 * c + 1].imshow(_overlay(image, inst, mask))
            axes[r, 2 * c + 1].set_title("annotation (green) / decoys (yellow, unlabelled)", fontsize=10)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _yardstick_s() -> float:
    """Seconds for a fixed numpy/scipy workload (a 3-channel Gaussian blur of one 775x522 image,
    best of 5): the generator's time is also reported in these units, so runs on a loaded or a
    different machine compare."""
    x = np.random.default_rng(0).random((*SHAPE, 3), dtype=np.float32)
    best = np.inf
    for _ in range(5):
        t = time.perf_counter()
        ndimage.gaussian_filter(x, (3.0, 3.0, 0))
        best = min(best, time.perf_counter() - t)
    return best


def main(n: int = 4) -> dict:
    out: dict = {"machine": platform.processor() or platform.machine(), "image_shape": list(SHAPE),
                 "generator_version": synth.GENERATOR_VERSION, "n_per_difficulty": n}
    examples, times = {}, {}
    _render(0.5, 99)  # warm-up
    for d in DIFFICULTIES:
        rows = []
        for i in range(n):
            r, dt = _render(d, i)
            rows.append(r)
            times.setdefault(d, []).append(dt)
        examples[d] = rows
        out[f"difficulty_{d}"] = {"s_per_image": round(float(np.mean(times[d])), 3), **_stats(rows)}
    out["s_per_image"] = round(float(np.mean(sum(times.values(), []))), 3)
    out["s_per_image_max"] = round(float(np.max(sum(times.values(), []))), 3)
    out["yardstick_s"] = round(_yardstick_s(), 4)
    out["image_in_yardsticks"] = round(out["s_per_image"] / out["yardstick_s"], 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    _figure(examples, RESULTS / "synth_examples.png")
    return out


if __name__ == "__main__":
    res = main(int(sys.argv[1]) if len(sys.argv) > 1 else 4)
    (RESULTS / "synth.json").write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))
