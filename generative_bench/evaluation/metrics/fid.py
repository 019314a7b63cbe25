"""Frechet Inception Distance (Heusel et al. 2017) and sFID (Nash et al. 2021).

FID = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2}) between Gaussians fitted to two feature
sets. Follows the TTUR / pytorch-fid / guided-diffusion ``frechet_distance`` rules, in float64:

* statistics: ``mu = mean(x)``, ``sigma = np.cov(x, rowvar=False)`` (unbiased, N - 1);
* ``scipy.linalg.sqrtm(S1 @ S2)``; if the result is not finite, warn and retry with
  ``eps * I`` (eps = 1e-6) added to both covariances;
* a complex result whose diagonal has an imaginary part above 1e-3 is an error; otherwise the
  real part is kept.

sFID is the same distance on the spatial features (first 7 channels of ``mixed_6/conv``).

``method="eigh"`` is an exact alternative for the trace term that is several times faster on
2048-d features: Tr((S1 S2)^{1/2}) = Tr((S1^{1/2} S2 S1^{1/2})^{1/2}) = sum sqrt(eig(.)) with
symmetric eigen-decompositions only (negative round-off eigenvalues clipped at 0). It agrees
with the sqrtm rule to ~1e-9 relative on well-conditioned statistics; ``"sqrtm"`` stays the
default because it is what published figures used.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import numpy as np
from scipy import linalg

from generative_bench.errors import InputError

from ._checks import MetricWarning, as_features, check_same_dim

SQRTM_EPS = 1e-6
IMAG_ATOL = 1e-3


class GaussianStats(NamedTuple):
    """Mean (D,) and covariance (D, D) of a feature set, both float64."""

    mu: np.ndarray
    sigma: np.ndarray


def gaussian_stats(features: Any, name: str = "features", block_rows: int = 4096) -> GaussianStats:
    """``mu = mean(x, 0)`` and ``sigma = np.cov(x, rowvar=False)`` in float64.

    Computed in row blocks (``block_rows`` rows converted to float64 at a time) so 50k x 2048
    float32 features never need a full float64 copy. Warns when N < D (singular covariance).
    """
    x = as_features(features, name, min_samples=2, what="FID (a covariance)")
    n, d = x.shape
    if n < d:
        warnings.warn(
            f"{name}: {n} samples < {d} feature dimensions, so the covariance is singular and "
            f"FID is biased upward; use at least {d} samples (published FIDs use 50,000)",
            MetricWarning,
            stacklevel=2,
        )
    total = np.zeros(d, dtype=np.float64)
    for start in range(0, n, block_rows):
        total += x[start : start + block_rows].sum(axis=0, dtype=np.float64)
    mu = total / n
    scatter = np.zeros((d, d), dtype=np.float64)
    for start in range(0, n, block_rows):
        c = x[start : start + block_rows].astype(np.float64) - mu
        scatter += c.T @ c
    sigma = scatter / (n - 1)
    return GaussianStats(mu, sigma)


def _check_stats(mu: Any, sigma: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    mu = np.atleast_1d(np.asarray(mu, dtype=np.float64))
    sigma = np.atleast_2d(np.asarray(sigma, dtype=np.float64))
    if mu.ndim != 1:
        raise InputError(f"{name}: mu must be 1-D, got shape {mu.shape}")
    if sigma.shape != (mu.shape[0], mu.shape[0]):
        raise InputError(
            f"{name}: sigma must have shape ({mu.shape[0]}, {mu.shape[0]}) to match mu {mu.shape}, "
            f"got {sigma.shape}"
        )
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise InputError(f"{name}: mu/sigma contain NaN or Inf; recompute the statistics")
    return mu, sigma


def trace_sqrt_product_eigh(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr((S1 S2)^{1/2}) via symmetric eigen-decompositions (both covariances PSD)."""
    w, v = np.linalg.eigh(sigma1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = root1 @ sigma2 @ root1
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum())


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any, eps: float = SQRTM_EPS,
                     method: str = "sqrtm") -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (float64, TTUR/guided-diffusion rules)."""
    mu1, sigma1 = _check_stats(mu1, sigma1, "statistics 1")
    mu2, sigma2 = _check_stats(mu2, sigma2, "statistics 2")
    if mu1.shape != mu2.shape:
        raise InputError(
            f"feature dimensions differ: statistics 1 has mu {mu1.shape} / sigma {sigma1.shape}, "
            f"statistics 2 has mu {mu2.shape} / sigma {sigma2.shape}; "
            "both must come from the same extractor layer"
        )
    diff = mu1 - mu2
    if method == "eigh":
        return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product_eigh(sigma1, sigma2))
    if method != "sqrtm":
        raise InputError(f"FID method must be 'sqrtm' or 'eigh', got {method!r}")
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        warnings.warn(
            f"FID: sqrtm(sigma1 @ sigma2) is not finite (singular product); adding {eps} to the "
            "diagonal of both covariances",
            MetricWarning,
            stacklevel=2,
        )
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        diag_imag = np.abs(np.diagonal(covmean).imag)
        if not np.allclose(diag_imag, 0, atol=IMAG_ATOL):
            i = int(np.argmax(diag_imag))
            raise InputError(
                f"FID: sqrtm(sigma1 @ sigma2) has an imaginary component {diag_imag[i]:.3g} on its "
                f"diagonal (index {i}; largest |imag| anywhere {np.max(np.abs(covmean.imag)):.3g}), "
                f"above the {IMAG_ATOL} tolerance; the covariances are degenerate - use more samples "
                "or check the features"
            )
        covmean = covmean.real
    if not np.isfinite(covmean).all():
        raise InputError("FID: sqrtm(sigma1 @ sigma2) is not finite even after the eps retry")
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean)
    return float(value)


def fid_from_stats(stats1: GaussianStats, stats2: GaussianStats) -> float:
    return frechet_distance(stats1[0], stats1[1], stats2[0], stats2[1])


def fid_from_features(features1: Any, features2: Any) -> float:
    """FID between two feature sets (e.g. Inception pool features, (N, 2048))."""
    a = as_features(features1, "features 1", min_samples=2, what="FID (a covariance)")
    b = as_features(features2, "features 2", min_samples=2, what="FID (a covariance)")
    check_same_dim(a, b, "features 1", "features 2")
    return fid_from_stats(gaussian_stats(a, "features 1"), gaussian_stats(b, "features 2"))


def sfid_from_features(spatial1: Any, spatial2: Any) -> float:
    """sFID: the Frechet distance on spatial features (N, 2023), same rules as FID."""
    return fid_from_features(spatial1, spatial2)
