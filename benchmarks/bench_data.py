"""Benchmark the synthetic generator, the GlaS loader and the training crops.

Run: ``.venv/bin/python benchmarks/bench_data.py``; prints and writes
``benchmarks/results/data.json``. Ratios are measured within one run.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from qfcn import data

RESULTS = Path(__file__).resolve().parent / "results"


def _per_item(fn, n: int) -> float:
    fn(0)
    t = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - t) / n


def main() -> dict:
    out: dict = {"machine": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads()}
    for scale, n in ((1.0, 6), (0.5, 12)):
        t = time.perf_counter()
        for i in range(n):
            data.draw_split_image(0, "train", i + 1, grade=("benign", "malignant")[i % 2], scale=scale)
        out[f"generator_s_per_image_scale_{scale}"] = round((time.perf_counter() - t) / n, 4)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        root = data.make_glas(Path(tmp) / "glas", n_train=12, n_test_a=4, n_test_b=4, scale=1.0)
        out["make_glas_s_per_image_scale_1.0_with_writes"] = round((time.perf_counter() - t) / 20, 4)
        t = time.perf_counter()
        ds = data.load_glas(root)
        out["loader_images_per_s_scale_1.0"] = round(20 / (time.perf_counter() - t), 1)
        t = time.perf_counter()
        data.glas_manifest(root)
        out["manifest_s_for_20_images"] = round(time.perf_counter() - t, 3)
        for name, kwargs in (("augment", {}), ("augment_no_elastic", {"elastic": False}),
                             ("no_augment", {"augment": False})):
            crops = data.GlasCrops(ds.train, crop_size=256, n_crops=60, seed=0, **kwargs)
            out[f"crops_items_per_s_{name}"] = round(1.0 / _per_item(crops.__getitem__, 60), 1)
        inst = ds.train[0].instances
        out["targets_ms_per_full_image"] = round(1000 * _per_item(lambda i: data.object_contour_targets(inst, 3), 10), 2)
    out["augment_cost_ratio"] = round(out["crops_items_per_s_no_augment"] / out["crops_items_per_s_augment"], 2)
    return out


if __name__ == "__main__":
    res = main()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "data.json").write_text(json.dumps(res, indent=1) + "\n")
    for k, v in res.items():
        print(f"{k:48s} {v}")
