"""Vendi score (Friedman & Dieng 2023, "The Vendi Score: A Diversity Evaluation Metric for Machine
Learning", eq. 1): the exponential of the Shannon entropy of the eigenvalues of K / n, with K the
n x n similarity matrix of the samples (k(x, x) = 1). With the cosine kernel on features
(k(x, y) = x.y / (|x| |y|), as dgm-eval uses) K = X X^T for the row-normalised features X, whose
non-zero eigenvalues are those of the d x d matrix X^T X, so the score costs O(n d^2), not O(n^3).
It is the effective number of distinct samples: 1 for n copies of one point, n for n orthogonal
points, at most min(n, d) here. It needs no reference set.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from generative_bench.errors import InputError

from ._checks import as_features


def vendi_score(features: Any, q: float = 1.0) -> float:
    """Vendi score of order ``q`` (q = 1: the paper's Shannon form; q != 1: Renyi entropy of order q)."""
    x = as_features(features, "sample features", min_samples=1, what="the Vendi score").astype(np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        raise InputError("the Vendi score's cosine kernel is undefined for all-zero feature vectors; use another "
                         "feature space or drop those samples")
    x = x / norms
    n, d = x.shape
    gram = x @ x.T if n <= d else x.T @ x
    lam = np.clip(np.linalg.eigvalsh(gram / n), 0.0, None)
    lam = lam[lam > 0]
    if q == 1.0:
        return float(np.exp(-(lam * np.log(lam)).sum()))
    return float(np.exp(np.log((lam ** q).sum()) / (1.0 - q)))


__all__ = ["vendi_score"]
