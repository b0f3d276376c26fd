"""Does INQ retraining move the free weights? (issue 10) -> benchmarks/results/retrain_lr_pilot.json.

One float network (the standard profile's final architecture) on 20 random pool images (the standard profile's annotated set), then
5-bit INQ from it at several ``retrain_lr`` values (same steps); movement is read by
:func:`qfcn.train.diagnostics.retraining_movement` (share of free weights whose level moved, mean
levels moved). Validation Dice of each NTQ model shows what the larger steps cost or gain. No test
part is loaded.

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/pilot_retrain_lr.py`` (about 5 minutes).
"""
from __future__ import annotations

import dataclasses
import json
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.pilot_regime import DATA, _dataset

HERE = Path(__file__).resolve().parent
MODEL, FLOAT_STEPS, RETRAIN_STEPS = dict(width=0.25, n_stages=6), 600, 15
LRS = (1e-4, 3e-4, 1e-3, 2e-3)


def main() -> None:
    torch.set_num_threads(2)
    from qfcn import score, train
    from qfcn.train import diagnostics
    with tempfile.TemporaryDirectory() as root:
        ds = _dataset(Path(root))
        order = np.random.default_rng(0).permutation(len(ds.train))
        annotated = [ds.train[i] for i in order[:20]]  # the standard profile's final annotated set
        cfg = train.TrainConfig(model=MODEL, crop_size=128, batch_size=8, lr=0.002, float_steps=FLOAT_STEPS,
                                retrain_steps=RETRAIN_STEPS, bf16=True, seed=0, contour_width=2)
        flt = train.train_model(annotated, cfg, out_dir=Path(root) / "float", progress=False)
        base = score.evaluate_ensemble([flt.model], {"val": ds.val}, val=ds.val)["splits"]["val"]["f1"]
        rows = []
        for lr in LRS:
            q_cfg = dataclasses.replace(cfg, scheme="inq", bits=5, retrain_lr=lr)
            q = train.train_model(annotated, q_cfg, out_dir=Path(root) / f"inq_{lr:g}", init=flt.model,
                                  warm_start=False, progress=False)
            mv = diagnostics.retraining_movement(flt.model, q.model, "inq", 5, iterative_steps=q_cfg.iterative_steps,
                                                 strategy=q_cfg.strategy, seed=0, per_channel=True)["overall"]
            val = score.evaluate_ensemble([q.model], {"val": ds.val}, val=ds.val)["splits"]["val"]
            rows.append(dict(retrain_lr=lr, **mv, val_f1=val["f1"], val_object_dice=val["object_dice"]))
            print(f"retrain_lr {lr:g}: levels moved {mv['mean_levels_moved']:.3f}, changed "
                  f"{mv['level_change_fraction']:.3f}, validation F1 {val['f1']:.3f}", flush=True)
    out = HERE / "results" / "retrain_lr_pilot.json"
    out.write_text(json.dumps({"machine": platform.platform(), "data": DATA, "model": MODEL,
                               "float_steps": FLOAT_STEPS, "retrain_steps": RETRAIN_STEPS, "float_validation": base,
                               "rows": rows}, indent=2, default=float) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
