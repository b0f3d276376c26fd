"""The suggestion loop: annotate in rounds until the budget (``docs/method.md §5``).

:func:`run_suggestion` starts from a seeded random initial set (:func:`initial_set`), then
each round trains the caller's ensemble on the annotated images, predicts the unannotated
ones and picks the next images with :func:`qfcn.suggest.select.pick` under the similarity
:func:`qfcn.suggest.similarity.descriptor_similarity` (``similarity_form``). It records what
each round picked and why (:class:`RoundRecord`), with the picked set's coverage against
random subsets of the set it was picked from (a z-score, ``coverage_z``), and persists its state after every round, so
that a rerun resumes after the last finished one. It is generic over two callables (the
caller's training and prediction), so it runs and tests without any network.

Persisted layout (unchanged from the earlier "stage" naming, so old state files resume):
the state file holds ``{"version", "settings", "done", "stages": [record, ...]}`` and each
record stores its round number under the key ``"stage"`` (:meth:`RoundRecord.to_dict`);
the settings keep the keys ``method`` (= ``selection``), ``k`` (= ``k_pick``), ``k_c``
(= ``k_candidates``) and ``n_members`` (= ``k_members``).

Random streams: each draw has its own generator seeded by ``(seed, round, stream)``:
stream 0 the initial set, 1 the 'random' picks, 3 the coverage check's random subsets
(stream 2 drew the pool-wide random picks of an earlier coverage check and is no longer
used). The coverage check therefore never changes what a round picks.

>>> res = run_suggestion([f"img{i}" for i in range(6)], selection="random", k_pick=2,
...                      n_initial=1, budget=0.5, progress=False)
>>> [len(r.picked) for r in res.rounds], len(res.annotated)
([1, 2], 3)
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from tqdm import tqdm

from qfcn.io import atomic_write_json
from qfcn.suggest.select import MODEL_METHODS, marginal_gains, pick, top_uncertain
from qfcn.suggest.settings import validate_settings
from qfcn.suggest.similarity import coverage_against_random, descriptor_similarity
from qfcn.suggest.validate import check_pool_names, check_predictions

__all__ = ["RoundRecord", "SuggestionResult", "SuggestionStateError", "initial_set",
           "run_suggestion"]

STATE_VERSION = 1


class SuggestionStateError(ValueError):
    """A state file that cannot be resumed (unreadable, or written with other settings)."""


@dataclass(frozen=True)
class RoundRecord:
    """What one round picked and why (JSON-serialisable; ``None`` where not measured).

    Round 0 is the seeded random initial set ('full': the whole pool). For later rounds,
    with predictions available: ``uncertainty`` and ``gain`` (marginal max-cover gain
    over the round's unannotated pool, in pick order) are aligned with ``picked``;
    ``coverage`` is ``F(picked)`` over that pool; ``coverage_random_mean`` / ``_sd`` are
    the mean / standard deviation of ``F`` over ``n_random_draws`` random subsets of the
    same size drawn from ``coverage_reference`` ('candidates' for 'suggestive', 'pool'
    for the selections that pick from the whole pool) and ``coverage_z`` is
    ``(coverage - mean) / sd`` (None when sd is 0, e.g. as many picks as candidates);
    ``candidates`` are the ``k_candidates`` most uncertain images (``k_pick`` when unset).
    ``seconds``: wall-clock time of the round.
    """

    round: int
    picked: list[str]
    n_pool: int
    n_annotated: int
    seconds: float
    uncertainty: list[float] | None = None
    gain: list[float] | None = None
    coverage: float | None = None
    coverage_random_mean: float | None = None
    coverage_random_sd: float | None = None
    coverage_z: float | None = None
    coverage_reference: str | None = None
    candidates: list[str] | None = None
    candidate_uncertainty: list[float] | None = None

    def to_dict(self) -> dict:
        """The persisted record: the fields, with the round number under the key ``"stage"``."""
        d = asdict(self)
        return {"stage": d.pop("round"), **d}

    @classmethod
    def from_dict(cls, d: dict) -> "RoundRecord":
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        return cls(round=d.pop("stage"), **d)


@dataclass
class SuggestionResult:
    """Outcome of :func:`run_suggestion`.

    ``rounds``: one :class:`RoundRecord` per round (round 0 first); ``extras``: the
    ``extras`` dicts returned by ``predict_fn`` for the rounds run in this call (not
    persisted); ``resumed_rounds``: how many rounds were loaded from the state file;
    ``train_calls``: the rounds for which ``train_fn`` was called in this call.
    """

    settings: dict
    rounds: list[RoundRecord]
    extras: dict[int, dict] = field(default_factory=dict)
    resumed_rounds: int = 0
    train_calls: list[int] = field(default_factory=list)

    @property
    def annotated(self) -> list[str]:
        """Annotated names in the order they were added."""
        return [n for rec in self.rounds for n in rec.picked]

    def table(self):
        """pandas DataFrame, one row per annotated image: name, stage (the round), uncertainty,
        gain (the column is named ``stage`` as in ``suggestion.json``)."""
        import pandas as pd  # heavy import, needed only for this view

        rows = []
        for rec in self.rounds:
            for i, name in enumerate(rec.picked):
                rows.append({"name": name, "stage": rec.round,
                             "uncertainty": None if rec.uncertainty is None else rec.uncertainty[i],
                             "gain": None if rec.gain is None else rec.gain[i]})
        return pd.DataFrame(rows, columns=["name", "stage", "uncertainty", "gain"])

    def coverage_rows(self) -> list[dict]:
        """Per round with predictions: the picked set's coverage against random subsets of
        the same size, ``{"round", "n_picked", "coverage_reference", "coverage",
        "coverage_random_mean", "coverage_random_sd", "coverage_z"}``."""
        keys = ("coverage_reference", "coverage", "coverage_random_mean", "coverage_random_sd",
                "coverage_z")
        return [{"round": r.round, "n_picked": len(r.picked), **{k: getattr(r, k) for k in keys}}
                for r in self.rounds if r.coverage is not None]

    def record(self) -> dict:
        """The result as ``suggestion.json`` stores it: ``annotated``, ``table``, ``stages``."""
        return {"annotated": self.annotated, "table": self.table().to_dict("records"),
                "stages": [r.to_dict() for r in self.rounds]}


def _pool_digest(names: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(names).encode("utf-8")).hexdigest()


def _load_state(path: Path, settings: dict) -> list[RoundRecord]:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        version, saved, rounds = state["version"], state["settings"], state["stages"]
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
        records = [RoundRecord.from_dict(d) for d in rounds]
    except (TypeError, KeyError) as exc:
        raise SuggestionStateError(f"state_path: bad round record in {path}: {exc}") from exc
    picked = [n for r in records for n in r.picked]
    if len(set(picked)) != len(picked) or not set(picked) <= set(settings["pool"]) \
            or [r.round for r in records] != list(range(len(records))):
        raise SuggestionStateError(f"state_path: {path} has inconsistent rounds "
                                   f"(repeated or unknown names, or rounds out of order)")
    return records


def _save(path: Path | None, result: SuggestionResult, done: bool) -> None:
    if path is not None:
        atomic_write_json(path, {"version": STATE_VERSION, "settings": result.settings,
                                  "done": done, "stages": [r.to_dict() for r in result.rounds]})


def initial_set(names: Sequence[str], n_initial: int, seed: int) -> list[str]:
    """The seeded random initial annotated set (round 0): ``n_initial`` of ``names``, in pool order.

    The suggestive ensemble's training (notebook 02) calls it with the same arguments as
    :func:`run_suggestion`, so both see the same set.

    >>> len(initial_set(["a", "b", "c", "d"], 2, seed=0))
    2
    """
    order = _round_rng(seed, 0, 0).permutation(len(names))
    return [str(names[i]) for i in sorted(order[:n_initial])]


def _round_rng(seed: int, round_: int, stream: int) -> np.random.Generator:
    """Independent generator per (seed, round, stream): resumed runs draw the same numbers."""
    return np.random.default_rng([seed, round_, stream])


def run_suggestion(pool_names: Sequence[str], *, selection: str, k_pick: int | None = None,
                   k_candidates: int | None = None, budget: float = 0.5,
                   n_initial: int | None = None, initial_fraction: float | None = None,
                   seed: int = 0, state_path: str | os.PathLike | None = None,
                   train_fn: Callable[[int, list[str]], Any] | None = None,
                   predict_fn: Callable[[Any, list[str]], tuple] | None = None,
                   k_members: int | None = None, floor: float = 0.0,
                   n_random_draws: int = 200, similarity_form: str = "per_member_centred",
                   progress: bool = True) -> SuggestionResult:
    """Run suggestion rounds until ``count_from_fraction(budget, len(pool_names))`` images
    are annotated.

    Round 0 annotates a seeded random initial set (``n_initial`` images or
    ``initial_fraction`` of the pool). Each later round r calls
    ``handle = train_fn(r, annotated_names)`` (the caller trains its ensemble of
    ``k_members``), then ``predict_fn(handle, unannotated_names) -> (uncertainties (n,),
    descriptors (n, K, D) per member (or (n, D)), extras dict)``, compares the images with
    :func:`~qfcn.suggest.similarity.descriptor_similarity` (``similarity_form``) and picks ``min(k_pick, budget left)`` images with
    :func:`~qfcn.suggest.select.pick`. 'full' annotates the whole pool in round 0. 'random'
    and 'full' pick without a model: the callables may be None, and when given for 'random'
    they only feed the diagnostics (uncertainty, gain, coverage and its z-score against
    ``n_random_draws`` random subsets, drawn from a stream of their own).

    State: with ``state_path``, the settings and the finished rounds are written atomically
    as JSON after every round; a rerun with the same settings continues after the last
    finished round (``train_fn`` is not called for finished rounds); other settings raise
    :class:`SuggestionStateError`. All settings are validated before any training.
    """
    names = check_pool_names(pool_names)
    cfg = validate_settings(len(names), selection=selection, k_pick=k_pick,
                            k_candidates=k_candidates, budget=budget, n_initial=n_initial,
                            initial_fraction=initial_fraction, seed=seed, k_members=k_members,
                            floor=floor, n_random_draws=n_random_draws,
                            similarity_form=similarity_form)
    if (train_fn is None) != (predict_fn is None):
        raise ValueError("train_fn / predict_fn: give both or neither")
    if train_fn is None and selection in MODEL_METHODS:
        raise ValueError(f"train_fn / predict_fn: selection {selection!r} needs both")
    settings = {**cfg, "pool_size": len(names), "pool_sha256": _pool_digest(names),
                "pool": names}
    path = None if state_path is None else Path(state_path)
    rounds = _load_state(path, settings) if path is not None and path.exists() else []
    result = SuggestionResult(settings=settings, rounds=rounds, resumed_rounds=len(rounds))
    n_budget = cfg["n_budget"]
    n_rounds = 1 + cfg["n_rounds"]
    with tqdm(total=n_rounds, initial=len(rounds), desc=f"suggest[{selection}]",
              disable=not progress) as bar:
        if not result.rounds:
            t0 = time.perf_counter()
            first = list(names) if selection == "full" else \
                initial_set(names, cfg["n_initial"], cfg["seed"])
            result.rounds.append(RoundRecord(round=0, picked=first, n_pool=len(names),
                                             n_annotated=len(first),
                                             seconds=time.perf_counter() - t0))
            _save(path, result, done=len(first) >= n_budget)
            bar.update(1)
        while len(result.annotated) < n_budget:
            t0 = time.perf_counter()
            record = _run_round(len(result.rounds), names, cfg, train_fn, predict_fn, result)
            result.rounds.append(replace(record, seconds=time.perf_counter() - t0))
            _save(path, result, done=len(result.annotated) >= n_budget)
            bar.update(1)
    return result


def _run_round(round_: int, names: list[str], cfg: dict, train_fn, predict_fn,
               result: SuggestionResult) -> RoundRecord:
    """One round after the initial set: train, predict the unannotated pool, pick, record."""
    annotated = result.annotated
    taken = set(annotated)
    pool = [n for n in names if n not in taken]
    n_pick = min(cfg["k"], cfg["n_budget"] - len(annotated))
    method, floor = cfg["method"], cfg["floor"]
    if train_fn is None:  # 'random' without a model
        idx = pick("random", k_pick=n_pick, n_pool=len(pool), rng=_round_rng(cfg["seed"], round_, 1))
        return RoundRecord(round=round_, picked=[pool[i] for i in idx], n_pool=len(pool),
                           n_annotated=len(annotated) + n_pick, seconds=0.0)
    handle = train_fn(round_, list(annotated))
    result.train_calls.append(round_)
    u, desc, extras = check_predictions(predict_fn(handle, list(pool)), len(pool))
    result.extras[round_] = extras
    sim = descriptor_similarity(desc, cfg["similarity_form"])
    k_c = cfg["k_c"] if cfg["k_c"] is not None else n_pick
    idx = pick(method, uncertainties=u, similarity=sim, k_pick=n_pick, k_candidates=k_c,
               rng=_round_rng(cfg["seed"], round_, 1), floor=floor)
    candidates = top_uncertain(u, k_c)
    reference = "candidates" if method == "suggestive" else "pool"
    check = coverage_against_random(
        sim, idx, candidates if method == "suggestive" else range(len(pool)),
        n_draws=cfg["n_random_draws"], rng=_round_rng(cfg["seed"], round_, 3), floor=floor)
    return RoundRecord(
        round=round_, picked=[pool[i] for i in idx], n_pool=len(pool),
        n_annotated=len(annotated) + n_pick, seconds=0.0,
        uncertainty=[float(u[i]) for i in idx],
        gain=[float(g) for g in marginal_gains(sim, idx, floor=floor)],
        **check, coverage_reference=reference,
        candidates=[pool[i] for i in candidates],
        candidate_uncertainty=[float(u[i]) for i in candidates])
