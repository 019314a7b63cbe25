"""Frechet Inception Distance (Heusel et al. 2017) and sFID (Nash et al. 2021).

FID = ||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^{1/2}) between Gaussians fitted to two
feature sets, in float64, with ``mu = mean(x)`` and ``sigma = np.cov(x, rowvar=False)``
(unbiased, N - 1) as in TTUR / pytorch-fid / guided-diffusion. Two ways to get the trace term:

* ``method="eigh"`` (the default): exact, from symmetric eigendecompositions only. With
  F F^T = S2 (F = V diag(sqrt(w)) from ``eigh(S2)``, eigenvalues clipped at 0 and zero columns
  dropped), S1 S2 = S1 F F^T has the same non-zero eigenvalues as the symmetric positive
  semi-definite F^T S1 F, so Tr((S1 S2)^{1/2}) = sum_i sqrt(lambda_i(F^T S1 F)), tiny negative
  round-off eigenvalues clipped at 0. This is the ``sqrt(S1) S2 sqrt(S1)`` form of the trace
  (Dowson & Landau 1982) with the two covariances exchanged, which is allowed because
  Tr((S1 S2)^{1/2}) = Tr((S2 S1)^{1/2}): the factor of the *second* covariance (the reference's,
  in the harness) is computed once per distinct matrix and cached in-process, so every further
  evaluation against that reference costs two matrix products and one ``eigvalsh``. A
  covariance with a clearly negative eigenvalue (below ``-PSD_RTOL`` times the largest one) is
  an input error, not something to clip.
* ``method="sqrtm"``: the guided-diffusion / pytorch-fid rule, ``scipy.linalg.sqrtm(S1 @ S2)``;
  if the result is not finite, warn and retry with ``eps * I`` (eps = 1e-6) added to both
  covariances; a complex result whose diagonal has an imaginary part above 1e-3 is an error,
  otherwise the real part is kept. Several times slower on 2048-d features; tests check that
  the two methods agree to 1e-6 relative on full-rank and on rank-deficient (N < D) statistics.

The trace term of a pair of covariances is computed once and cached by the content (SHA-1 of
the bytes) of both matrices and the method, so FID, FID_inf's full-size point and any repeated
evaluation of the same statistics share one computation (warnings of the computation are
re-emitted on a cache hit). Matrices of fewer than ``CACHE_MIN_DIM`` dimensions are not cached:
their square roots take milliseconds. :func:`clear_cache` empties both caches.

sFID is the same distance on the spatial features (first 7 channels of ``mixed_6/conv``).
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from collections import OrderedDict
from typing import Any, Callable, NamedTuple

import numpy as np
from scipy import linalg

from generative_bench.errors import InputError

from ._checks import MetricWarning, as_features, check_same_dim

SQRTM_EPS = 1e-6
IMAG_ATOL = 1e-3
DEFAULT_METHOD = "eigh"
METHODS = ("eigh", "sqrtm")
#: how each method gets Tr((S1 S2)^{1/2}); recorded in the metric settings of the harness
METHOD_RULES = {
    "eigh": "exact symmetric eigh: sum sqrt(eigvalsh(F^T S1 F)), F F^T = S2 (float64, negatives clipped at 0)",
    "sqrtm": "scipy.linalg.sqrtm(S1 S2), eps=1e-6 retry, |imag| <= 1e-3 (guided-diffusion / pytorch-fid rule)",
}
PSD_RTOL = 1e-4
CACHE_MIN_DIM = 128
FACTOR_CACHE_BYTES = 256 * 2**20  # e.g. eight 2048 x 2048 float64 factors
TRACE_CACHE_ENTRIES = 64


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


def check_method(method: str) -> str:
    if method not in METHODS:
        raise InputError(f"FID method (eval.fid_method) must be one of {list(METHODS)}, got {method!r}")
    return method


# ------------------------------------------------------------------------------------ caches
_lock = threading.Lock()
_factors: OrderedDict[tuple, np.ndarray] = OrderedDict()
_traces: OrderedDict[tuple, tuple[float, tuple[str, ...]]] = OrderedDict()


def array_digest(a: np.ndarray) -> tuple:
    """A content key of an array: dtype, shape and the SHA-1 of its bytes."""
    a = np.ascontiguousarray(a)
    return a.dtype.str, a.shape, hashlib.sha1(a.view(np.uint8).reshape(-1)).hexdigest()


def clear_cache() -> None:
    """Forget every cached covariance factor and trace term."""
    with _lock:
        _factors.clear()
        _traces.clear()


def cache_info() -> dict[str, int]:
    with _lock:
        return {"factors": len(_factors), "factor_bytes": sum(f.nbytes for f in _factors.values()),
                "traces": len(_traces)}


def _cacheable(sigma: np.ndarray) -> bool:
    return sigma.shape[0] >= CACHE_MIN_DIM


def _psd_tolerance(w: np.ndarray) -> float:
    return PSD_RTOL * max(float(np.abs(w).max(initial=0.0)), np.finfo(np.float64).tiny)


def _compute_factor(sigma: np.ndarray, name: str) -> np.ndarray:
    w, v = np.linalg.eigh(sigma)
    if w.size and w[0] < -_psd_tolerance(w):
        raise InputError(f"FID: {name} is not positive semi-definite (eigenvalue {w[0]:.3g}, largest "
                         f"{w[-1]:.3g}); a covariance from np.cov never is - recompute the statistics")
    keep = w > 0
    return np.ascontiguousarray(v[:, keep] * np.sqrt(w[keep]))


def psd_sqrt_factor(sigma: Any, name: str = "covariance", _key: tuple | None = None) -> np.ndarray:
    """F (D, r) float64 with F F^T = sigma, r = number of positive eigenvalues (cached by content)."""
    sigma = np.asarray(sigma, dtype=np.float64)
    if not _cacheable(sigma):
        return _compute_factor(sigma, name)
    key = _key if _key is not None else array_digest(sigma)
    with _lock:
        hit = _factors.get(key)
        if hit is not None:
            _factors.move_to_end(key)
            return hit
    factor = _compute_factor(sigma, name)
    factor.setflags(write=False)
    with _lock:
        _factors[key] = factor
        while len(_factors) > 1 and sum(f.nbytes for f in _factors.values()) > FACTOR_CACHE_BYTES:
            _factors.popitem(last=False)
    return factor


def _trace_eigh(sigma1: np.ndarray, sigma2: np.ndarray, key2: tuple | None = None) -> float:
    f = psd_sqrt_factor(sigma2, "covariance 2", _key=key2)
    inner = f.T @ (sigma1 @ f)
    lam = np.linalg.eigvalsh(inner) if inner.size else np.zeros(0)
    if lam.size and lam[0] < -_psd_tolerance(lam):
        raise InputError(f"FID: covariance 1 is not positive semi-definite (F^T S1 F has eigenvalue {lam[0]:.3g}, "
                         f"largest {lam[-1]:.3g}); a covariance from np.cov never is - recompute the statistics")
    return float(np.sqrt(np.clip(lam, 0, None)).sum())


def _trace_sqrtm(sigma1: np.ndarray, sigma2: np.ndarray, eps: float, notes: list[str]) -> float:
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        notes.append(f"FID: sqrtm(sigma1 @ sigma2) is not finite (singular product); adding {eps} to the "
                     "diagonal of both covariances")
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
    return float(np.trace(covmean))


def trace_sqrt_product(sigma1: Any, sigma2: Any, method: str = DEFAULT_METHOD, eps: float = SQRTM_EPS) -> float:
    """Tr((sigma1 sigma2)^{1/2}) by ``method`` ("eigh" or "sqrtm"), cached per pair of matrices."""
    check_method(method)
    sigma1 = np.asarray(sigma1, dtype=np.float64)
    sigma2 = np.asarray(sigma2, dtype=np.float64)
    key = key2 = None
    if _cacheable(sigma1):
        key2 = array_digest(sigma2)
        key = (method, float(eps) if method == "sqrtm" else None, array_digest(sigma1), key2)
        with _lock:
            hit = _traces.get(key)
            if hit is not None:
                _traces.move_to_end(key)
        if hit is not None:
            for note in hit[1]:
                warnings.warn(note, MetricWarning, stacklevel=3)
            return hit[0]
    notes: list[str] = []
    if method == "eigh":
        value = _trace_eigh(sigma1, sigma2, key2)
    else:
        value = _trace_sqrtm(sigma1, sigma2, eps, notes)
    for note in notes:
        warnings.warn(note, MetricWarning, stacklevel=3)
    if key is not None:
        with _lock:
            _traces[key] = (value, tuple(notes))
            while len(_traces) > TRACE_CACHE_ENTRIES:
                _traces.popitem(last=False)
    return value


def trace_sqrt_product_eigh(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr((S1 S2)^{1/2}) via symmetric eigendecompositions (both covariances PSD)."""
    return trace_sqrt_product(sigma1, sigma2, method="eigh")


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any, eps: float = SQRTM_EPS,
                     method: str = DEFAULT_METHOD) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) in float64.

    ``method``: "eigh" (exact, the default) or "sqrtm" (guided-diffusion / pytorch-fid rule with
    the ``eps`` retry); see the module doc. Pass the reference statistics second: their
    covariance factor is what the "eigh" method caches.
    """
    check_method(method)
    mu1, sigma1 = _check_stats(mu1, sigma1, "statistics 1")
    mu2, sigma2 = _check_stats(mu2, sigma2, "statistics 2")
    if mu1.shape != mu2.shape:
        raise InputError(
            f"feature dimensions differ: statistics 1 has mu {mu1.shape} / sigma {sigma1.shape}, "
            f"statistics 2 has mu {mu2.shape} / sigma {sigma2.shape}; "
            "both must come from the same extractor layer"
        )
    diff = mu1 - mu2
    tr_covmean = trace_sqrt_product(sigma1, sigma2, method=method, eps=eps)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


def fid_from_stats(stats1: GaussianStats, stats2: GaussianStats, method: str = DEFAULT_METHOD) -> float:
    return frechet_distance(stats1[0], stats1[1], stats2[0], stats2[1], method=method)


def fid_from_features(features1: Any, features2: Any, method: str = DEFAULT_METHOD) -> float:
    """FID between two feature sets (e.g. Inception pool features, (N, 2048))."""
    a = as_features(features1, "features 1", min_samples=2, what="FID (a covariance)")
    b = as_features(features2, "features 2", min_samples=2, what="FID (a covariance)")
    check_same_dim(a, b, "features 1", "features 2")
    return fid_from_stats(gaussian_stats(a, "features 1"), gaussian_stats(b, "features 2"), method=method)


def sfid_from_features(spatial1: Any, spatial2: Any, method: str = DEFAULT_METHOD) -> float:
    """sFID: the Frechet distance on spatial features (N, 2023), same rules as FID."""
    return fid_from_features(spatial1, spatial2, method=method)


def feature_frechet(extractor) -> Callable[[Any, Any], dict[str, Any]]:
    """``(originals, reconstructions) -> {"rfd", "rfd_features", "rfd_comparable"}``: the Frechet
    distance of two uint8 image sets in ``extractor``'s pool features (reconstruction FID, R-FID,
    in the Inception space), float64 with the harness's rule."""
    def rfd(real_images, fake_images) -> dict[str, Any]:
        real = extractor.extract_tensor(real_images)["pool"]
        fake = extractor.extract_tensor(fake_images)["pool"]
        mu_r, sigma_r = gaussian_stats(real, "original features")
        mu_f, sigma_f = gaussian_stats(fake, "reconstruction features")
        desc = extractor.describe()
        return {"rfd": float(frechet_distance(mu_f, sigma_f, mu_r, sigma_r)), "rfd_features": str(desc.get("name")),
                "rfd_comparable": bool(desc.get("comparable", False))}
    return rfd

