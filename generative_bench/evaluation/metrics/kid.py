"""Kernel Inception Distance (Binkowski et al. 2018, "Demystifying MMD GANs").

KID is the unbiased estimator of MMD^2 with the cubic polynomial kernel
``k(x, y) = (gamma * x.y + coef0)^degree`` (gamma = 1/D, coef0 = 1, degree = 3):

    MMD^2_u = sum_{i!=j} k(x_i, x_j) / (m(m-1)) + sum_{i!=j} k(y_i, y_j) / (m(m-1))
              - 2 sum_{i,j} k(x_i, y_j) / m^2

averaged over ``subsets`` random subsets of ``subset_size`` from each set (torch-fidelity /
MMD-GAN scheme: ``rng = np.random.RandomState(seed)``; per subset, draw the indices of set 1
then set 2 with ``rng.choice(n, subset_size, replace=False)``; mean and ddof=0 std). With the
same seed (torch-fidelity's default is 2020) the subsets are identical to torch-fidelity's.

How the subset sums are computed (:func:`mmd2_subsets`): the subsets are index sets into the
three kernel matrices (set 1 x set 1, set 2 x set 2, set 1 x set 2). When evaluating those
matrices once costs fewer flops than evaluating every subset's blocks (e.g. 2,500 samples and
100 subsets of 1,000: 16x fewer kernel entries; break-even near 10,000 samples), they are
evaluated once, in blocks of ``BLOCK`` rows and only one block triangle of the two symmetric
ones, and every subset's sum is read off each block as ``c_s^T K c_s`` with ``c_s`` the
subset's 0/1 membership vector; otherwise each subset's kernel blocks are evaluated on their
own, as torch-fidelity does. Precision: for float32 features the dot products and kernel values
are float32 (float64 features: float64 throughout), the kernel is centred on its value at the
mean dot product before summing, and the sums are accumulated in float64 (a block product
``K c`` sums at most one block row in float32) with the centre added back exactly. Tests check
the per-subset values against torch-fidelity (float32 kernels and float32 sums, whose own
rounding is ~1e-7..1e-6) to 1e-6 and against float64 kernels to 1e-7.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from generative_bench.errors import InputError

from . import _chunks
from ._checks import as_features, check_positive_int, check_same_dim
from .order import canonical_order, check_order

DEFAULT_SUBSETS = 100
DEFAULT_SUBSET_SIZE = 1000
DEFAULT_SEED = 2020
BLOCK = 2048  # rows per kernel block in the evaluate-once strategy
STRATEGIES = ("auto", "once", "per_subset")


class KIDResult(NamedTuple):
    mean: float
    std: float
    subsets: int
    subset_size: int


ORDERS = ("canonical", "given")


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


def kid_subset_indices(n1: int, n2: int, subsets: int, subset_size: int,
                       seed: int = DEFAULT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """The (subsets, subset_size) index sets of both feature sets, in torch-fidelity's draw order."""
    rng = np.random.RandomState(seed)
    idx1 = np.empty((subsets, subset_size), dtype=np.int64)
    idx2 = np.empty((subsets, subset_size), dtype=np.int64)
    for i in range(subsets):
        idx1[i] = rng.choice(n1, subset_size, replace=False)
        idx2[i] = rng.choice(n2, subset_size, replace=False)
    return idx1, idx2


def _gram_dtype(a: np.ndarray, b: np.ndarray) -> np.dtype:
    return np.dtype(np.float64) if np.float64 in (a.dtype, b.dtype) else np.dtype(np.float32)


class _Kernel:
    """``(gamma * u.v + coef0) ** degree - center``: the centred kernel, in the dtype of the dots.

    The centre is the kernel at the mean dot product (``gamma * mean(u).mean(v) + coef0``) ** degree,
    rounded to the working dtype so that adding it back in float64 is exact; sums of centred
    values lose far less to float32 rounding than sums of raw kernel values (~1 to ~10 each)."""

    def __init__(self, mean_u: np.ndarray, mean_v: np.ndarray, gamma: float, coef0: float, degree, dtype):
        self.gamma, self.coef0, self.degree, self.dtype = gamma, coef0, degree, dtype
        center = (gamma * float(mean_u @ mean_v) + coef0) ** degree
        self.center = float(np.asarray(center, dtype=dtype))

    def __call__(self, g: np.ndarray) -> np.ndarray:
        """Centred kernel values from dot products ``g`` (overwritten), computed on cache-sized
        row chunks: the element-wise passes then run in the core's cache, not through memory."""
        gamma, coef0, center = g.dtype.type(self.gamma), g.dtype.type(self.coef0), g.dtype.type(self.center)
        deg = self.degree
        small_int = isinstance(deg, (int, np.integer)) and 1 <= deg <= 8
        rows = min(_chunks.rows_per_chunk(g.shape[1]), len(g))
        base = np.empty((rows, g.shape[1]), dtype=g.dtype) if small_int and deg > 1 else None
        for _, chunk in _chunks.row_chunks(g):
            chunk *= gamma
            chunk += coef0
            if small_int:
                if base is not None:
                    b = base[:len(chunk)]
                    np.copyto(b, chunk)
                    for _ in range(int(deg) - 1):
                        chunk *= b
            else:
                np.power(chunk, deg, out=chunk)
            chunk -= center
        return g


def _membership(idx: np.ndarray, rows: np.ndarray, dtype) -> np.ndarray:
    """(len(rows), subsets) counts: how often subset s uses row ``rows[r]``."""
    subsets = idx.shape[0]
    pos = np.searchsorted(rows, idx)
    counts = np.zeros((len(rows), subsets), dtype=dtype)
    np.add.at(counts, (pos, np.broadcast_to(np.arange(subsets)[:, None], idx.shape)), 1)
    return counts


def _reduce(k: np.ndarray, c_rows: np.ndarray, c_cols: np.ndarray) -> np.ndarray:
    """Per subset s: c_rows[:, s]^T k c_cols[:, s] (the matrix product in k's dtype: each of its
    entries sums at most one block row of centred values; the rest in float64)."""
    t = k @ c_cols
    return np.einsum("is,is->s", c_rows, t, dtype=np.float64)


def _once_within(x: np.ndarray, c: np.ndarray, kern: _Kernel, block: int) -> np.ndarray:
    """Per subset s: the sum over pairs of distinct positions p != q of k(x_{I_p}, x_{I_q}),
    from one evaluation of the upper block triangle of the symmetric kernel matrix."""
    n, subsets = x.shape[0], c.shape[1]
    total = np.zeros(subsets, dtype=np.float64)
    diag = np.zeros(subsets, dtype=np.float64)
    for r0 in range(0, n, block):
        xr, cr = x[r0:r0 + block], c[r0:r0 + block]
        for c0 in range(r0, n, block):
            if c0 == r0:
                k = kern(xr @ xr.T)  # a symmetric product: BLAS syrk, one triangle's work
                diag += cr.T.astype(np.float64) @ np.diagonal(k).astype(np.float64)
                total += _reduce(k, cr, cr)
            else:
                total += 2.0 * _reduce(kern(xr @ x[c0:c0 + block].T), cr, c[c0:c0 + block])
    counts = c.sum(axis=0, dtype=np.float64)
    # sum_{i,j} c_i c_j K_ij has c_i^2 terms on row i's diagonal, of which c_i^2 - c_i are pairs p != q
    return total - diag + kern.center * (counts * counts - counts)


def _once_between(x: np.ndarray, cx: np.ndarray, y: np.ndarray, cy: np.ndarray, kern: _Kernel,
                  block: int) -> np.ndarray:
    total = np.zeros(cx.shape[1], dtype=np.float64)
    for r0 in range(0, x.shape[0], block):
        xr, cr = x[r0:r0 + block], cx[r0:r0 + block]
        for c0 in range(0, y.shape[0], block):
            total += _reduce(kern(xr @ y[c0:c0 + block].T), cr, cy[c0:c0 + block])
    return total + kern.center * cx.sum(axis=0, dtype=np.float64) * cy.sum(axis=0, dtype=np.float64)


def _strategy(strategy: str, u1: int, u2: int, subsets: int, m: int, d: int) -> str:
    if strategy not in STRATEGIES:
        raise InputError(f"KID strategy must be one of {list(STRATEGIES)}, got {strategy!r}")
    if strategy != "auto":
        return strategy
    # flops: kernel entries to evaluate (the symmetric matrices count half) times 2d per dot
    # product, plus 2 * subsets per entry for the evaluate-once sums; subset by subset costs
    # about 10% more per entry (gathering the subsets' rows, the non-symmetric block in full)
    once = (u1 * u1 / 2 + u2 * u2 / 2 + u1 * u2) * (2 * d + 2 * subsets)
    per_subset = subsets * 2.0 * m * m * 2 * d * 1.1
    return "once" if once <= per_subset else "per_subset"


def mmd2_subsets(
    features1: Any,
    features2: Any,
    idx1: Any,
    idx2: Any,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    strategy: str = "auto",
    block: int = BLOCK,
) -> np.ndarray:
    """Unbiased MMD^2 of every subset ``s``: rows ``idx1[s]`` of set 1 against rows ``idx2[s]`` of set 2.

    ``idx1``/``idx2``: (subsets, m) integer index sets (see :func:`kid_subset_indices`); a row
    repeated within a subset counts as distinct positions, as in the explicit kernel matrices of
    that subset. ``strategy``: "auto" (see the module doc), "once" (evaluate the kernel matrices
    once) or "per_subset".
    """
    a = as_features(features1, "features 1", min_samples=1, what="KID")
    b = as_features(features2, "features 2", min_samples=1, what="KID")
    check_same_dim(a, b, "features 1", "features 2")
    idx1, idx2 = np.asarray(idx1, dtype=np.int64), np.asarray(idx2, dtype=np.int64)
    if idx1.ndim != 2 or idx1.shape != idx2.shape or idx1.shape[1] < 2:
        raise InputError(f"KID index sets must both have shape (subsets, m) with m >= 2, got {idx1.shape} and "
                         f"{idx2.shape}")
    for idx, n, name in ((idx1, len(a), "features 1"), (idx2, len(b), "features 2")):
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise InputError(f"KID index sets reach outside {name} ({n} rows)")
    subsets, m = idx1.shape
    d = a.shape[1]
    gamma = 1.0 / d if gamma is None else float(gamma)
    dt = _gram_dtype(a, b)
    rows1, rows2 = np.unique(idx1), np.unique(idx2)
    how = _strategy(strategy, len(rows1), len(rows2), subsets, m, d)
    block = check_positive_int(block, "KID block")
    mean_a, mean_b = a.mean(axis=0, dtype=np.float64), b.mean(axis=0, dtype=np.float64)
    kern_aa = _Kernel(mean_a, mean_a, gamma, coef0, degree, dt)
    kern_bb = _Kernel(mean_b, mean_b, gamma, coef0, degree, dt)
    kern_ab = _Kernel(mean_a, mean_b, gamma, coef0, degree, dt)
    if how == "once":
        x = (a if len(rows1) == len(a) else a[rows1]).astype(dt, copy=False)
        y = (b if len(rows2) == len(b) else b[rows2]).astype(dt, copy=False)
        cx, cy = _membership(idx1, rows1, dt), _membership(idx2, rows2, dt)
        sum_xx = _once_within(x, cx, kern_aa, block)
        sum_yy = _once_within(y, cy, kern_bb, block)
        sum_xy = _once_between(x, cx, y, cy, kern_ab, block)
    else:
        sum_xx, sum_yy, sum_xy = (np.empty(subsets, dtype=np.float64) for _ in range(3))
        pairs, cells = m * (m - 1), m * m
        for s in range(subsets):
            x, y = a[idx1[s]].astype(dt, copy=False), b[idx2[s]].astype(dt, copy=False)
            k_xx, k_yy = kern_aa(x @ x.T), kern_bb(y @ y.T)
            sum_xx[s] = k_xx.sum(dtype=np.float64) - np.trace(k_xx, dtype=np.float64) + kern_aa.center * pairs
            sum_yy[s] = k_yy.sum(dtype=np.float64) - np.trace(k_yy, dtype=np.float64) + kern_bb.center * pairs
            sum_xy[s] = kern_ab(x @ y.T).sum(dtype=np.float64) + kern_ab.center * cells
    return (sum_xx + sum_yy) / (m * (m - 1)) - 2.0 * sum_xy / (m * m)


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
    strategy: str = "auto",
    order: str = "canonical",
) -> KIDResult:
    """KID between two (N, D) feature sets: mean and std of MMD^2_u over random subsets.

    ``order="canonical"`` (default) sorts each set by content (:mod:`.order`) before the subsets
    are drawn, so any ordering of the same sets gives bitwise the same KID; ``"given"`` draws from
    the order given, as torch-fidelity does (equal to its ``kid`` on the same features and seed).

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
    if check_order(order, ORDERS, "KID subset order") == "canonical":
        a, b = a[canonical_order(a)], b[canonical_order(b)]
    idx1, idx2 = kid_subset_indices(n1, n2, subsets, subset_size, seed)
    values = mmd2_subsets(a, b, idx1, idx2, degree=degree, gamma=gamma, coef0=coef0, strategy=strategy)
    return KIDResult(float(values.mean()), float(values.std()), subsets, subset_size)
