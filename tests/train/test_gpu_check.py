"""The GPU check script's CPU fallback (smoke size) runs and writes the documented keys."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"
KEYS = {"device", "steps", "s_per_step", "steps_per_s", "data_share", "num_workers", "pin_memory",
        "utilisation_mean_pct", "utilisation_source", "wall_s"}


def test_gpu_check_cpu_fallback(tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.main(tmp_path / "gpu_check.json", steps=6, force_cpu=True)
    on_disk = json.loads((tmp_path / "gpu_check.json").read_text())
    assert KEYS <= set(on_disk) and on_disk["device"] == "cpu" and on_disk["steps"] == 6
    assert res["steps_per_s"] > 0 and 0.0 <= res["data_share"] <= 1.0 and res["pin_memory"] is False
    assert res["utilisation_mean_pct"] is None and res["wall_s"] > 0  # speed is a benchmark, not a test
