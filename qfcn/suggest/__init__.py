"""Suggestive annotation (``docs/method.md §5``): which images to annotate, round by round.

The public API, by submodule:

* :mod:`~qfcn.suggest.select`: per-image uncertainty, cosine similarity, the generalized
  max-cover and its greedy maximisation, :func:`pick` behind one interface for every
  selection method (:data:`METHODS`; those that need an ensemble: :data:`MODEL_METHODS`);
* :mod:`~qfcn.suggest.similarity`: the similarity between images from the members'
  descriptors (:data:`SIMILARITY_FORMS`, default per member, centred) and the picked set's
  coverage against random subsets as a z-score (:func:`coverage_against_random`);
* :mod:`~qfcn.suggest.rounds`: :func:`run_suggestion`, the resumable loop of rounds until
  the annotation budget, and its records; its settings are checked by
  :mod:`~qfcn.suggest.settings` (:func:`validate_settings`);
* :mod:`~qfcn.suggest.ensemble`: the suggestive ensemble of notebooks 02 and 03: the loop's
  train/predict callbacks, out-of-bag member scores, disagreement against bit-width.

>>> from qfcn import suggest
>>> suggest.pick("uncertainty", uncertainties=[0.1, 0.3, 0.2], k_pick=1)
[1]
"""
from qfcn.suggest.ensemble import (
    EnsembleRounds,
    disagreement_curve,
    initial_split,
    mean_disagreement,
    out_of_bag_scores,
    probe_subset,
    round_dir,
    run_rounds,
)
from qfcn.suggest.rounds import (
    RoundRecord,
    SuggestionResult,
    SuggestionStateError,
    initial_set,
    run_suggestion,
)
from qfcn.suggest.select import (
    METHODS,
    MODEL_METHODS,
    cosine_similarity,
    coverage,
    marginal_gains,
    pick,
    select_representative,
    top_uncertain,
    uncertainty,
    uncertainty_map,
)
from qfcn.suggest.settings import count_from_fraction, validate_settings
from qfcn.suggest.similarity import (
    SIMILARITY_FORMS,
    coverage_against_random,
    descriptor_similarity,
)

__all__ = [
    "METHODS",
    "MODEL_METHODS",
    "SIMILARITY_FORMS",
    "EnsembleRounds",
    "RoundRecord",
    "SuggestionResult",
    "SuggestionStateError",
    "cosine_similarity",
    "count_from_fraction",
    "coverage",
    "coverage_against_random",
    "descriptor_similarity",
    "disagreement_curve",
    "initial_set",
    "initial_split",
    "marginal_gains",
    "mean_disagreement",
    "out_of_bag_scores",
    "pick",
    "probe_subset",
    "round_dir",
    "run_rounds",
    "run_suggestion",
    "select_representative",
    "top_uncertain",
    "uncertainty",
    "uncertainty_map",
    "validate_settings",
]
