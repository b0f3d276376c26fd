"""The suggestion stage loop: annotate in stages until the budget (STUDY.md section 5).

:func:`run_suggestion` starts from a seeded random initial set (:func:`initial_set`), then
each stage trains the caller's ensemble on the annotated images, predicts the unannotated
ones and picks the next images with :func:`qfcn.suggest.pick`. It records what each stage
picked and why (:class:`StageRecord`) and persists its state after every stage, so that a
rerun resumes after the last finished one. It is generic over two callables (the caller's
training and prediction), so it runs and tests without any network.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from qfcn.runs import atomic_write_json
from qfcn.suggest import (
    METHODS,
    _check_count,
    _check_floor,
    cosine_similarity,
    coverage,
    marginal_gains,
    pick,
    top_uncertain,
)

STATE_VERSION = 1
MODEL_METHODS = ("suggestive", "uncertainty")  # the methods that pick from an ensemble's predictions


class SuggestionStateError(ValueError):
    """A state file that cannot be resumed (unreadable, or written with other settings)."""


@dataclass(frozen=True)
class StageRecord:
    """What one stage picked and why (JSON-serialisable; ``None`` where not measured).

    Stage 0 is the seeded random initial set ('full': the whole pool). For later stages,
    with predictions available: ``uncertainty`` and ``gain`` (marginal max-cover gain
    over the stage's unannotated pool, in pick order) are aligned with ``picked``;
    ``coverage`` is ``F(picked)`` over that pool; ``random_coverage`` (and ``_std``) is
    the mean (std) of ``F`` for ``n_random_draws`` random picks of the same size;
    ``candidates`` are the ``k_c`` most uncertain images (``k`` when ``k_c`` is unset).
    """

    stage: int
    picked: list[str]
    n_pool: int
    n_annotated: int
    seconds: float
    uncertainty: list[float] | None = None
    gain: list[float] | None = None
    coverage: float | None = None
    random_coverage: float | None = None
    random_coverage_std: float | None = None
    candidates: list[str] | None = None
    candidate_uncertainty: list[float] | None = None

    @classmethod
    def from_dict(cls, d: dict) -> "StageRecord":
        return cls(**d)


@dataclass
class SuggestionResult:
    """Outcome of :func:`run_suggestion`.

    ``stages``: one :class:`StageRecord` per stage (stage 0 first); ``extras``: the
    ``extras`` dicts returned by ``predict_fn`` for the stages run in this call (not
    persisted); ``resumed_stages``: how many stages were loaded from the state file;
    ``train_calls``: the stages for which ``train_fn`` was called in this call.
    """

    settings: dict
    stages: list[StageRecord]
    extras: dict[int, dict] = field(default_factory=dict)
    resumed_stages: int = 0
    train_calls: list[int] = field(default_factory=list)

    @property
    def annotated(self) -> list[str]:
        """Annotated names in the order they were added."""
        return [n for rec in self.stages for n in rec.picked]

    def table(self):
        """pandas DataFrame, one row per annotated image: name, stage, uncertainty, gain."""
        import pandas as pd

        rows = []
        for rec in self.stages:
            for i, name in enumerate(rec.picked):
                rows.append({"name": name, "stage": rec.stage,
                             "uncertainty": None if rec.uncertainty is None else rec.uncertainty[i],
                             "gain": None if rec.gain is None else rec.gain[i]})
        return pd.DataFrame(rows, columns=["name", "stage", "uncertainty", "gain"])


def count_from_fraction(fraction: float, n: int) -> int:
    """``fraction * n`` rounded half up (``0.5 * 85 -> 43``), as used for budget and initial set."""
    return int(math.floor(fraction * n + 0.5))


def validate_settings(n_pool: int, *, method: str, k: int | None, k_c: int | None,
                      budget: float, n_initial: int | None, initial_fraction: float | None,
                      seed: int, n_members: int | None = None, floor: float = 0.0,
                      n_random_draws: int = 16) -> dict:
    """Check the stage-loop settings before any training; return them resolved.

    Raises ValueError naming the parameter for: an unknown method, ``n_members`` (K) < 2,
    k < 1, k_c < k, a budget outside (0, 1], an initial set that is empty or not smaller
    than the budget, a negative seed. 'full' needs no k, k_c or initial set.

    Returns:
        dict with method, k, k_c, seed, budget, n_budget (images annotated at the end),
        n_initial, n_members, floor, n_random_draws.
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    seed = _check_count(seed, "seed", low=0)
    if n_members is not None:
        n_members = _check_count(n_members, "n_members (K)", low=2)
    floor = _check_floor(floor)
    n_random_draws = _check_count(n_random_draws, "n_random_draws", low=0)
    if isinstance(budget, bool) or not isinstance(budget, (int, float, np.floating)) \
            or not (0.0 < budget <= 1.0):
        raise ValueError(f"budget: expected a fraction of the pool in (0, 1], got {budget!r}")
    out = {"method": method, "k": None, "k_c": None, "seed": seed, "budget": float(budget),
           "n_budget": n_pool, "n_initial": n_pool, "n_members": n_members, "floor": floor,
           "n_random_draws": n_random_draws}
    if method == "full":
        return out
    k = _check_count(k, "k")
    if k_c is not None:
        k_c = _check_count(k_c, "k_c")
        if k_c < k:
            raise ValueError(f"k_c: expected k <= k_c, got k={k}, k_c={k_c}")
    elif method == "suggestive":
        raise ValueError("k_c: method 'suggestive' needs the number of candidates k_c")
    n_budget = count_from_fraction(budget, n_pool)
    if (n_initial is None) == (initial_fraction is None):
        raise ValueError("n_initial / initial_fraction: give exactly one of them")
    if initial_fraction is not None:
        if not isinstance(initial_fraction, (int, float, np.floating)) \
                or not (0.0 < initial_fraction < 1.0):
            raise ValueError(f"initial_fraction: expected a fraction in (0, 1), "
                             f"got {initial_fraction!r}")
        n_initial = max(1, count_from_fraction(initial_fraction, n_pool))
    n_initial = _check_count(n_initial, "n_initial")
    if n_initial >= n_budget:
        raise ValueError(f"n_initial / initial_fraction: the initial set ({n_initial} images) "
                         f"must be smaller than the budget ({n_budget} = {budget} x {n_pool})")
    out.update(k=k, k_c=k_c, n_budget=n_budget, n_initial=n_initial)
    return out


def _pool_digest(names: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(names).encode("utf-8")).hexdigest()


def _load_state(path: Path, settings: dict) -> list[StageRecord]:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        version, saved, stages = state["version"], state["settings"], state["stages"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SuggestionStateError(f"state_path: cannot read suggestion state {path}: {exc}") \
            from exc
    if version != STATE_VERSION:
        raise SuggestionStateError(f"state_path: {path} has version {version}, "
                                   f"expected {STATE_VERSION}")
    diff = sorted(key for key in set(saved) | set(settings)
                  if key != "pool" and saved.get(key) != settings.get(key))
    if diff:
        detail = "; ".join("pool: the pool names differ" if key == "pool_sha256" else
                           f"{key}: saved {saved.get(key)!r}, now {settings.get(key)!r}"
                           for key in diff)
        raise SuggestionStateError(f"state_path: {path} was written with other settings "
                                   f"({detail}); use another state_path or delete the file")
    try:
        records = [StageRecord.from_dict(d) for d in stages]
    except TypeError as exc:
        raise SuggestionStateError(f"state_path: bad stage record in {path}: {exc}") from exc
    picked = [n for r in records for n in r.picked]
    if len(set(picked)) != len(picked) or not set(picked) <= set(settings["pool"]) \
            or [r.stage for r in records] != list(range(len(records))):
        raise SuggestionStateError(f"state_path: {path} has inconsistent stages "
                                   f"(repeated or unknown names, or stages out of order)")
    return records


def initial_set(names: Sequence[str], n_initial: int, seed: int) -> list[str]:
    """The seeded random initial annotated set (stage 0): ``n_initial`` of ``names``, in pool order.

    The training notebook of the suggestive ensemble (02) calls it with the same arguments as
    :func:`run_suggestion`, so both see the same set."""
    order = _stage_rng(seed, 0, 0).permutation(len(names))
    return [str(names[i]) for i in sorted(order[:n_initial])]


def _stage_rng(seed: int, stage: int, stream: int) -> np.random.Generator:
    """Independent generator per (seed, stage, stream): resumed runs draw the same numbers."""
    return np.random.default_rng([seed, stage, stream])


def _check_predictions(out: Any, n: int) -> tuple[np.ndarray, np.ndarray, dict]:
    try:
        u, desc, extras = out
    except (TypeError, ValueError) as exc:
        raise ValueError("predict_fn: expected (uncertainties, descriptors, extras)") from exc
    u = np.asarray(u, dtype=np.float64)
    desc = np.asarray(desc, dtype=np.float64)
    if u.shape != (n,):
        raise ValueError(f"predict_fn: uncertainties shape {u.shape}, expected ({n},)")
    if desc.ndim != 2 or desc.shape[0] != n:
        raise ValueError(f"predict_fn: descriptors shape {desc.shape}, expected ({n}, d)")
    if not (np.all(np.isfinite(u)) and np.all(np.isfinite(desc))):
        raise ValueError("predict_fn: uncertainties or descriptors contain NaN or inf")
    return u, desc, dict(extras or {})


def run_suggestion(pool_names: Sequence[str], *, method: str, k: int | None = None,
                   k_c: int | None = None, budget: float = 0.5, n_initial: int | None = None,
                   initial_fraction: float | None = None, seed: int = 0,
                   state_path: str | os.PathLike | None = None,
                   train_fn: Callable[[int, list[str]], Any] | None = None,
                   predict_fn: Callable[[Any, list[str]], tuple] | None = None,
                   n_members: int | None = None, floor: float = 0.0,
                   n_random_draws: int = 16, progress: bool = True) -> SuggestionResult:
    """Run suggestion stages until ``count_from_fraction(budget, len(pool_names))`` images
    are annotated.

    Stage 0 annotates a seeded random initial set (``n_initial`` images or
    ``initial_fraction`` of the pool). Each later stage s calls
    ``handle = train_fn(s, annotated_names)`` (the caller trains its ensemble; warm
    starting from the previous stage is the caller's business), then
    ``predict_fn(handle, unannotated_names) -> (uncertainties (n,), descriptors (n, d),
    extras dict)``, and picks ``min(k, budget left)`` images with :func:`pick`. Method
    'full' annotates the whole pool at stage 0 (budget and k do not apply). Methods
    'random' and 'full' pick without a model: ``train_fn``/``predict_fn`` may be None,
    and when given for 'random' they only feed the diagnostics (uncertainty, gain,
    coverage).

    State: with ``state_path``, the settings and the finished stages are written
    atomically as JSON after every stage; a rerun with the same settings loads them and
    continues after the last finished stage (``train_fn`` is not called for finished
    stages); other settings (method, k, k_c, seed, budget, initial set, K, floor, pool)
    raise :class:`SuggestionStateError`. All settings are validated before any training.

    Returns:
        :class:`SuggestionResult`.
    """
    names = [str(n) for n in pool_names]
    if not names:
        raise ValueError("pool_names: empty pool")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})[:5]
        raise ValueError(f"pool_names: repeated names {dup}")
    cfg = validate_settings(len(names), method=method, k=k, k_c=k_c, budget=budget,
                            n_initial=n_initial, initial_fraction=initial_fraction, seed=seed,
                            n_members=n_members, floor=floor, n_random_draws=n_random_draws)
    if (train_fn is None) != (predict_fn is None):
        raise ValueError("train_fn / predict_fn: give both or neither")
    if train_fn is None and method in MODEL_METHODS:
        raise ValueError(f"train_fn / predict_fn: method {method!r} needs both")
    settings = {**cfg, "pool_size": len(names), "pool_sha256": _pool_digest(names),
                "pool": names}
    path = None if state_path is None else Path(state_path)
    stages = _load_state(path, settings) if path is not None and path.exists() else []
    result = SuggestionResult(settings=settings, stages=stages, resumed_stages=len(stages))

    def save(done: bool) -> None:
        if path is not None:
            atomic_write_json(path, {"version": STATE_VERSION, "settings": settings,
                                      "done": done,
                                      "stages": [asdict(r) for r in result.stages]})

    n_budget, k_eff = cfg["n_budget"], cfg["k"]
    n_stages = 1 if method == "full" else 1 + math.ceil((n_budget - cfg["n_initial"]) / k_eff)
    from tqdm import tqdm

    with tqdm(total=n_stages, initial=len(stages), desc=f"suggest[{method}]",
              disable=not progress) as bar:
        if not result.stages:
            t0 = time.perf_counter()
            if method == "full":
                first = list(names)
            else:
                first = initial_set(names, cfg["n_initial"], cfg["seed"])
            result.stages.append(StageRecord(stage=0, picked=first, n_pool=len(names),
                                             n_annotated=len(first),
                                             seconds=time.perf_counter() - t0))
            save(done=len(first) >= n_budget)
            bar.update(1)
        while len(result.annotated) < n_budget:
            stage = len(result.stages)
            t0 = time.perf_counter()
            annotated = result.annotated
            taken = set(annotated)
            pool = [n for n in names if n not in taken]
            n_pick = min(k_eff, n_budget - len(annotated))
            record = _run_stage(stage, pool, annotated, n_pick, cfg, train_fn, predict_fn,
                                result)
            result.stages.append(replace(record, seconds=time.perf_counter() - t0))
            save(done=len(result.annotated) >= n_budget)
            bar.update(1)
    return result


def _run_stage(stage: int, pool: list[str], annotated: list[str], n_pick: int, cfg: dict,
               train_fn, predict_fn, result: SuggestionResult) -> StageRecord:
    method, floor = cfg["method"], cfg["floor"]
    if train_fn is None:  # 'random' without a model
        idx = pick("random", k=n_pick, n_pool=len(pool), rng=_stage_rng(cfg["seed"], stage, 1))
        return StageRecord(stage=stage, picked=[pool[i] for i in idx], n_pool=len(pool),
                           n_annotated=len(annotated) + n_pick, seconds=0.0)
    handle = train_fn(stage, list(annotated))
    result.train_calls.append(stage)
    u, desc, extras = _check_predictions(predict_fn(handle, list(pool)), len(pool))
    result.extras[stage] = extras
    sim = cosine_similarity(desc, desc)
    k_c = cfg["k_c"] if cfg["k_c"] is not None else n_pick
    idx = pick(method, uncertainties=u, similarity=sim, k=n_pick, k_c=k_c,
               rng=_stage_rng(cfg["seed"], stage, 1), floor=floor)
    candidates = top_uncertain(u, k_c)
    rng = _stage_rng(cfg["seed"], stage, 2)
    rand_cov = np.array([coverage(sim, rng.choice(len(pool), size=n_pick, replace=False),
                                  floor=floor) for _ in range(cfg["n_random_draws"])])
    return StageRecord(
        stage=stage, picked=[pool[i] for i in idx], n_pool=len(pool),
        n_annotated=len(annotated) + n_pick, seconds=0.0,
        uncertainty=[float(u[i]) for i in idx],
        gain=[float(g) for g in marginal_gains(sim, idx, floor=floor)],
        coverage=coverage(sim, idx, floor=floor),
        random_coverage=float(rand_cov.mean()) if rand_cov.size else None,
        random_coverage_std=float(rand_cov.std()) if rand_cov.size else None,
        candidates=[pool[i] for i in candidates],
        candidate_uncertainty=[float(u[i]) for i in candidates])
