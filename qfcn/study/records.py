"""The results record of a run, ``runs/<id>/final/metrics.json``: built, written and read here
only (notebook 04 builds and writes it, :mod:`qfcn.study.report` reads it).

Layout (before stamping; :func:`write_metrics` adds ``manifest_hash``, ``params_hash`` and
``code_version``, see :func:`qfcn.study.runs.stamp`)::

    {"run": {"name", "seed", "selection", "ntq_scheme", "ntq_bits", "n_members",
             "qsa_scheme", "qsa_bits", "k_members"},     # the last three only for ensemble selections
     "main": "<variant name of the run's own result>",    # "ntq" (quantized) or "float"
     "n_glands": {"test_a": int, "test_b": int},
     "size_table": [{"bits", "weight_bytes", "file_bytes", "float32_weight_bytes",
                     "float32_checkpoint_bytes"}, ...],
     "variants": {"<variant>": {"scheme", "bits", "n_members", "thresholds", "weight_bytes", "file_bytes",
                                 "splits": {"test_a": {"f1", "object_dice", "object_hausdorff", ...,
                                                       "per_image": [...]}, "test_b": {...},
                                            "train": {...}, "val": {...}}}}},
     "efficiency": [{"selection", "quantized", "budget", "n_images", "n_pool", "seed", "f1_a", "f1_b"}, ...]}
                                                          # only when the run drew the efficiency curve

Scores are pooled GlaS object metrics (docs/method.md §6); bytes are measured packed sizes of one
network's conv weights (float variants: float32). ``efficiency`` holds the points of the
annotation-efficiency curve (:func:`qfcn.score.efficiency_rows`: object F1 of the final ensemble
retrained at smaller budgets); a record without it is a run that did not draw the curve.

>>> import tempfile, pathlib
>>> run_dir = pathlib.Path(tempfile.mkdtemp())
>>> rec = metrics_record(run={"name": "r", "seed": 0}, main="float", n_glands={"test_a": 3},
...                      size_table=[], variants={"float": {"bits": 32, "splits": {"test_a": dict(f1=0.5, object_dice=0.6, object_hausdorff=9.0)}}})
>>> _ = write_metrics(run_dir / "final" / "metrics.json", rec, manifest_hash="m", params={"seed": 0})
>>> back = read_metrics(run_dir)
>>> back["manifest_hash"], main_scores(back)["test_a"]
('m', {'f1': 0.5, 'object_dice': 0.6, 'object_hausdorff': 9.0})
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from qfcn.io import atomic_write_json, read_json
from qfcn.study import runs

HEADLINE = ("f1", "object_dice", "object_hausdorff")  # the pooled metrics every table reports
RUN_KEYS = ("name", "seed", "selection", "qsa_scheme", "qsa_bits", "ntq_scheme", "ntq_bits")
TESTS = ("test_a", "test_b")
METRICS_FILE = Path("final") / "metrics.json"  # inside a run folder
#: one point of the annotation-efficiency curve (:func:`qfcn.score.efficiency_rows`); F1 pooled per test part
EFFICIENCY_KEYS = ("selection", "quantized", "budget", "n_images", "n_pool", "seed", "f1_a", "f1_b")


def metrics_record(*, run: dict[str, Any], main: str, n_glands: dict[str, int], size_table: list[dict[str, Any]],
                   variants: dict[str, dict[str, Any]], efficiency: list[dict[str, Any]] | None = None,
                   retraining: dict[str, Any] | None = None, steps: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``metrics.json`` record of one run (the layout above, before stamping). Optional keys,
    present only when given: ``efficiency`` (the annotation-efficiency rows), ``retraining``
    (:func:`qfcn.train.diagnostics.variants_movement`: how far retraining moved the free weights,
    in grid levels) and ``steps`` (:func:`qfcn.train.variant_steps`: each variant's training
    steps and the variant it is step-matched to)."""
    out = {"run": run, "main": main, "n_glands": n_glands, "size_table": size_table, "variants": variants}
    out.update({k: v for k, v in (("retraining", retraining), ("steps", steps)) if v is not None})
    if efficiency is not None:
        for i, row in enumerate(efficiency):
            missing = [k for k in EFFICIENCY_KEYS if k not in row]
            if missing:
                raise ValueError(f"efficiency: row {i} lacks {missing}; expected the keys {list(EFFICIENCY_KEYS)}")
        out["efficiency"] = [{k: row[k] for k in EFFICIENCY_KEYS} for row in efficiency]
    return out


def write_metrics(path: str | os.PathLike, record: dict[str, Any], *, manifest_hash: str,
                  params: dict[str, Any]) -> Path:
    """Stamp ``record`` with provenance (:func:`qfcn.study.runs.stamp`) and write it atomically to
    ``path`` (normally ``<run_dir>/final/metrics.json``); returns the path."""
    return atomic_write_json(path, runs.stamp(record, manifest_hash, params))


def read_metrics(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The record in ``run_dir/final/metrics.json``; :class:`qfcn.io.ArtifactError` when missing."""
    return read_json(Path(run_dir) / METRICS_FILE, "metrics record (written by notebook 04-quantized-training)")


def run_dirs(study_dir: str | os.PathLike) -> list[Path]:
    """Run folders of a study that hold a metrics record, sorted by folder."""
    return sorted(p.parent.parent for p in Path(study_dir).glob(f"runs/*/{METRICS_FILE.as_posix()}"))


def tidy_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (variant, split) of a record read by :func:`qfcn.study.report.load_run_metrics`
    (which adds ``run_dir``): the run's keys, the variant's bits and bytes, the split's headline
    metrics and gland count."""
    run = {k: record["run"].get(k) for k in RUN_KEYS}
    rows = []
    for vname, var in record["variants"].items():
        for split, m in var["splits"].items():
            rows.append({**run, "run_dir": record["run_dir"], "variant": vname, "main": vname == record["main"],
                         "scheme": var.get("scheme"), "bits": var.get("bits"),
                         "n_members": var.get("n_members"), "weight_bytes": var.get("weight_bytes"),
                         "file_bytes": var.get("file_bytes"), "split": split,
                         "n_glands": record.get("n_glands", {}).get(split),
                         **{k: m.get(k) for k in HEADLINE}})
    return rows


def per_image_rows(record: dict[str, Any], splits: tuple[str, ...] = TESTS) -> list[dict[str, Any]]:
    """One row per image of the run's main result on ``splits``: the run's keys, ``variant``,
    ``split``, ``image`` (file stem) and the image's headline metrics (``per_image`` of the
    split's scores; Hausdorff in original-resolution pixels, docs/method.md §6)."""
    run = {k: record["run"].get(k) for k in RUN_KEYS}
    var = record["variants"][record["main"]]
    return [{**run, "variant": record["main"], "split": split, "image": im.get("name"),
             **{k: im.get(k) for k in HEADLINE}}
            for split in splits for im in var["splits"].get(split, {}).get("per_image", [])]


def main_scores(record: dict[str, Any]) -> dict[str, Any]:
    """The run's own result: its variant's name, weight bytes and headline metrics per test part."""
    var = record["variants"][record["main"]]
    return {"variant": record["main"], "weight_bytes": var.get("weight_bytes"),
            **{split: {k: var["splits"][split][k] for k in HEADLINE}
               for split in TESTS if split in var["splits"]}}


def efficiency_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The record's annotation-efficiency points (``[]`` when it has none), each with the run's
    ``name`` and ``qsa_bits`` (which suggestion ensemble selected: 32 or None = float) added."""
    extra = {"name": record["run"].get("name"), "qsa_bits": record["run"].get("qsa_bits")}
    return [{**extra, **row} for row in record.get("efficiency", [])]
