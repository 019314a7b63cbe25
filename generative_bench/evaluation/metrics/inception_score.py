"""Inception Score (Salimans et al. 2016): IS = exp(E_x KL(p(y|x) || p(y))).

Computed from the Inception *logits* (1008 classes for the TF-faithful network, "unbiased":
no bias-free softmax tricks) with a float64 softmax. The N samples are cut into ``splits``
consecutive chunks ``[i*N//splits, (i+1)*N//splits)``; p(y) is the mean of p(y|x) within a
chunk; the result is the mean and (ddof=0) std of the per-chunk scores.

Ordering (``order``), recorded beside every score:

* ``"canonical"`` (default): the rows are first sorted by content (:mod:`.order`), then permuted
  with ``np.random.RandomState(seed).permutation(N)`` as torch-fidelity does: any ordering of the
  same logits gives bitwise the same score, and the splits are random mixtures of the set. The
  harness sorts by the samples' images instead (:func:`.order.sample_order`), which the last bits
  of the logits (another batch size or number of ranks at extraction) cannot move;
* ``"shuffled"``: torch-fidelity's convention exactly (its default ``samples_shuffle=True``, seed
  2020): the permutation applied to the order given, so equal to ``isc`` on the same logits in the
  same order, but a reordered set scores (slightly) differently;
* ``"sequential"``: guided-diffusion / improved-gan: consecutive chunks in the order given (a
  class-sorted set then scores as single-class splits: far too low).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import log_softmax

from ._checks import MeanStd, as_features, check_positive_int
from .order import canonical_order, check_order

DEFAULT_SPLITS = 10
TORCH_FIDELITY_SEED = 2020
ORDERS = ("canonical", "shuffled", "sequential")
DEFAULT_ORDER = "canonical"


def _split_scores(log_p: np.ndarray, splits: int) -> np.ndarray:
    n = log_p.shape[0]
    scores = np.empty(splits, dtype=np.float64)
    for i in range(splits):
        chunk = log_p[i * n // splits : (i + 1) * n // splits]
        p = np.exp(chunk)
        log_marginal = np.log(p.mean(axis=0))
        kl = (p * (chunk - log_marginal)).sum(axis=1).mean()
        scores[i] = np.exp(kl)
    return scores


def inception_score(
    logits: Any, splits: int = DEFAULT_SPLITS, order: str = DEFAULT_ORDER, seed: int = TORCH_FIDELITY_SEED
) -> MeanStd:
    """Inception Score of (N, C) logits: mean and std over ``splits`` chunks (see module doc)."""
    splits = check_positive_int(splits, "splits")
    check_order(order, ORDERS, "Inception Score split order")
    x = as_features(logits, "logits", min_samples=splits, what=f"Inception Score with {splits} splits")
    if order == "canonical":
        x = x[canonical_order(x)]
    if order != "sequential":
        x = x[np.random.RandomState(seed).permutation(x.shape[0])]
    log_p = log_softmax(x.astype(np.float64), axis=1)
    scores = _split_scores(log_p, splits)
    return MeanStd(float(np.mean(scores)), float(np.std(scores)))
