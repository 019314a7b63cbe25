"""k-NN manifold metrics: precision/recall (Kynkaanniemi et al. 2019) and density/coverage
(Naeem et al. 2020).

Each point's manifold ball has radius = distance to its k-th nearest neighbour in its own set
(the point itself excluded: the (k+1)-th smallest entry of its distance row, self included).
With R the reference (real) set and S the samples:

* precision = fraction of samples inside some reference ball;
* recall    = fraction of reference points inside some sample ball;
* density   = (1 / (k M)) sum_j #{i : s_j inside ball(r_i)}   (M samples);
* coverage  = fraction of reference points whose nearest sample lies inside their own ball.

"Inside" is a comparison of the distance with the radius. guided-diffusion's ManifoldEstimator
(and torch-fidelity) use ``<=`` for precision/recall - our default; the ``prdc`` package
(Naeem et al.) uses ``<`` for all four - our default for density/coverage. Both are options
(``pr_comparison`` / ``dc_comparison``); they differ only on exact ties, e.g. duplicated points.

Distances are squared Euclidean, ``|u|^2 + |v|^2 - 2 u.v`` clamped at 0 (self-distances set to
exactly 0), computed in ``row_batch_size x col_batch_size`` blocks so 50k x 10k never holds a
full matrix; the k-NN radii keep a running (k+1)-smallest per row. Default precision float32,
like prdc's output and torch-fidelity's ``cdist``; ``dtype="float64"`` is available.
guided-diffusion first computes distances in float16 (float32 fallback on overflow), so
a sample lying within float16 rounding of a radius may be classified differently there.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from generative_bench.errors import InputError

from ._checks import as_features, check_positive_int, check_same_dim

_COMPARISONS = {"<=": np.less_equal, "<": np.less}
DEFAULT_BATCH = 5000


def _comparison(op: str, name: str):
    if op not in _COMPARISONS:
        raise InputError(f"{name} must be one of {sorted(_COMPARISONS)}, got {op!r}")
    return _COMPARISONS[op]


def _dtype(dtype: Any) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise InputError(f"distance dtype must be float32 or float64, got {dt}")
    return dt


def sq_distances(u: np.ndarray, v: np.ndarray, u_sq: np.ndarray | None = None, v_sq: np.ndarray | None = None):
    """Squared Euclidean distances ``(len(u), len(v))`` in the dtype of ``u``, clamped at 0."""
    if u_sq is None:
        u_sq = np.einsum("ij,ij->i", u, u)
    if v_sq is None:
        v_sq = np.einsum("ij,ij->i", v, v)
    d = u @ v.T
    d *= -2
    d += u_sq[:, None]
    d += v_sq[None, :]
    np.maximum(d, 0, out=d)
    return d


def knn_sq_radii(features: np.ndarray, ks: tuple[int, ...], batch: int = DEFAULT_BATCH) -> dict[int, np.ndarray]:
    """Squared distance of each row to its k-th nearest other row, for every k in ``ks``.

    Row blocks of ``batch`` rows against column blocks of ``batch`` rows; a running
    (max(ks)+1)-smallest per row is kept with ``np.partition``.
    """
    n = features.shape[0]
    kmax = max(ks)
    sq = np.einsum("ij,ij->i", features, features)
    out = {k: np.empty(n, dtype=features.dtype) for k in ks}
    for r0 in range(0, n, batch):
        rows = features[r0 : r0 + batch]
        best = None
        for c0 in range(0, n, batch):
            d = sq_distances(rows, features[c0 : c0 + batch], sq[r0 : r0 + batch], sq[c0 : c0 + batch])
            lo, hi = max(r0, c0), min(r0 + len(rows), c0 + d.shape[1])
            if lo < hi:  # this block holds part of the diagonal: self-distance is exactly 0
                idx = np.arange(lo, hi)
                d[idx - r0, idx - c0] = 0
            cand = d if best is None else np.concatenate([best, d], axis=1)
            keep = min(kmax + 1, cand.shape[1])
            best = np.partition(cand, keep - 1, axis=1)[:, :keep] if cand.shape[1] > keep else cand
        best = np.sort(best, axis=1)
        for k in ks:
            out[k][r0 : r0 + len(rows)] = best[:, k]
    return out


def prdc(
    reference: Any,
    samples: Any,
    pr_k: int | None = 3,
    dc_k: int | None = 5,
    pr_comparison: str = "<=",
    dc_comparison: str = "<",
    dtype: Any = np.float32,
    row_batch_size: int = DEFAULT_BATCH,
    col_batch_size: int = DEFAULT_BATCH,
) -> dict[str, float]:
    """Precision/recall (k = ``pr_k``) and density/coverage (k = ``dc_k``) in one blocked pass.

    Set ``pr_k=None`` or ``dc_k=None`` to skip a pair. To reproduce ``prdc.compute_prdc(real,
    fake, nearest_k=k)`` exactly use ``pr_k=dc_k=k, pr_comparison="<"``.
    """
    if pr_k is None and dc_k is None:
        raise InputError("prdc: nothing to compute, both pr_k and dc_k are None")
    pr_k = None if pr_k is None else check_positive_int(pr_k, "pr_k")
    dc_k = None if dc_k is None else check_positive_int(dc_k, "dc_k")
    pr_cmp = _comparison(pr_comparison, "pr_comparison")
    dc_cmp = _comparison(dc_comparison, "dc_comparison")
    dt = _dtype(dtype)
    rb = check_positive_int(row_batch_size, "row_batch_size")
    cb = check_positive_int(col_batch_size, "col_batch_size")
    ref_ks = tuple(k for k in (pr_k, dc_k) if k is not None)
    what = f"k-NN metrics with k={max(ref_ks)} (k+1 points per set)"
    ref = as_features(reference, "reference features", min_samples=max(ref_ks) + 1, what=what)
    samp_min = pr_k + 1 if pr_k is not None else 1
    samp = as_features(samples, "sample features", min_samples=samp_min,
                       what=f"precision/recall with k={pr_k} (k+1 points per set)" if pr_k else "density/coverage")
    check_same_dim(ref, samp, "reference features", "sample features")
    ref = ref.astype(dt, copy=False)
    samp = samp.astype(dt, copy=False)

    ref_r = knn_sq_radii(ref, ref_ks, batch=max(rb, cb))
    samp_r = knn_sq_radii(samp, (pr_k,), batch=max(rb, cb)) if pr_k is not None else {}
    ref_sq = np.einsum("ij,ij->i", ref, ref)
    samp_sq = np.einsum("ij,ij->i", samp, samp)
    n_ref, n_samp = len(ref), len(samp)
    samp_in = np.zeros(n_samp, dtype=bool)  # precision
    ref_in = np.zeros(n_ref, dtype=bool)  # recall
    samp_count = np.zeros(n_samp, dtype=np.int64)  # density
    ref_nn = np.full(n_ref, np.inf, dtype=dt)  # coverage

    for r0 in range(0, n_ref, rb):
        r1 = min(r0 + rb, n_ref)
        for c0 in range(0, n_samp, cb):
            c1 = min(c0 + cb, n_samp)
            d = sq_distances(ref[r0:r1], samp[c0:c1], ref_sq[r0:r1], samp_sq[c0:c1])
            if pr_k is not None:
                samp_in[c0:c1] |= pr_cmp(d, ref_r[pr_k][r0:r1, None]).any(axis=0)
                ref_in[r0:r1] |= pr_cmp(d, samp_r[pr_k][None, c0:c1]).any(axis=1)
            if dc_k is not None:
                samp_count[c0:c1] += dc_cmp(d, ref_r[dc_k][r0:r1, None]).sum(axis=0)
                np.minimum(ref_nn[r0:r1], d.min(axis=1), out=ref_nn[r0:r1])

    out: dict[str, float] = {}
    if pr_k is not None:
        out["precision"] = float(samp_in.mean())
        out["recall"] = float(ref_in.mean())
    if dc_k is not None:
        out["density"] = float(samp_count.mean() / dc_k)
        out["coverage"] = float(dc_cmp(ref_nn, ref_r[dc_k]).mean())
    return out


def precision_recall(reference: Any, samples: Any, k: int = 3, comparison: str = "<=", **kwargs) -> dict[str, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019), guided-diffusion convention."""
    return prdc(reference, samples, pr_k=k, dc_k=None, pr_comparison=comparison, **kwargs)


def density_coverage(reference: Any, samples: Any, k: int = 5, comparison: str = "<", **kwargs) -> dict[str, float]:
    """Density and coverage (Naeem et al. 2020), ``prdc`` package convention."""
    return prdc(reference, samples, pr_k=None, dc_k=k, dc_comparison=comparison, **kwargs)
