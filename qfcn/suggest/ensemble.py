"""The suggestive ensemble of notebooks 02 and 03 (``docs/method.md §5``).

Notebook 02 trains K (``k_members``) FCNs on the initial annotated set (QSA: quantized),
scores each member on the annotated images outside its bootstrap resample
(:func:`out_of_bag_scores`) and measures how member disagreement grows as the weights get
fewer bits (:func:`disagreement_curve`). Notebook 03 runs the suggestion rounds with that
ensemble: :class:`EnsembleRounds` holds the loop's train/predict callbacks (round 1 reuses
notebook 02's members; a later round trains K members on the grown annotated set, warm
started from the previous round's checkpoints, found on disk after a resume) and
:func:`run_rounds` calls :func:`~qfcn.suggest.rounds.run_suggestion` with them.

Conventions: samples are objects with ``.name``, ``.image`` (H, W, 3 uint8) and
``.instances``; members are :class:`qfcn.train.TrainResult`-like objects (``.model``,
``.final_path``, ``.float_path``); a round's ensemble lives in ``<ensemble_dir>/stage_<r>``
(the folder name of the run layout, unchanged).

>>> initial_split(["a", "b", "c", "d"], initial_fraction=0.5, seed=0)
(['a', 'c'], ['b', 'd'])
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from qfcn import data, infer, train
from qfcn.suggest.rounds import SuggestionResult, initial_set, run_suggestion
from qfcn.suggest.select import MODEL_METHODS, uncertainty, uncertainty_map
from qfcn.suggest.settings import count_from_fraction

__all__ = ["EnsembleRounds", "disagreement_curve", "initial_split", "mean_disagreement",
           "out_of_bag_scores", "probe_subset", "round_dir", "run_rounds"]


def round_dir(ensemble_dir: str | os.PathLike, round_: int) -> Path:
    """The folder of round ``round_``'s ensemble members: ``<ensemble_dir>/stage_<round_>``.

    >>> round_dir("ensemble", 1).as_posix()
    'ensemble/stage_1'
    """
    return Path(ensemble_dir) / f"stage_{round_}"


def initial_split(pool: Sequence[str], initial_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(initial, unannotated) names of ``pool``: the seeded initial set of
    ``max(1, round-half-up(initial_fraction * n))`` images (as the rounds draw it), and the
    rest in pool order."""
    initial = initial_set(pool, max(1, count_from_fraction(initial_fraction, len(pool))), seed)
    taken = set(initial)
    return initial, [str(n) for n in pool if n not in taken]


def probe_subset(samples: Sequence[Any], n: int, seed: int) -> list[Any]:
    """The images the disagreement curve is measured on: all of ``samples`` when ``n`` is 0
    or not smaller than their number, else ``n`` of them drawn from ``(seed, 2)``, in order.

    >>> probe_subset(list("abcdef"), 0, seed=0) == list("abcdef")
    True
    """
    samples = list(samples)
    if 0 < n < len(samples):
        keep = np.sort(np.random.default_rng([seed, 2]).choice(len(samples), n, replace=False))
        return [samples[i] for i in keep]
    return samples


def out_of_bag_scores(members: Sequence[Any], samples: Sequence[Any], cfg: train.TrainConfig) -> list[dict]:
    """Validation scores of each member on the ``samples`` (the annotated set it was trained
    on) that its bootstrap resample did not draw (all of them when it drew every one).

    Returns:
        one dict per member: ``member``, ``oob_images`` and :func:`qfcn.train.validation_scores`'s
        ``val_loss``, ``val_dice`` (whole images, fp32, ``cfg.contour_width``).
    """
    samples = list(samples)
    rows = []
    for m, r in enumerate(members):
        drawn = {s.name for s in data.bootstrap_resample(samples, cfg.seed, m)}
        oob = [s for s in samples if s.name not in drawn] or samples
        rows.append(dict(member=m, oob_images=len(oob),
                         **train.validation_scores(r.model, oob, contour_width=cfg.contour_width)))
    return rows


def mean_disagreement(models: Sequence[Any], samples: Sequence[Any]) -> float:
    """Mean over ``samples`` of :func:`~qfcn.suggest.select.uncertainty` (pixel mean of the
    across-member std of the object probability) of the ensemble ``models``."""
    preds = infer.predict_dataset(list(models), samples, progress=False)
    return float(np.mean([uncertainty(p["member_object"]) for p in preds]))


def disagreement_curve(members: Sequence[Any], probe: Sequence[Any], bits: Sequence[int], *,
                       qsa_scheme: str, qsa_bits: int) -> dict[str, dict]:
    """Member disagreement against weight bit-width, on the ``probe`` images.

    For each ``b`` in ``bits``: the members' float weights (``float_path``, else
    ``final_path``) quantized to INQ ``b`` bits without retraining (32: the float members),
    entry ``"ptq-inq-<b>"``; then the trained ensemble itself (``.model``), entry ``"qsa"``.
    Each entry is ``{"bits", "kind", "value"}`` with value :func:`mean_disagreement`; empty
    when there are no members.
    """
    if not members:
        return {}
    out: dict[str, dict] = {}
    floats = [train.load_model(r.float_path or r.final_path) for r in members]
    for b in bits:
        ens = floats if b == 32 else [train.post_training_quantize(f, "inq", b) for f in floats]
        out[f"ptq-inq-{b}"] = dict(bits=b, kind="float members, INQ without retraining",
                                   value=mean_disagreement(ens, probe))
    out["qsa"] = dict(bits=qsa_bits, kind=f"trained QSA ensemble ({qsa_scheme})",
                      value=mean_disagreement([r.model for r in members], probe))
    return out


class EnsembleRounds:
    """The train/predict callbacks of :func:`~qfcn.suggest.rounds.run_suggestion` for the
    suggestive ensemble.

    Args:
        samples: name -> sample, every image of the pool.
        initial: the initial annotated names notebook 02 trained ``first_members`` on.
        first_members: model files (``final.pt``) of round 1's ensemble.
        k_members: K, members per round.
        cfg: training configuration of a later round's members.
        ensemble_dir: round r's members go to ``ensemble_dir/stage_<r>/member_<m>``.
        warm_start: start a round's members from the previous round's.
        source: where ``initial`` comes from, for the error message.
    """

    def __init__(self, samples: Mapping[str, Any], *, initial: Sequence[str],
                 first_members: Sequence[str], k_members: int, cfg: train.TrainConfig,
                 ensemble_dir: str | os.PathLike, warm_start: bool = True,
                 source: str = "the ensemble artifact") -> None:
        self.samples, self.initial, self.k_members = samples, list(initial), k_members
        self.cfg, self.ensemble_dir, self.warm_start = cfg, Path(ensemble_dir), warm_start
        self.source = source
        self.members_of: dict[int, list[str]] = {1: list(first_members)}

    def round_dir(self, round_: int) -> Path:
        """The folder of round ``round_``'s members (:func:`round_dir`)."""
        return round_dir(self.ensemble_dir, round_)

    def previous_members(self, round_: int) -> list[str]:
        """Model files of round ``round_ - 1``: from this call, or (resumed) found on disk."""
        prev = self.members_of.get(round_ - 1)
        if prev is None:  # resumed after round 1: the previous round's files are on disk
            prev = [str(p) for p in sorted(self.round_dir(round_ - 1).glob("member_*/final.pt"))]
        return prev

    def train(self, round_: int, annotated: list[str]) -> list[str]:
        """``train_fn``: round 1 returns the first members; later rounds train K members."""
        if round_ == 1:
            if sorted(annotated) != sorted(self.initial):
                raise RuntimeError(f"stage 1 annotated set differs from {self.source}'s initial set")
            return self.members_of[1]
        prev = self.previous_members(round_)
        results = train.train_ensemble([self.samples[n] for n in annotated], self.cfg,
                                       k=self.k_members, out_dir=self.round_dir(round_),
                                       init=prev if self.warm_start and prev else None)
        self.members_of[round_] = [str(r.final_path) for r in results]
        return self.members_of[round_]

    def predict(self, handle: list[str], names: list[str]) -> tuple[np.ndarray, np.ndarray, dict]:
        """``predict_fn``: uncertainties (n,), per-member descriptors (n, K, D) and extras
        ``names``, ``maps`` (name -> (H, W) across-member std) and ``descriptors`` (n, K, D)."""
        models = [train.load_model(p) for p in handle]
        preds = infer.predict_dataset(models, [self.samples[n] for n in names], progress=False)
        u = np.array([uncertainty(p["member_object"]) for p in preds])
        desc = np.stack([p["member_descriptor"] for p in preds])
        maps = {n: uncertainty_map(p["member_object"]) for n, p in zip(names, preds)}
        return u, desc, {"names": list(names), "maps": maps, "descriptors": desc}


def run_rounds(pool: Sequence[str], callbacks: EnsembleRounds, *, selection: str, k_pick: int,
               k_candidates: int, budget: float, seed: int,
               state_path: str | os.PathLike | None,
               similarity_form: str = "per_member_centred") -> SuggestionResult:
    """:func:`~qfcn.suggest.rounds.run_suggestion` as notebook 03 runs it: the initial set
    is ``callbacks.initial`` ('full': none), ``k_candidates`` counts for 'suggestive' only,
    and the callbacks and ``k_members`` only for the selections that need an ensemble."""
    needs_model = selection in MODEL_METHODS
    return run_suggestion(
        pool, selection=selection, k_pick=k_pick,
        k_candidates=k_candidates if selection == "suggestive" else None, budget=budget,
        n_initial=len(callbacks.initial) if selection != "full" else None, seed=seed,
        state_path=state_path, train_fn=callbacks.train if needs_model else None,
        predict_fn=callbacks.predict if needs_model else None,
        k_members=callbacks.k_members if needs_model else None, similarity_form=similarity_form)
