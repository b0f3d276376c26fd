"""Parameter checks of the per-run notebooks, shared by the notebooks and the batch runner.

The notebooks call these in their validation cell; :mod:`qfcn.study` calls all three for every
batch point before the first run starts, so that a bad value (K < 2, a budget outside (0, 1],
k larger than K_c, a bit-width the scheme does not support) fails before any training.
Each raises ``ValueError`` naming the parameter and what was expected.
"""
from __future__ import annotations

from typing import Any

from qfcn import quant, stages


def _fraction(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        raise ValueError(f"{name}={value!r}: expected a fraction in (0, 1)")


def _count(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}={value!r}: expected an integer >= {low}")


def check_ensemble(*, selection: str, qsa_scheme: str, qsa_bits: int, k_members: int, initial_fraction: float,
                   **_: Any) -> None:
    """Parameters of ``02-ensemble-quantization``."""
    if selection not in stages.METHODS:
        raise ValueError(f"selection={selection!r}: expected one of {list(stages.METHODS)}")
    _count("k_members", k_members, 2)
    _fraction("initial_fraction", initial_fraction)
    quant.check_scheme(qsa_scheme, qsa_bits)


def check_suggestion(n_pool: int, *, selection: str, budget: float, k_pick: int, k_candidates: int,
                     initial_fraction: float, k_members: int, seed: int = 0, **_: Any) -> dict[str, Any]:
    """Parameters of ``03-suggestion`` for a pool of ``n_pool`` training images; returns the
    resolved stage-loop settings (:func:`qfcn.stages.validate_settings`)."""
    full = selection == "full"
    return stages.validate_settings(
        n_pool, method=selection, k=k_pick, k_c=k_candidates if selection == "suggestive" else None, budget=budget,
        n_initial=None if full else max(1, stages.count_from_fraction(initial_fraction, n_pool)),
        initial_fraction=None, seed=seed, n_members=k_members if selection in stages.MODEL_METHODS else None)


VARIANTS = ("float_control", "other_scheme", "ptq", "ptq_bn")  # controls notebook 04 can derive


def check_training(*, ntq_scheme: str, ntq_bits: int, n_members: int, val_fraction: float,
                   variants: list[str] = (), **_: Any) -> None:
    """Parameters of ``04-quantized-training``."""
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise ValueError(f"variants: unknown {unknown}; expected a subset of {list(VARIANTS)}")
    _count("n_members", n_members, 1)
    _fraction("val_fraction", val_fraction)
    quant.check_scheme(ntq_scheme, ntq_bits)
