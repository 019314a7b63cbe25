"""KID and precision/recall/density/coverage on bootstrap resamples of the samples, features reused.

A bootstrap replicate draws the N samples with replacement (Efron 1979); the reference set is
fixed. Two metrics need care with the repeated points of a resample:

* KID (Binkowski et al. 2018, eq. 4: the unbiased MMD^2 U-statistic). A resample repeats points,
  and a pair of copies of one sample would enter the "i != j" sum as k(x, x), which is larger than
  k(x, x') for the cubic kernel, biasing every replicate upward. Each replicate therefore uses the
  U-statistic over pairs of *distinct original samples*: with the subset's distinct samples u and
  their multiplicities w, ``sum_{u != v} w_u w_v k(x_u, x_v) / (m^2 - sum_u w_u^2)``. With w = 1
  (no repeats) this is exactly the KID estimator, subsets drawn as in :mod:`.kid` (same seed).
* k-NN metrics (Kynkaanniemi et al. 2019; Naeem et al. 2020). A repeated sample is its own
  nearest neighbour at distance 0, which would shrink the sample balls; the radii are those of the
  full sample set, and a replicate weighs each sample by its multiplicity: precision and density
  are weighted means of per-sample values, recall and coverage ask whether some *drawn* sample
  covers a reference point (sparse reference x sample incidence matrices, computed once). With
  every sample drawn once this is exactly :func:`.prdc.prdc` (the same exact radii and the same
  exact ball memberships, :class:`.prdc.CrossPass`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from generative_bench.errors import InputError

from ._checks import as_features, check_same_dim
from .kid import ORDERS as KID_ORDERS
from .kid import kid_subset_indices
from .order import canonical_order, check_order
from .knn import cached_knn_sq_radii, exact_knn_sq_radii, triangle_batch
from .prdc import CrossPass, _comparison, _dtype

#: largest sample count whose full sample x sample kernel matrix is kept (float64: 8 N^2 bytes)
FULL_KERNEL_MAX = 6000
#: largest number of stored reference x sample incidences (recall / coverage)
MAX_INCIDENCES = 200_000_000


def _poly(x: np.ndarray, y: np.ndarray, gamma: float, coef0: float, degree: int) -> np.ndarray:
    return (x @ y.T * gamma + coef0) ** degree


def kid_replicates(samples: Any, reference: Any, indices: list[np.ndarray], subsets: int, subset_size: int,
                   seed: int, degree: int = 3, gamma: float | None = None, coef0: float = 1.0,
                   order: str = "canonical") -> list[float]:
    """KID (mean MMD^2_u over subsets) of each resample ``samples[idx]`` against ``reference``.

    The subsets are positions drawn as in :func:`.kid.kid_subset_indices` (same seed), mapped
    through each replicate's indices - the replicate put in canonical order first with
    ``order="canonical"``, as :func:`.kid.kernel_inception_distance` does; pairs of copies of one
    sample are left out (module doc)."""
    check_order(order, KID_ORDERS, "KID subset order")
    a = as_features(samples, "sample features", min_samples=2, what="KID").astype(np.float64)
    b = as_features(reference, "reference features", min_samples=2, what="KID").astype(np.float64)
    rank = None
    if order == "canonical":
        b = b[canonical_order(b)]
        rank = np.empty(len(a), np.int64)
        rank[canonical_order(a)] = np.arange(len(a))
    check_same_dim(a, b, "sample features", "reference features")
    n1, n2 = len(a), len(b)
    m = int(subset_size)
    if min(n1, n2) < m:
        raise InputError(f"KID needs at least subset_size={m} samples in each set, got {n1} and {n2}; lower "
                         "eval.kid_subset_size")
    g = 1.0 / a.shape[1] if gamma is None else float(gamma)
    pos1, idx2 = kid_subset_indices(n1, n2, subsets, m, seed)
    # reference-only terms and the sample x reference-subset row sums do not depend on the resample
    sum_yy = np.empty(subsets)
    cross = np.empty((n1, subsets))  # cross[i, s] = sum_{j in subset s} k(a_i, b_j)
    for s in range(subsets):
        y = b[idx2[s]]
        k = _poly(y, y, g, coef0, degree)
        sum_yy[s] = k.sum() - np.trace(k)
        cross[:, s] = _poly(a, y, g, coef0, degree).sum(axis=1)
    k_aa = _poly(a, a, g, coef0, degree) if n1 <= FULL_KERNEL_MAX else None
    out = []
    for idx in indices:
        idx = np.asarray(idx)
        if rank is not None:  # the replicate's samples in canonical order (copies adjacent)
            idx = idx[np.argsort(rank[idx], kind="stable")]
        orig = idx[pos1]
        vals = np.empty(subsets)
        for s in range(subsets):
            u, w = np.unique(orig[s], return_counts=True)
            w = w.astype(np.float64)
            k = k_aa[np.ix_(u, u)] if k_aa is not None else _poly(a[u], a[u], g, coef0, degree)
            pairs = m * m - float(w @ w)
            sum_xx = float(w @ k @ w - (w * w) @ np.diag(k))
            vals[s] = sum_xx / pairs + sum_yy[s] / (m * (m - 1)) - 2.0 * float(w @ cross[u, s]) / (m * m)
        out.append(float(vals.mean()))
    return out


def _incidence(rows: list[np.ndarray], cols: list[np.ndarray], shape: tuple[int, int]):
    from scipy import sparse

    r = np.concatenate(rows) if rows else np.empty(0, np.int64)
    c = np.concatenate(cols) if cols else np.empty(0, np.int64)
    return sparse.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=shape)


def prdc_replicates(reference: Any, samples: Any, indices: list[np.ndarray], pr_k: int = 3, dc_k: int = 5,
                    pr_comparison: str = "<=", dc_comparison: str = "<", dtype: Any = np.float32,
                    batch: int = 5000) -> list[dict[str, float]]:
    """Precision, recall, density and coverage of each resample (full-set radii; module doc)."""
    _comparison(pr_comparison, "pr_comparison"), _comparison(dc_comparison, "dc_comparison")
    ref = as_features(reference, "reference features", min_samples=max(pr_k, dc_k) + 1, what="k-NN metrics")
    samp = as_features(samples, "sample features", min_samples=pr_k + 1, what="precision/recall")
    check_same_dim(ref, samp, "reference features", "sample features")
    dt = _dtype(dtype)
    tri = triangle_batch(batch)
    ref_r = cached_knn_sq_radii(ref, tuple(sorted({pr_k, dc_k})), batch=tri, working=dt)  # prdc()'s cache entry
    samp_r = exact_knn_sq_radii(samp, (pr_k,), dt, tri)
    pr_ref, pr_samp, dc_ref = ("ref", pr_k, pr_comparison), ("samp", pr_k, pr_comparison), ("ref", dc_k, dc_comparison)
    wanted = list(dict.fromkeys([pr_ref, pr_samp, dc_ref]))
    n_ref, n = len(ref), len(samp)
    samp_in = np.zeros(n, bool)
    samp_count = np.zeros(n, np.int64)
    rec_r, rec_c, cov_r, cov_c = [], [], [], []
    stored = 0
    for r0, c0, member in CrossPass(ref, samp, ref_r, samp_r, wanted, dt, batch, batch).blocks():
        samp_in[c0:c0 + batch] |= member[pr_ref].any(axis=0)
        samp_count[c0:c0 + batch] += np.count_nonzero(member[dc_ref], axis=0)
        for cond, rows, cols in ((member[pr_samp], rec_r, rec_c), (member[dc_ref], cov_r, cov_c)):
            i, j = np.nonzero(cond)
            rows.append(i + r0)
            cols.append(j + c0)
            stored += len(i)
        if stored > MAX_INCIDENCES:
            raise InputError(f"bootstrap of recall/coverage needs more than {MAX_INCIDENCES:,} stored "
                             "reference-sample incidences; lower eval.num_samples or eval.reference_subset, or "
                             "leave prdc out of the bootstrap (eval.bootstrap=0)")
    recall_m, cover_m = _incidence(rec_r, rec_c, (n_ref, n)), _incidence(cov_r, cov_c, (n_ref, n))
    out = []
    for idx in indices:
        w = np.bincount(np.asarray(idx), minlength=n).astype(np.float64)
        drawn = (w > 0).astype(np.float32)
        out.append({"precision": float(w @ samp_in / n), "recall": float(((recall_m @ drawn) > 0).mean()),
                    "density": float(w @ samp_count / (dc_k * n)), "coverage": float(((cover_m @ drawn) > 0).mean())})
    return out


__all__ = ["kid_replicates", "prdc_replicates"]
