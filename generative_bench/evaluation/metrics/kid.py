"""Kernel Inception Distance (Binkowski et al. 2018, "Demystifying MMD GANs").

KID is the unbiased estimator of MMD^2 with the cubic polynomial kernel
``k(x, y) = (gamma * x.y + coef0)^degree`` (gamma = 1/D, coef0 = 1, degree = 3):

    MMD^2_u = sum_{i!=j} k(x_i, x_j) / (m(m-1)) + sum_{i!=j} k(y_i, y_j) / (m(m-1))
              - 2 sum_{i,j} k(x_i, y_j) / m^2

averaged over ``subsets`` random subsets of ``subset_size`` from each set (torch-fidelity /
MMD-GAN scheme: ``rng = np.random.RandomState(seed)``; per subset, draw the indices of set 1
then set 2 with ``rng.choice(n, subset_size, replace=False)``; mean and ddof=0 std). With the
same seed (torch-fidelity's default is 2020) the subsets are identical to torch-fidelity's.
Kernels and sums are computed in float64 (torch-fidelity uses float32).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from generative_bench.errors import InputError

from ._checks import as_features, check_positive_int, check_same_dim

DEFAULT_SUBSETS = 100
DEFAULT_SUBSET_SIZE = 1000
DEFAULT_SEED = 2020


class KIDResult(NamedTuple):
    mean: float
    std: float
    subsets: int
    subset_size: int


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: float | None = None, coef0: float = 1.0):
    """``(gamma * x @ y.T + coef0) ** degree`` with ``gamma = 1 / D`` by default."""
    if gamma is None:
        gamma = 1.0 / x.shape[1]
    return (x @ y.T * gamma + coef0) ** degree


def mmd2_unbiased(k_xx: np.ndarray, k_xy: np.ndarray, k_yy: np.ndarray) -> float:
    """Unbiased MMD^2 from the three (m, m) kernel matrices (diagonals of k_xx, k_yy dropped)."""
    m = k_xx.shape[0]
    sum_xx = k_xx.sum() - np.trace(k_xx)
    sum_yy = k_yy.sum() - np.trace(k_yy)
    return float((sum_xx + sum_yy) / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m))


def kernel_inception_distance(
    features1: Any,
    features2: Any,
    subsets: int = DEFAULT_SUBSETS,
    subset_size: int = DEFAULT_SUBSET_SIZE,
    seed: int = DEFAULT_SEED,
    clip_subset_size: bool = False,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
) -> KIDResult:
    """KID between two (N, D) feature sets: mean and std of MMD^2_u over random subsets.

    Both sets need at least ``subset_size`` samples; otherwise an :class:`InputError` is raised
    unless ``clip_subset_size=True``, which uses ``min(subset_size, N1, N2)`` (reported in the
    result's ``subset_size`` field).
    """
    subsets = check_positive_int(subsets, "KID subsets")
    subset_size = check_positive_int(subset_size, "KID subset_size", minimum=2)
    a = as_features(features1, "features 1", min_samples=2, what="KID")
    b = as_features(features2, "features 2", min_samples=2, what="KID")
    check_same_dim(a, b, "features 1", "features 2")
    n1, n2 = a.shape[0], b.shape[0]
    if min(n1, n2) < subset_size:
        if not clip_subset_size:
            raise InputError(
                f"KID needs at least subset_size={subset_size} samples in each set, got "
                f"{n1} (features 1) and {n2} (features 2); provide at least {subset_size} samples, "
                "pass a smaller subset_size, or set clip_subset_size=True to use "
                f"min(subset_size, N1, N2) = {min(n1, n2)}"
            )
        subset_size = min(n1, n2)
    rng = np.random.RandomState(seed)
    values = np.empty(subsets, dtype=np.float64)
    for i in range(subsets):
        x = a[rng.choice(n1, subset_size, replace=False)].astype(np.float64)
        y = b[rng.choice(n2, subset_size, replace=False)].astype(np.float64)
        kern = dict(degree=degree, gamma=gamma, coef0=coef0)
        values[i] = mmd2_unbiased(polynomial_kernel(x, x, **kern), polynomial_kernel(x, y, **kern),
                                  polynomial_kernel(y, y, **kern))
    return KIDResult(float(values.mean()), float(values.std()), subsets, subset_size)
