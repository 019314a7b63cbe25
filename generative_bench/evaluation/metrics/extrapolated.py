"""FID_inf and IS_inf (Chong & Forsyth 2020, "Effectively Unbiased FID and Inception Score
and where to find them").

FID_N and IS_N are biased in the number of samples N, and the bias is linear in 1/N. Evaluate
the metric on random subsets of ``num_points`` sizes spread evenly between ``min_size`` and
N (the paper: 15 sizes from 5,000 to 50,000; by default we use ``min_size = N // 10``, the
same grid for N = 50,000 and a proportionally scaled one for fewer samples), fit
``metric = intercept + slope / N`` by least squares and report the intercept (1/N -> 0).
Each subset is a fresh random draw without replacement (``RandomState(seed)``); IS_N uses a
single split, as in the paper's code. An option of the harness, not a default metric.

FID_N uses the same trace-square-root method as FID (``method``, default "eigh"); the
reference covariance factor is computed once for all sizes, and each subset's rows are taken in
index order, so the full-size point has exactly FID's statistics and reuses its cached trace term.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from generative_bench.errors import InputError

from ._checks import as_features, check_positive_int
from .fid import DEFAULT_METHOD, check_method, frechet_distance, gaussian_stats
from .inception_score import inception_score

DEFAULT_POINTS = 15


class Extrapolation(NamedTuple):
    value: float  # extrapolated metric at 1/N = 0
    slope: float  # d metric / d(1/N)
    sizes: tuple[int, ...]
    values: tuple[float, ...]


def subset_sizes(n: int, num_points: int = DEFAULT_POINTS, min_size: int | None = None) -> np.ndarray:
    """``num_points`` evenly spaced integer sizes from ``min_size`` (default ``n // 10``) to ``n``."""
    num_points = check_positive_int(num_points, "num_points", minimum=2)
    if min_size is None:
        min_size = max(2, n // 10)
    min_size = check_positive_int(min_size, "min_size", minimum=2)
    if min_size >= n:
        raise InputError(f"extrapolation needs min_size < number of samples, got min_size={min_size}, N={n}")
    sizes = np.unique(np.linspace(min_size, n, num_points).astype(np.int64))
    if len(sizes) < 2:  # pragma: no cover - guarded by min_size < n
        raise InputError(f"extrapolation needs at least 2 distinct subset sizes, got {sizes.tolist()}")
    return sizes


def fit_inverse_n(sizes: Any, values: Any) -> tuple[float, float]:
    """Least-squares line ``values = intercept + slope / sizes``; returns (intercept, slope)."""
    x = 1.0 / np.asarray(sizes, dtype=np.float64)
    slope, intercept = np.polyfit(x, np.asarray(values, dtype=np.float64), 1)
    return float(intercept), float(slope)


def _extrapolate(n: int, metric_of_indices, num_points: int, min_size: int | None, seed: int) -> Extrapolation:
    sizes = subset_sizes(n, num_points, min_size)
    rng = np.random.RandomState(seed)
    values = [metric_of_indices(rng.permutation(n)[:size]) for size in sizes]
    intercept, slope = fit_inverse_n(sizes, values)
    return Extrapolation(intercept, slope, tuple(int(s) for s in sizes), tuple(float(v) for v in values))


def fid_infinity(
    sample_features: Any,
    ref_mu: Any,
    ref_sigma: Any,
    num_points: int = DEFAULT_POINTS,
    min_size: int | None = None,
    seed: int = 0,
    method: str = DEFAULT_METHOD,
) -> Extrapolation:
    """FID_inf: FID_N of sample subsets against fixed reference statistics, extrapolated to 1/N=0."""
    check_method(method)
    x = as_features(sample_features, "sample features", min_samples=4, what="FID_inf")
    mu = np.atleast_1d(np.asarray(ref_mu))
    if mu.shape != (x.shape[1],):
        raise InputError(
            f"feature dimensions differ: sample features have shape {x.shape}, reference mu has "
            f"shape {mu.shape}; both must come from the same extractor layer"
        )

    def fid_of(idx: np.ndarray) -> float:
        mu_n, sigma_n = gaussian_stats(x[np.sort(idx)], "sample subset")
        return frechet_distance(mu_n, sigma_n, ref_mu, ref_sigma, method=method)

    return _extrapolate(x.shape[0], fid_of, num_points, min_size, seed)


def is_infinity(
    logits: Any, num_points: int = DEFAULT_POINTS, min_size: int | None = None, seed: int = 0
) -> Extrapolation:
    """IS_inf: single-split IS_N on logit subsets, extrapolated to 1/N = 0."""
    x = as_features(logits, "logits", min_samples=4, what="IS_inf")
    return _extrapolate(x.shape[0], lambda idx: inception_score(x[idx], splits=1).mean, num_points, min_size, seed)
