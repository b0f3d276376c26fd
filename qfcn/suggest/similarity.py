"""Representativeness for suggestive annotation: the similarity between images and the
check of a picked set's coverage against chance (``docs/method.md §5``).

Similarity forms (:data:`SIMILARITY_FORMS`), from descriptors of shape (n, K, D): n
images, K ensemble members, D channels (the spatial mean of a member's last encoder map,
:func:`qfcn.infer.predict`'s ``member_descriptor``):

* ``"per_member_centred"`` (the default): for each member k, subtract the mean of its
  descriptors over the n images compared, take the cosine similarity of the centred
  descriptors, then average the K (n, n) matrices. Centring removes the direction all
  ReLU descriptors share (they are non-negative, so their plain cosines are all high);
  comparing member by member respects that independently initialised members'
  channels do not correspond (a permutation of one member's channels changes nothing).
* ``"mean_descriptor"``: the cosine similarity of the member-averaged descriptors, not
  centred (the earlier form, kept for the comparison in ``benchmarks/bench_similarity.py``;
  its similarities lie in a narrow band near 1, so max-cover cannot tell sets apart).

A descriptor equal to the mean (a zero centred vector) has similarity 0 to everything,
itself included. Descriptors of shape (n, D) count as one member.

:func:`coverage_against_random` compares the max-cover ``F`` of a picked set with that of
random subsets of the same size drawn from the set it was picked from, as a z-score.

>>> d = np.array([[1, .2, .6], [.9, .3, .5], [.3, 1, .5], [.2, .8, .6]])[:, None]  # (4, 1, 3)
>>> descriptor_similarity(d, "mean_descriptor").round(2).tolist()[0]  # all positive
[1.0, 0.99, 0.58, 0.6]
>>> descriptor_similarity(d).round(2).tolist()[0]
[1.0, 0.98, -0.98, -0.95]
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from qfcn.suggest.select import cosine_similarity, coverage
from qfcn.suggest.validate import check_count, check_floor, check_selected, check_similarity

__all__ = ["SIMILARITY_FORMS", "check_similarity_form", "coverage_against_random",
           "descriptor_similarity"]

SIMILARITY_FORMS = ("per_member_centred", "mean_descriptor")


def check_similarity_form(form: Any) -> str:
    """``form`` if it is one of :data:`SIMILARITY_FORMS`, else ValueError naming it."""
    if form not in SIMILARITY_FORMS:
        raise ValueError(f"similarity_form: expected one of {SIMILARITY_FORMS}, got {form!r}")
    return str(form)


def _member_stack(descriptors: Any) -> np.ndarray:
    """Finite float64 descriptors as (n, K, D); (n, D) becomes (n, 1, D)."""
    d = np.asarray(descriptors, dtype=np.float64)
    if d.ndim == 2:
        d = d[:, None, :]
    if d.ndim != 3 or 0 in d.shape:
        raise ValueError(f"descriptors: expected (n, K, D) or (n, D), got shape {d.shape}")
    if not np.all(np.isfinite(d)):
        raise ValueError("descriptors: contains NaN or inf")
    return d


def descriptor_similarity(descriptors: Any, form: str = "per_member_centred") -> np.ndarray:
    """(n, n) similarity between n images from their members' descriptors.

    Args:
        descriptors: (n, K, D) per-member descriptors (or (n, D): one member).
        form: one of :data:`SIMILARITY_FORMS` (see the module docstring).

    Returns:
        float64 (n, n) in [-1, 1], symmetric. The centred form depends on which images are
        compared (the mean is taken over them): pass the whole set (pool with candidates).

    >>> rng = np.random.default_rng(0)
    >>> d = rng.random((5, 2, 8))
    >>> swapped = d[:, :, ::-1]  # every member's channels permuted
    >>> bool(np.allclose(descriptor_similarity(d), descriptor_similarity(swapped)))
    True
    """
    form = check_similarity_form(form)
    d = _member_stack(descriptors)
    if form == "mean_descriptor":
        mean = d.mean(axis=1)
        return cosine_similarity(mean, mean)
    centred = d - d.mean(axis=0, keepdims=True)
    norm = np.linalg.norm(centred, axis=2, keepdims=True)
    unit = (centred / np.where(norm > 0, norm, 1.0)).reshape(d.shape[0], -1)  # zero rows stay zero
    return np.clip(unit @ unit.T / d.shape[1], -1.0, 1.0)  # mean over members of their cosines


def coverage_against_random(similarity: Any, picked: Sequence[int], reference: Sequence[int], *,
                            n_draws: int, rng: np.random.Generator, floor: float = 0.0) -> dict:
    """Coverage of ``picked`` against random subsets of ``reference`` of the same size.

    Args:
        similarity: (n_rows, n_pool) similarity; ``picked`` and ``reference`` index its rows
            (in the suggestion loop, (n_pool, n_pool) and pool indices).
        picked: the picked rows (k of them, a subset of ``reference``).
        reference: the rows the pick was made from (suggestive: its candidates).
        n_draws: R, the number of random subsets (k rows of ``reference`` each, without
            replacement); 0 gives only ``coverage``.
        rng: the generator of the draws (give a dedicated one: the draws consume it).
        floor: see :func:`qfcn.suggest.select.coverage`.

    Returns:
        ``{"coverage": F(picked), "coverage_random_mean", "coverage_random_sd"`` (ddof 1),
        ``"coverage_z": (F - mean) / sd}``; the random values are None without draws, the
        z-score is None when ``sd`` is 0 (e.g. ``k == len(reference)``: one possible subset).

    >>> sim = np.eye(4) + 0.1
    >>> out = coverage_against_random(sim, [0, 1], [0, 1, 2, 3], n_draws=10,
    ...                               rng=np.random.default_rng(0))
    >>> round(out["coverage"], 6), round(out["coverage_random_sd"], 6), out["coverage_z"]
    (2.4, 0.0, None)
    """
    s = check_similarity(similarity)
    floor = check_floor(floor)
    n_draws = check_count(n_draws, "n_draws", low=0)
    ref = check_selected(reference, s.shape[0])
    idx = check_selected(picked, s.shape[0])
    if not set(idx.tolist()) <= set(ref.tolist()):
        raise ValueError(f"picked: expected a subset of reference, got {idx.tolist()} "
                         f"not in {ref.tolist()}")
    out = {"coverage": coverage(s, idx, floor=floor), "coverage_random_mean": None,
           "coverage_random_sd": None, "coverage_z": None}
    if n_draws == 0 or idx.size == 0:
        return out
    draws = ref[np.argsort(rng.random((n_draws, ref.size)), axis=1)[:, :idx.size]]  # (R, k)
    values = np.maximum(s[draws].max(axis=1), floor).sum(axis=1)  # (R,)
    mean = float(values.mean())
    sd = float(values.std(ddof=1)) if n_draws > 1 else 0.0
    out.update(coverage_random_mean=mean, coverage_random_sd=sd)
    if sd > 1e-12 * max(1.0, abs(mean)):
        out["coverage_z"] = (out["coverage"] - mean) / sd
    return out
