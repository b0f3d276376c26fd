#!/usr/bin/env bash
# GPU check (issue 12): paper-profile training steps/s and utilisation -> benchmarks/results/gpu_check.json.
cd "$(dirname "$0")/.." && PYTHONPATH=. "${PYTHON:-python3}" benchmarks/gpu_check.py "$@"
