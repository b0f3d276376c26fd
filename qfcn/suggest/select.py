"""Suggestive annotation's selection: which unannotated images to annotate next.

The method is ``docs/method.md §5``. One round of suggestive annotation (SA, Yang et al.
2017; QSA, Xu et al. 2018):

1. an ensemble of K FCNs trained on the annotated images predicts every unannotated
   image; :func:`uncertainty` is the pixel mean of the across-member standard deviation
   of the object probability;
2. the ``k_candidates`` most uncertain images are the candidates (:func:`top_uncertain`);
3. ``k_pick`` of them are picked greedily (:func:`select_representative`) to maximise the
   generalized max-cover of the whole unannotated pool under cosine similarity
   (:func:`cosine_similarity`)::

       F(A) = sum over x in pool of max(floor, max over s in A of sim(s, x))

The running max starts at ``floor`` (default 0.0), so ``F(empty) = n_pool * floor`` and
``F`` is monotone and submodular for any similarity; the greedy pick is then within
(1 - 1/e) of the best set of the same size (measured from ``F(empty)``). With ``floor=0``
a candidate earns nothing from pool images it is negatively correlated with. With
``floor=-1`` (the smallest cosine) ``F(A)`` is exactly SA's ``sum_x max_{s in A} sim``.

:func:`pick` puts SA and its baselines ('uncertainty': top-k uncertain, 'random') behind
one interface; :mod:`qfcn.suggest.rounds` runs the rounds until the annotation budget.

Conventions: probabilities are floats in [0, 1]; similarities are computed in float64;
indices are positions in the arrays given (ties always go to the smallest index).

>>> pick("suggestive", uncertainties=[0.1, 0.9, 0.8], similarity=np.eye(3), k_pick=1,
...      k_candidates=2)
[1]
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from qfcn.suggest.validate import (
    check_count,
    check_floor,
    check_member_stack,
    check_selected,
    check_similarity,
)

__all__ = [
    "METHODS",
    "MODEL_METHODS",
    "cosine_similarity",
    "coverage",
    "marginal_gains",
    "pick",
    "select_representative",
    "top_uncertain",
    "uncertainty",
    "uncertainty_map",
]

METHODS = ("suggestive", "uncertainty", "random", "full")  # every selection method
MODEL_METHODS = ("suggestive", "uncertainty")  # the methods that pick from an ensemble's predictions


# --------------------------------------------------------------------------- uncertainty
def uncertainty_map(member_probs: Any) -> np.ndarray:
    """Per-pixel across-member standard deviation of the object probability.

    Args:
        member_probs: (K, H, W) (or (K, ...)) object probabilities of K >= 2 members.

    Returns:
        float64 array of shape (H, W): population standard deviation (ddof=0) over K.

    >>> uncertainty_map([[[0.0, 1.0]], [[1.0, 1.0]]]).tolist()
    [[0.5, 0.0]]
    """
    return check_member_stack(member_probs).std(axis=0, ddof=0)


def uncertainty(member_probs: Any) -> float:
    """Uncertainty of one image: pixel mean of the across-member standard deviation.

    Args:
        member_probs: (K, H, W) (or (K, ...)) object probabilities in [0, 1] of K >= 2
            ensemble members for one image.

    Returns:
        The mean over pixels of the population standard deviation (ddof=0) across the K
        members, a float in [0, 0.5].

    >>> uncertainty([[[0.0, 1.0]], [[1.0, 1.0]]])
    0.25
    """
    return float(uncertainty_map(member_probs).mean())


# ---------------------------------------------------------------------- representativeness
def cosine_similarity(a: Any, b: Any) -> np.ndarray:
    """Cosine similarity between the rows of ``a`` (n, d) and ``b`` (m, d).

    Returns:
        float64 array (n, m) in [-1, 1]; a pair with a zero vector has similarity 0.

    >>> cosine_similarity([[1.0, 0.0], [0.0, 0.0]], [[1.0, 1.0]]).round(4).tolist()
    [[0.7071], [0.0]]
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"cosine_similarity: expected a (n, d) and b (m, d), "
                         f"got {a.shape} and {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("cosine_similarity: descriptors contain NaN or inf")
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    a_unit = a / np.where(na > 0, na, 1.0)[:, None]  # zero rows stay zero -> similarity 0
    b_unit = b / np.where(nb > 0, nb, 1.0)[:, None]
    return np.clip(a_unit @ b_unit.T, -1.0, 1.0)


def coverage(similarity: Any, selected: Sequence[int], *, floor: float = 0.0) -> float:
    """Generalized max-cover ``F(A) = sum_x max(floor, max_{s in A} sim(s, x))``.

    Args:
        similarity: (n_candidates, n_pool) similarity of each candidate to each pool image.
        selected: candidate indices forming ``A`` (may be empty: ``F = n_pool * floor``).
        floor: start value of the running max (see the module docstring).

    >>> coverage([[1.0, 0.2], [0.0, 0.9]], [0, 1])
    1.9
    """
    s = check_similarity(similarity)
    floor = check_floor(floor)
    idx = check_selected(selected, s.shape[0])
    best = np.full(s.shape[1], floor)
    if idx.size:
        best = np.maximum(best, s[idx].max(axis=0))
    return float(best.sum())


def marginal_gains(similarity: Any, selected: Sequence[int], *, floor: float = 0.0) -> np.ndarray:
    """Marginal gain ``F(A_i + s_i) - F(A_i)`` of each selected index, in the order given.

    ``A_i`` is the set of the indices before position i; the gains sum to
    ``coverage(similarity, selected) - n_pool * floor``.

    Returns:
        float64 array of shape (len(selected),).
    """
    s = check_similarity(similarity)
    floor = check_floor(floor)
    idx = check_selected(selected, s.shape[0])
    best = np.full(s.shape[1], floor)
    gains = np.empty(idx.size)
    for i, j in enumerate(idx):  # one vector op per selected index
        gains[i] = np.maximum(s[j] - best, 0.0).sum()
        best = np.maximum(best, s[j])
    return gains


def select_representative(similarity: Any, k: int, *, floor: float = 0.0,
                          return_gains: bool = False):
    """Greedy maximisation of the generalized max-cover to pick k representative candidates.

    Each step adds the candidate with the largest marginal gain
    ``sum_x max(sim(s, x) - best(x), 0)`` where ``best`` is the running max (starting at
    ``floor``); ties go to the smallest candidate index. One (n_candidates, n_pool) array
    operation per pick, no loop over candidates.

    Args:
        similarity: (n_candidates, n_pool) cosine similarity of each candidate to each image
            of the unannotated pool (candidates are usually part of the pool).
        k: number of candidates to pick, 1 <= k <= n_candidates.
        floor: start value of the running max, so ``F(empty) = n_pool * floor``.
        return_gains: also return the marginal gain of each pick.

    Returns:
        list of k candidate indices in the order picked, and with ``return_gains`` a
        float64 array (k,) of their marginal gains.

    >>> sim = [[1.0, 0.9, 0.0], [0.9, 1.0, 0.1], [0.0, 0.1, 1.0]]
    >>> select_representative(sim, 2)
    [1, 2]
    """
    s = check_similarity(similarity)
    floor = check_floor(floor)
    k = check_count(k, "k")
    n_cand = s.shape[0]
    if k > n_cand:
        raise ValueError(f"k: cannot pick {k} from {n_cand} candidates (k <= n_candidates)")
    best = np.full(s.shape[1], floor)
    available = np.ones(n_cand, dtype=bool)
    picked: list[int] = []
    gains = np.empty(k)
    buf = np.empty_like(s)  # reused: large temporaries per pick cost more than the arithmetic
    for i in range(k):
        np.subtract(s, best, out=buf)
        g = np.maximum(buf, 0.0, out=buf).sum(axis=1)
        g[~available] = -np.inf
        j = int(np.argmax(g))  # first maximum -> smallest index on ties
        picked.append(j)
        gains[i] = g[j]
        available[j] = False
        best = np.maximum(best, s[j])
    return (picked, gains) if return_gains else picked


# ------------------------------------------------------------------------------- picking
def top_uncertain(uncertainties: Any, k: int) -> list[int]:
    """Indices of the k largest uncertainties, most uncertain first (ties: smallest index).

    ``k`` larger than the pool gives the whole pool, ordered.
    """
    u = np.asarray(uncertainties, dtype=np.float64)
    if u.ndim != 1 or u.size == 0:
        raise ValueError(f"uncertainties: expected a non-empty 1-D array, got shape {u.shape}")
    if not np.all(np.isfinite(u)):
        raise ValueError("uncertainties: contains NaN or inf")
    k = check_count(k, "k")
    return [int(i) for i in np.argsort(-u, kind="stable")[:k]]


def _pool_arrays(uncertainties: Any, similarity: Any,
                 n_pool: int | None) -> tuple[np.ndarray | None, np.ndarray | None, int]:
    """Validated uncertainties (n,), similarity (n, n) and the one pool size they agree on."""
    u = None if uncertainties is None else np.asarray(uncertainties, dtype=np.float64)
    if u is not None and (u.ndim != 1 or not np.all(np.isfinite(u))):
        raise ValueError(f"uncertainties: expected a finite 1-D array, got shape {u.shape}")
    s = None if similarity is None else check_similarity(similarity)
    if s is not None and s.shape[0] != s.shape[1]:
        raise ValueError(f"similarity: expected (n_pool, n_pool), got {s.shape}")
    sizes = {name: n for name, n in (("uncertainties", None if u is None else u.shape[0]),
                                      ("similarity", None if s is None else s.shape[0]),
                                      ("n_pool", n_pool)) if n is not None}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"pick: inconsistent pool sizes {sizes}")
    if not sizes:
        raise ValueError("pick: give uncertainties, similarity or n_pool")
    return u, s, next(iter(sizes.values()))


def pick(selection: str, *, uncertainties: Any = None, similarity: Any = None, k_pick: int,
         k_candidates: int | None = None, rng: np.random.Generator | None = None,
         n_pool: int | None = None, floor: float = 0.0) -> list[int]:
    """Pick ``k_pick`` images of the unannotated pool by one of the selection methods.

    Args:
        selection: 'suggestive' (the ``k_candidates`` most uncertain are candidates, then
            ``k_pick`` of them by :func:`select_representative` w.r.t. the whole pool),
            'uncertainty' (the ``k_pick`` most uncertain) or 'random' (drawn without
            replacement with ``rng``). 'full' is a setting of the rounds, not a pick.
        uncertainties: (n_pool,) per-image uncertainty (needed unless 'random').
        similarity: (n_pool, n_pool) similarity between pool images ('suggestive').
        k_pick: number of images to pick, 1 <= k_pick <= n_pool.
        k_candidates: number of candidates ('suggestive'), k_pick <= k_candidates; more
            than n_pool means the whole pool.
        rng: a ``numpy.random.Generator`` ('random').
        n_pool: pool size, only needed by 'random' when neither array is given.
        floor: see :func:`select_representative`.

    Returns:
        list of ``k_pick`` pool indices, in the order picked.

    >>> pick("uncertainty", uncertainties=[0.2, 0.7, 0.5], k_pick=2)
    [1, 2]
    """
    if selection not in METHODS:
        raise ValueError(f"selection: expected one of {METHODS}, got {selection!r}")
    if selection == "full":
        raise ValueError("selection: 'full' annotates the whole pool; it is a setting of "
                         "run_suggestion, not a pick")
    k = check_count(k_pick, "k_pick")
    u, s, size = _pool_arrays(uncertainties, similarity, n_pool)
    if k > size:
        raise ValueError(f"k_pick: cannot pick {k} images from a pool of {size}")
    if selection == "random":
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng: selection 'random' needs a numpy.random.Generator, got {rng!r}")
        return [int(i) for i in rng.choice(size, size=k, replace=False)]
    if u is None:
        raise ValueError(f"uncertainties: selection {selection!r} needs the pool's uncertainties")
    if selection == "uncertainty":
        return top_uncertain(u, k)
    if k_candidates is None:  # suggestive
        raise ValueError("k_candidates: selection 'suggestive' needs the number of candidates")
    k_c = check_count(k_candidates, "k_candidates")
    if k_c < k:
        raise ValueError(f"k_candidates: expected k_pick <= k_candidates, got k_pick={k}, "
                         f"k_candidates={k_c}")
    if s is None:
        raise ValueError("similarity: selection 'suggestive' needs the (n_pool, n_pool) similarity")
    candidates = top_uncertain(u, k_c)
    chosen = select_representative(s[candidates], k, floor=floor)
    return [candidates[j] for j in chosen]
