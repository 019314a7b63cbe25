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

Distances are squared Euclidean, ``(|u|^2 + |v|^2) - 2 u.v`` clamped at 0 (the same value
whichever point comes first; self-distances set to exactly 0), computed in
``row_batch_size x col_batch_size`` blocks so 50k x 10k never holds a full matrix. The k-NN
radii of a set evaluate only the upper block triangle of its symmetric distance matrix (each
block serves its rows and, transposed, its columns; the diagonal blocks are symmetric products)
and keep a running (k+1)-smallest per row. The blocked passes skip two element-wise passes
without changing a bit: the factor -2 goes into the matrix product's left operand (a power of
two scales every partial sum exactly), and the clamp at 0 is applied to the few values that need
it rather than to every block - to the kept smallest distances (order statistics commute with a
non-decreasing map) and to the nearest-sample distances, while the comparisons with a radius r
(itself clamped, so r >= 0) read ``max(d, 0) <= r`` as ``d <= r`` and ``max(d, 0) < r`` as
``d < r`` where r > 0 (never true where r = 0). The reference radii are cached in-process by the
content (SHA-1) of the reference features, so the evaluations of a sweep against one reference
set compute them once (:func:`clear_cache` empties the cache). Default precision float32, like
prdc's output and torch-fidelity's ``cdist``; ``dtype="float64"`` is available.
guided-diffusion first computes distances in float16 (float32 fallback on overflow), so
a sample lying within float16 rounding of a radius may be classified differently there.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from generative_bench.errors import InputError

from . import _chunks
from ._checks import as_features, check_positive_int, check_same_dim

_COMPARISONS = {"<=": np.less_equal, "<": np.less}
DEFAULT_BATCH = 5000
# block size of the k-NN radii's triangle: smaller diagonal blocks run the symmetric product
# nearer the general product's rate (10k x 2048 float32, one core: 2.46 s at 2500 against 2.70 s
# at 5000, knn_sq_smallest timed alone); never above the caller's block size (memory)
TRIANGLE_BATCH = 2500
RADII_CACHE_ENTRIES = 8


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
    """Squared Euclidean distances ``(len(u), len(v))`` in the dtype of ``u``, clamped at 0.

    ``d_ij = (|u_i|^2 + |v_j|^2) - 2 u_i.v_j``: the two norms are added first, so the value does
    not depend on which of the two points is the row."""
    d = raw_sq_distances(u, v, u_sq, v_sq)
    for _, chunk in _chunks.row_chunks(d):
        np.maximum(chunk, 0, out=chunk)
    return d


def raw_sq_distances(u: np.ndarray, v: np.ndarray, u_sq: np.ndarray | None = None, v_sq: np.ndarray | None = None,
                     u_times_minus_2: np.ndarray | None = None) -> np.ndarray:
    """:func:`sq_distances` before the clamp at 0 (rounding can leave near-duplicates slightly negative).

    ``u`` and ``v`` the same array: the symmetric product (BLAS syrk, half the flops), then -2;
    otherwise ``(-2 u) @ v.T`` (``u_times_minus_2`` when the caller has it for several blocks), the
    same bits as ``-2 (u @ v.T)``: scaling by a power of two is exact at every partial sum."""
    if u_sq is None:
        u_sq = np.einsum("ij,ij->i", u, u)
    if v_sq is None:
        v_sq = np.einsum("ij,ij->i", v, v)
    symmetric = u is v
    if symmetric:
        d = u @ u.T  # a symmetric product, BLAS syrk
    else:
        d = (u * u.dtype.type(-2) if u_times_minus_2 is None else u_times_minus_2) @ v.T
    # the element-wise passes run on cache-sized row chunks, one small buffer for the norms' sums
    buf = np.empty((min(_chunks.rows_per_chunk(d.shape[1]), len(d)), d.shape[1]), dtype=d.dtype)
    for r0, chunk in _chunks.row_chunks(d):
        norms = buf[:len(chunk)]
        np.add.outer(u_sq[r0:r0 + len(chunk)], v_sq, out=norms)
        if symmetric:
            chunk *= -2
        chunk += norms
    return d


def _raw_radii(radii: np.ndarray, cmp) -> np.ndarray:
    """Radii (>= 0) to compare with unclamped distances d: ``cmp(max(d, 0), r) == cmp(d, result)``."""
    if cmp is np.less:
        return np.where(radii > 0, radii, -np.inf).astype(radii.dtype)
    return radii


def _merge_smallest(best: np.ndarray, block: np.ndarray, keep: int) -> np.ndarray:
    """The ``keep`` smallest of each row of [best, block] (unsorted); ``block`` is overwritten."""
    if block.shape[1] > keep:
        block.partition(keep - 1, axis=1)
        block = block[:, :keep]
    cand = np.concatenate([best, block], axis=1)
    cand.partition(keep - 1, axis=1)
    return cand[:, :keep]


def triangle_batch(batch: int) -> int:
    """The radii's block size for callers whose distance blocks are ``batch`` wide."""
    return min(int(batch), TRIANGLE_BATCH)


def knn_sq_smallest(features: np.ndarray, keep: int, batch: int = TRIANGLE_BATCH) -> np.ndarray:
    """(N, keep) sorted smallest squared distances of each row to all rows (itself included, 0).

    Only the blocks on and above the block diagonal are computed: block (R, C), C > R, gives
    rows R their distances to C and, transposed, rows C their distances to R.
    """
    n = features.shape[0]
    keep = min(keep, n)
    sq = np.einsum("ij,ij->i", features, features)
    best = np.full((n, keep), np.inf, dtype=features.dtype)
    for r0 in range(0, n, batch):
        r1 = min(r0 + batch, n)
        rows = features[r0:r1]
        rows_m2 = rows * rows.dtype.type(-2) if r1 < n else None
        for c0 in range(r0, n, batch):
            c1 = min(c0 + batch, n)
            if c0 == r0:
                d = raw_sq_distances(rows, rows, sq[r0:r1], sq[r0:r1])
                np.fill_diagonal(d, 0)  # self-distance is exactly 0
            else:
                d = raw_sq_distances(rows, features[c0:c1], sq[r0:r1], sq[c0:c1], rows_m2)
                best[c0:c1] = _merge_smallest(best[c0:c1], _chunks.transposed(d), keep)
            best[r0:r1] = _merge_smallest(best[r0:r1], d, keep)
    np.maximum(best, 0, out=best)  # the clamp of sq_distances, on the kept values only
    best.sort(axis=1)
    return best


def knn_sq_radii(features: np.ndarray, ks: tuple[int, ...], batch: int = TRIANGLE_BATCH) -> dict[int, np.ndarray]:
    """Squared distance of each row to its k-th nearest other row, for every k in ``ks``."""
    best = knn_sq_smallest(features, max(ks) + 1, batch=batch)
    return {k: best[:, k].copy() for k in ks}


# ------------------------------------------------------------------------ reference radii cache
_lock = threading.Lock()
_radii: OrderedDict[tuple, np.ndarray] = OrderedDict()


def clear_cache() -> None:
    """Forget the cached reference k-NN radii."""
    with _lock:
        _radii.clear()


def cache_info() -> dict[str, int]:
    with _lock:
        return {"entries": len(_radii), "bytes": sum(v.nbytes for v in _radii.values())}


def cached_knn_sq_radii(features: np.ndarray, ks: tuple[int, ...], batch: int = TRIANGLE_BATCH) -> dict[int, np.ndarray]:
    """:func:`knn_sq_radii`, cached by the content of ``features`` (and dtype, shape, block size).

    One entry keeps the sorted (max k + 1) smallest distances of every row, so any smaller k of
    the same features is served from it too."""
    feats = np.ascontiguousarray(features)
    key = (feats.dtype.str, feats.shape, int(batch), hashlib.sha1(feats.view(np.uint8).reshape(-1)).hexdigest())
    keep = max(ks) + 1
    with _lock:
        best = _radii.get(key)
        if best is not None:
            _radii.move_to_end(key)
    if best is None or best.shape[1] < min(keep, len(feats)):
        best = knn_sq_smallest(feats, keep, batch=batch)
        best.setflags(write=False)
        with _lock:
            _radii[key] = best
            while len(_radii) > RADII_CACHE_ENTRIES:
                _radii.popitem(last=False)
    return {k: best[:, k] for k in ks}


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
    cache_reference: bool = True,
) -> dict[str, float]:
    """Precision/recall (k = ``pr_k``) and density/coverage (k = ``dc_k``) in one blocked pass.

    Set ``pr_k=None`` or ``dc_k=None`` to skip a pair. The reference radii are cached across
    calls (see the module doc) unless ``cache_reference=False``. To reproduce ``prdc.compute_prdc(real,
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

    tri = triangle_batch(max(rb, cb))
    ref_r = cached_knn_sq_radii(ref, ref_ks, batch=tri) if cache_reference else knn_sq_radii(ref, ref_ks, batch=tri)
    samp_r = knn_sq_radii(samp, (pr_k,), batch=tri) if pr_k is not None else {}
    ref_sq = np.einsum("ij,ij->i", ref, ref)
    samp_sq = np.einsum("ij,ij->i", samp, samp)
    n_ref, n_samp = len(ref), len(samp)
    samp_in = np.zeros(n_samp, dtype=bool)  # precision
    ref_in = np.zeros(n_ref, dtype=bool)  # recall
    samp_count = np.zeros(n_samp, dtype=np.int64)  # density
    ref_nn = np.full(n_ref, np.inf, dtype=dt)  # coverage
    # unclamped distances against adjusted radii (module doc): the same decisions, one pass less
    ref_pr = _raw_radii(ref_r[pr_k], pr_cmp) if pr_k is not None else None
    samp_pr = _raw_radii(samp_r[pr_k], pr_cmp) if pr_k is not None else None
    ref_dc = _raw_radii(ref_r[dc_k], dc_cmp) if dc_k is not None else None

    for r0 in range(0, n_ref, rb):
        r1 = min(r0 + rb, n_ref)
        rows_m2 = ref[r0:r1] * dt.type(-2)
        for c0 in range(0, n_samp, cb):
            c1 = min(c0 + cb, n_samp)
            d = raw_sq_distances(ref[r0:r1], samp[c0:c1], ref_sq[r0:r1], samp_sq[c0:c1], rows_m2)
            in_ref_pr = None
            if pr_k is not None:
                in_ref_pr = pr_cmp(d, ref_pr[r0:r1, None])
                samp_in[c0:c1] |= in_ref_pr.any(axis=0)
                ref_in[r0:r1] |= pr_cmp(d, samp_pr[None, c0:c1]).any(axis=1)
            if dc_k is not None:
                # the same balls and comparison as precision (prdc's convention): reuse its matrix
                same = in_ref_pr is not None and dc_k == pr_k and dc_cmp is pr_cmp
                in_ref_dc = in_ref_pr if same else dc_cmp(d, ref_dc[r0:r1, None])
                samp_count[c0:c1] += np.count_nonzero(in_ref_dc, axis=0)
                np.minimum(ref_nn[r0:r1], d.min(axis=1), out=ref_nn[r0:r1])
    np.maximum(ref_nn, 0, out=ref_nn)  # the nearest sample's distance, clamped like sq_distances

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
