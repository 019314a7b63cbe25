"""Inception Score (Salimans et al. 2016): IS = exp(E_x KL(p(y|x) || p(y))).

Computed from the Inception *logits* (1008 classes for the TF-faithful network, "unbiased":
no bias-free softmax tricks) with a float64 softmax. The N samples are cut into ``splits``
consecutive chunks ``[i*N//splits, (i+1)*N//splits)``; p(y) is the mean of p(y|x) within a
chunk; the result is the mean and (ddof=0) std of the per-chunk scores.

Ordering: guided-diffusion / improved-gan split the samples in the order given (``shuffle``
False, our default); torch-fidelity first permutes them with
``np.random.RandomState(2020).permutation(N)`` (its default ``samples_shuffle=True``):
``shuffle=True, seed=2020`` reproduces it exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import log_softmax

from ._checks import MeanStd, as_features, check_positive_int

DEFAULT_SPLITS = 10
TORCH_FIDELITY_SEED = 2020


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
    logits: Any, splits: int = DEFAULT_SPLITS, shuffle: bool = False, seed: int = TORCH_FIDELITY_SEED
) -> MeanStd:
    """Inception Score of (N, C) logits: mean and std over ``splits`` chunks (see module doc)."""
    splits = check_positive_int(splits, "splits")
    x = as_features(logits, "logits", min_samples=splits, what=f"Inception Score with {splits} splits")
    if shuffle:
        x = x[np.random.RandomState(seed).permutation(x.shape[0])]
    log_p = log_softmax(x.astype(np.float64), axis=1)
    scores = _split_scores(log_p, splits)
    return MeanStd(float(np.mean(scores)), float(np.std(scores)))
