"""CMMD (Jayasumana et al. 2024, "Rethinking FID: Towards a Better Evaluation Metric for Image
Generation", Sec. 4): the squared maximum mean discrepancy between the CLIP embeddings of the
reference images X and of the samples Y, with a Gaussian RBF kernel
``k(x, y) = exp(-||x - y||^2 / (2 sigma^2))``, sigma = 10, shown x1000:

    CMMD = 1000 * ( mean_{i,j} k(x_i, x_j) + mean_{i,j} k(y_i, y_j) - 2 mean_{i,j} k(x_i, y_j) )

The means run over all pairs, diagonals included (the estimator of the authors' reference code,
``google-research/cmmd`` ``distance.py``; the unbiased U-statistic would leave the diagonals out).
Embeddings are L2-normalised by the extractor, as in the paper. No Gaussian assumption and no
bias in N of the kind FID has beyond the V-statistic's O(1/N). Kernel sums in float64 blocks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._checks import as_features, check_same_dim

SIGMA = 10.0
SCALE = 1000.0
BLOCK = 2048


def rbf_kernel_mean(a: np.ndarray, b: np.ndarray, sigma: float = SIGMA, block: int = BLOCK) -> float:
    """Mean of ``exp(-||a_i - b_j||^2 / (2 sigma^2))`` over all (i, j), blockwise in float64."""
    gamma = 1.0 / (2.0 * float(sigma) ** 2)
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    b_sq = np.einsum("ij,ij->i", b, b)
    total = 0.0
    for s in range(0, len(a), block):
        x = a[s:s + block]
        d2 = np.einsum("ij,ij->i", x, x)[:, None] + b_sq[None, :] - 2.0 * (x @ b.T)
        total += float(np.exp(-gamma * np.maximum(d2, 0.0)).sum())
    return total / (len(a) * len(b))


def cmmd(reference: Any, samples: Any, sigma: float = SIGMA, scale: float = SCALE) -> float:
    """CMMD of ``samples`` against ``reference`` (both (N, D) CLIP embeddings); 0 for identical sets."""
    x = as_features(reference, "reference CLIP embeddings", min_samples=2, what="CMMD")
    y = as_features(samples, "sample CLIP embeddings", min_samples=2, what="CMMD")
    check_same_dim(y, x, "sample CLIP embeddings", "reference CLIP embeddings")
    mmd2 = rbf_kernel_mean(x, x, sigma) + rbf_kernel_mean(y, y, sigma) - 2.0 * rbf_kernel_mean(x, y, sigma)
    return float(scale * mmd2)


__all__ = ["SCALE", "SIGMA", "cmmd", "rbf_kernel_mean"]
