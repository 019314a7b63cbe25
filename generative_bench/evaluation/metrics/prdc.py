"""k-NN manifold metrics: precision/recall (Kynkaanniemi et al. 2019) and density/coverage
(Naeem et al. 2020).

Each point's manifold ball has radius = distance to its k-th nearest neighbour in its own set
(the point itself excluded; an exact duplicate is another point at distance 0). With R the
reference (real) set and S the samples:

* precision = fraction of samples inside some reference ball;
* recall    = fraction of reference points inside some sample ball;
* density   = (1 / (k M)) sum_j #{i : s_j inside ball(r_i)}   (M samples);
* coverage  = fraction of reference points whose nearest sample lies inside their own ball
  (equivalently: with some sample inside their ball).

"Inside" is a comparison of the distance with the radius. guided-diffusion's ManifoldEstimator
(and torch-fidelity) use ``<=`` for precision/recall - our default; the ``prdc`` package
(Naeem et al.) uses ``<`` for all four - our default for density/coverage. Both are options
(``pr_comparison`` / ``dc_comparison``); they differ only on exact ties, e.g. duplicated points.

**What is promised.** Every decision (each radius, each "inside") is the one a float64 brute
force makes with ``d(u, v) = sum_i (u_i - v_i)^2`` evaluated in float64 on the features as given
(:func:`exact_sq_distances`, the formula of the tests' dense reference), whatever the block sizes,
the thread count or the BLAS build: exact duplicates are at distance exactly 0 and tie exactly.
How it stays fast: the distances are computed in blocks with a BLAS matrix product in the
working precision (float32 by default), ``(|u|^2 + |v|^2) - 2 u.v``, whose rounding error is
bounded a priori by ``c_D (|u| + |v|)^2`` with ``c_D = (D + 12) u_w + (D + 4) 2^-53`` (u_w the unit
roundoff of the working precision; the standard bound for dot products of length D in any
summation order, plus the rounding of the inputs to the working precision and of the canonical
float64 sum). A decision whose fast distance lies farther than that bound from the radius cannot
differ from the float64 one; the few pairs within it (the radii sit in the sparse tail of each
row's distances, so a handful per row at most) are recomputed in float64. The k-NN radii work the
same way: each row keeps its nearest candidates with their indices in one pass over the upper
block triangle of its set's distance matrix, and every candidate that can be the k-th neighbour
is re-measured in float64. Exact duplicates are merged first and carried as multiplicities, so a
collapsed sample set (a GAN at truncation near 0, a memorising model) costs less, not more.
Not promised: the same bits as a float64 computation by another formula (sklearn's, the prdc
package's) on pairs whose exact distances differ by a few float64 ulps, nor anything for
features that are not finite (refused).

The reference radii are cached in-process by the content (SHA-1) of the reference features, so
the evaluations of a sweep against one reference set compute them once (:func:`clear_cache`
empties the cache). guided-diffusion first computes distances in float16 (float32 fallback on
overflow), so a sample lying within float16 rounding of a radius may be classified differently
there.
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
#: nearest candidates kept per row beyond the k+1 a radius needs: room for the near-ties that
#: must be re-measured in float64 (a row whose candidates overflow them gets a pass of its own)
EXTRA_CANDIDATES = 8
#: float64 values per chunk of the exact re-measurement (4 MiB of differences: cache-sized)
EXACT_CHUNK_VALUES = 1 << 19
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


# ------------------------------------------------------------------------------ distances
def sq_distances(u: np.ndarray, v: np.ndarray, u_sq: np.ndarray | None = None, v_sq: np.ndarray | None = None):
    """Squared Euclidean distances ``(len(u), len(v))`` in the dtype of ``u``, clamped at 0.

    ``d_ij = (|u_i|^2 + |v_j|^2) - 2 u_i.v_j``: the two norms are added first, so the value does
    not depend on which of the two points is the row. Fast, not exact (see the module doc)."""
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


def exact_sq_distances(u: np.ndarray, v: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``sum_i (u[rows] - v[cols])_i^2`` in float64, pair by pair: the canonical distance.

    Each pair's differences are summed along one contiguous row of the same length, so the value
    depends only on the two points (not on where they sit), is symmetric and is exactly 0 for
    duplicates."""
    out = np.empty(len(rows), dtype=np.float64)
    dim = u.shape[1]
    step = max(1, min(len(rows), EXACT_CHUNK_VALUES // max(1, dim)))
    bu, bv = np.empty((step, dim), u.dtype), np.empty((step, dim), v.dtype)
    diff = np.empty((step, dim), np.float64)
    for s in range(0, len(rows), step):
        m = len(rows[s:s + step])
        np.take(u, rows[s:s + step], axis=0, out=bu[:m])
        np.take(v, cols[s:s + step], axis=0, out=bv[:m])
        np.subtract(bu[:m], bv[:m], out=diff[:m], dtype=np.float64)
        np.multiply(diff[:m], diff[:m], out=diff[:m])
        out[s:s + m] = diff[:m].sum(axis=1)
    return out


def rounding_coefficient(dim: int, working: np.dtype) -> float:
    """``c_D`` of the module doc: ``|fast distance - exact_sq_distances| <= c_D (|u| + |v|)^2``."""
    unit = np.finfo(working).eps / 2
    return 1.01 * ((dim + 12) * float(unit) + (dim + 4) * 2.0 ** -53)


class _Margins:
    """Per-point rounding margins of the fast distances between two sets: for a pair (i, j) the
    bound ``c_D (|u_i| + |v_j|)^2`` is at most ``c_D (|u_i| + max|v|)^2`` (row-wise) and
    ``c_D (max|u| + |v_j|)^2`` (column-wise), plus an absolute floor for underflow."""

    def __init__(self, u: np.ndarray, v: np.ndarray, working: np.dtype):
        coef = rounding_coefficient(u.shape[1], working)
        nu = np.sqrt(np.einsum("ij,ij->i", u, u, dtype=np.float64))
        nv = nu if v is u else np.sqrt(np.einsum("ij,ij->i", v, v, dtype=np.float64))
        floor = 4.0 * u.shape[1] * float(np.finfo(working).tiny)
        self.rows = coef * (nu + nv.max()) ** 2 * (1 + 1e-12) + floor
        self.cols = coef * (nu.max() + nv) ** 2 * (1 + 1e-12) + floor


def _rounded(x: np.ndarray, dt: np.dtype, toward: float) -> np.ndarray:
    """``x`` (float64) in ``dt``, rounded toward ``toward`` (-inf or +inf) where it is not exact."""
    y = x.astype(dt)
    off = (y > x) if toward < 0 else (y < x)
    if off.any():
        y[off] = np.nextafter(y[off], dt.type(toward))
    return y


class _Balls:
    """Exact radii and the fast-precision window around each: a fast distance below ``lo`` is
    certainly inside (both rules), above ``hi`` certainly outside; between, float64 decides."""

    def __init__(self, radii: np.ndarray, margins: np.ndarray, working: np.dtype):
        self.radii = radii
        self.lo = _rounded(radii - margins, working, -np.inf)
        self.hi = _rounded(radii + margins, working, np.inf)


def _inside(d: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """Certainly-inside mask of a fast block and the (row, col) pairs to decide in float64."""
    sure = d < lo
    maybe = d <= hi
    if np.count_nonzero(maybe) == np.count_nonzero(sure):
        return sure, None
    return sure, np.divmod(np.flatnonzero(maybe ^ sure), d.shape[1])  # flat: far faster than 2-D nonzero


# ------------------------------------------------------------------------------ exact radii
def _distinct_rows(x: np.ndarray):
    """Distinct rows of ``x`` (first occurrence order), their multiplicities and each row's index
    among them; exact duplicates are bytewise equal rows. Rows are grouped by a 64-bit hash of
    their bytes and only rows of one hash group compared byte by byte."""
    x = np.ascontiguousarray(x)
    words = x.view(np.uint8).reshape(len(x), -1)
    pad = (-words.shape[1]) % 4
    if pad:
        words = np.concatenate([words, np.zeros((len(x), pad), np.uint8)], axis=1)
    words = np.ascontiguousarray(words).view(np.uint32)
    weights = np.random.default_rng(0x5EED).integers(1, 2 ** 32, size=words.shape[1], dtype=np.uint64) | np.uint64(1)
    h = np.zeros(len(x), np.uint64)
    step = max(1, EXACT_CHUNK_VALUES // max(1, words.shape[1]))
    for s in range(0, len(x), step):  # sum of word * odd weight mod 2^64, chunk by chunk
        h[s:s + step] = (words[s:s + step].astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)
    _, group, sizes = np.unique(h, return_inverse=True, return_counts=True)
    group = group.ravel()
    inverse = np.arange(len(x))
    row_bytes = np.dtype((np.void, x.dtype.itemsize * x.shape[1]))
    for g in np.flatnonzero(sizes > 1):  # rows sharing a hash: equal bytes, or a collision
        members = np.flatnonzero(group == g)
        _, first, inv = np.unique(x[members].view(row_bytes).ravel(), return_index=True, return_inverse=True)
        inverse[members] = members[first][inv.ravel()]
    if (inverse == np.arange(len(x))).all():
        return x, np.ones(len(x), np.int64), inverse
    firsts, rank = np.unique(inverse, return_inverse=True)  # first occurrences, increasing
    return x[firsts], np.bincount(rank.ravel()).astype(np.int64), rank.ravel()


def _merge_nearest(best_d, best_i, block, col0, keep):
    """The ``keep`` smallest of each row of [best, block] with their column indices (unsorted).

    Only the block's entries below a row's current largest kept value (or, in a row's first block,
    up to its keep-th smallest) can enter: they are picked out with one comparison instead of an
    argpartition of the whole block."""
    n_rows, n_cols = block.shape
    thr = best_d.max(axis=1)
    if n_cols > keep:
        if np.isfinite(thr).all():
            flat = np.flatnonzero(block < thr[:, None])
        else:  # a row's first block: its keep-th smallest value, then the entries up to it (ties too)
            thr = np.partition(block, keep - 1, axis=1)[:, keep - 1]  # a copy: 3x faster than argpartition
            flat = np.flatnonzero(block <= thr[:, None])
        if len(flat) <= 4 * keep * n_rows:
            if not len(flat):
                return best_d, best_i
            rows, cols = np.divmod(flat, n_cols)
            counts = np.bincount(rows, minlength=n_rows)
            pos = np.arange(len(flat)) - (np.cumsum(counts) - counts)[rows]
            vals = np.full((n_rows, int(counts.max())), np.inf, dtype=block.dtype)
            idx = np.full(vals.shape, -1, dtype=np.int64)
            vals[rows, pos] = block.ravel()[flat]
            idx[rows, pos] = cols + col0
            return _keep_smallest(best_d, best_i, vals, idx, keep)
    if n_cols > keep:
        part = np.argpartition(block, keep - 1, axis=1)[:, :keep]
        vals = np.take_along_axis(block, part, axis=1)
    else:
        part = np.broadcast_to(np.arange(n_cols), block.shape)
        vals = block
    return _keep_smallest(best_d, best_i, vals, part + col0, keep)


def _keep_smallest(best_d, best_i, vals, idx, keep):
    """The ``keep`` smallest of each row of [best_d, vals], with the matching indices."""
    cand_d = np.concatenate([best_d, vals], axis=1)
    cand_i = np.concatenate([best_i, idx], axis=1)
    sel = np.argpartition(cand_d, keep - 1, axis=1)[:, :keep]
    return np.take_along_axis(cand_d, sel, axis=1), np.take_along_axis(cand_i, sel, axis=1)


def _nearest_candidates(x: np.ndarray, keep: int, batch: int):
    """(N, keep) smallest fast distances of each row to the *other* rows, and their indices.

    Only the blocks on and above the block diagonal are computed: block (R, C), C > R, gives rows
    R their distances to C and, transposed, rows C their distances to R."""
    n = len(x)
    sq = np.einsum("ij,ij->i", x, x)
    best_d = np.full((n, keep), np.inf, dtype=x.dtype)
    best_i = np.full((n, keep), -1, dtype=np.int64)
    for r0 in range(0, n, batch):
        r1 = min(r0 + batch, n)
        rows = x[r0:r1]
        rows_m2 = rows * rows.dtype.type(-2) if r1 < n else None
        for c0 in range(r0, n, batch):
            c1 = min(c0 + batch, n)
            if c0 == r0:
                d = raw_sq_distances(rows, rows, sq[r0:r1], sq[r0:r1])
                np.fill_diagonal(d, np.inf)  # a row is not its own neighbour
            else:
                d = raw_sq_distances(rows, x[c0:c1], sq[r0:r1], sq[c0:c1], rows_m2)
                best_d[c0:c1], best_i[c0:c1] = _merge_nearest(best_d[c0:c1], best_i[c0:c1], _chunks.transposed(d),
                                                              r0, keep)
            best_d[r0:r1], best_i[r0:r1] = _merge_nearest(best_d[r0:r1], best_i[r0:r1], d, c0, keep)
    return best_d, best_i


def _kth_weighted(rows: np.ndarray, dist: np.ndarray, weight: np.ndarray, need: np.ndarray, n_rows: int) -> np.ndarray:
    """Per row, the smallest ``dist`` at which the cumulative ``weight`` of its entries (in
    increasing distance) reaches ``need[row]`` (+inf where it never does)."""
    out = np.full(n_rows, np.inf)
    if not len(rows):
        return out
    order = np.lexsort((dist, rows))
    rows, dist, weight = rows[order], dist[order], weight[order]
    cum = np.cumsum(weight)
    starts = np.searchsorted(rows, np.arange(n_rows))
    before = np.where(starts > 0, cum[np.maximum(starts - 1, 0)], 0)
    reached = cum - before[rows] >= need[rows]
    hit = np.flatnonzero(reached)
    # the first entry of each row that reaches its need: first occurrence of the row among hits
    r_hit, first = np.unique(rows[hit], return_index=True)
    out[r_hit] = dist[hit[first]]
    return out


def _candidates_within(x: np.ndarray, rows: np.ndarray, limit: np.ndarray, batch: int):
    """All (row, col != row) with fast distance <= ``limit[row]``, for the few ``rows`` whose
    kept candidates could not hold them (large near-tie groups)."""
    sq = np.einsum("ij,ij->i", x, x)
    out_r, out_c = [], []
    for r0 in range(0, len(rows), batch):
        rr = rows[r0:r0 + batch]
        for c0 in range(0, len(x), batch):
            c1 = min(c0 + batch, len(x))
            d = raw_sq_distances(x[rr], x[c0:c1], sq[rr], sq[c0:c1])
            i, j = np.divmod(np.flatnonzero(d <= limit[rr][:, None]), c1 - c0)
            keep = rr[i] != j + c0
            out_r.append(rr[i[keep]])
            out_c.append(j[keep] + c0)
    return np.concatenate(out_r), np.concatenate(out_c)


def exact_knn_sq_radii(features: np.ndarray, ks: tuple[int, ...], working: Any = np.float32,
                       batch: int = TRIANGLE_BATCH) -> dict[int, np.ndarray]:
    """Squared distance (float64, :func:`exact_sq_distances`) of each row to its k-th nearest
    other row, for every k in ``ks``: the radii a float64 brute force gives, for any ``batch``."""
    feats = np.ascontiguousarray(features)
    wt = _dtype(working)
    uniq, counts, inverse = _distinct_rows(feats)
    n_u = len(uniq)
    out_u = {k: np.zeros(n_u) for k in ks}
    # with m copies of itself a point has m - 1 neighbours at exactly 0
    needs = {k: np.maximum(k - (counts - 1), 0) for k in ks}
    if n_u > 1 and any((needs[k] > 0).any() for k in ks):
        x = uniq.astype(wt, copy=False)
        keep = min(n_u - 1, max(ks) + EXTRA_CANDIDATES)
        best_d, best_i = _nearest_candidates(x, keep, batch)
        fast = best_d.astype(np.float64)
        two_m = 2 * _Margins(uniq, uniq, wt).rows[:, None]
        w = counts[best_i]
        row_of = np.repeat(np.arange(n_u), keep)
        full = keep == n_u - 1
        windows = {}
        for k in ks:
            # the exact k-th distance lies within a margin of the fast one: kept entries more than
            # two margins below it are counted as they are, those within two margins re-measured
            kth = _kth_weighted(row_of, fast.ravel(), w.ravel(), needs[k], n_u)[:, None]
            open_ = needs[k] > 0
            below = (fast < kth - two_m) & open_[:, None]
            window = (fast <= kth + two_m) & ~below & open_[:, None]
            complete = full | (fast.max(axis=1) > (kth + two_m).ravel()) | ~open_
            below[~complete] = False
            window[~complete] = False
            r, j = np.nonzero(window)
            j = best_i[r, j]
            spill = np.flatnonzero(~complete)
            if len(spill):  # more near-ties than kept entries: all of them, measured
                limit = np.full(n_u, -np.inf)
                limit[spill] = (kth + two_m).ravel()[spill]
                extra_r, extra_c = _candidates_within(x, spill, limit, batch)
                r, j = np.concatenate([r, extra_r]), np.concatenate([j, extra_c])
            windows[k] = (r, j, needs[k] - (w * below).sum(axis=1))
        pair_key = np.concatenate([r * n_u + j for r, j, _ in windows.values()])
        keys, back = np.unique(pair_key, return_inverse=True)
        exact = exact_sq_distances(uniq, uniq, keys // n_u, keys % n_u)[back.ravel()]
        at = 0
        for k, (r, j, need) in windows.items():
            kth = _kth_weighted(r, exact[at:at + len(r)], counts[j], need, n_u)
            at += len(r)
            out_u[k] = np.where(needs[k] > 0, kth, 0.0)
    return {k: out_u[k][inverse] for k in ks}


def knn_sq_radii(features: np.ndarray, ks: tuple[int, ...], batch: int = TRIANGLE_BATCH) -> dict[int, np.ndarray]:
    """Squared distance of each row to its k-th nearest other row, for every k in ``ks`` (exact:
    :func:`exact_knn_sq_radii` with the working precision of ``features``)."""
    feats = np.asarray(features)
    working = feats.dtype if feats.dtype in (np.float32, np.float64) else np.float32
    return exact_knn_sq_radii(feats, tuple(ks), working, batch)


# ------------------------------------------------------------------------ reference radii cache
_lock = threading.Lock()
_radii: OrderedDict[tuple, dict[int, np.ndarray]] = OrderedDict()


def clear_cache() -> None:
    """Forget the cached reference k-NN radii."""
    with _lock:
        _radii.clear()


def cache_info() -> dict[str, int]:
    with _lock:
        return {"entries": len(_radii), "bytes": sum(v.nbytes for e in _radii.values() for v in e.values())}


def cached_knn_sq_radii(features: np.ndarray, ks: tuple[int, ...], batch: int = TRIANGLE_BATCH,
                        working: Any = np.float32) -> dict[int, np.ndarray]:
    """:func:`exact_knn_sq_radii`, cached by the content of ``features`` (dtype, shape, SHA-1).

    The radii are exact, so neither the block size nor the working precision is part of the key;
    an entry gains the k it lacks when asked for them."""
    feats = np.ascontiguousarray(features)
    key = (feats.dtype.str, feats.shape, hashlib.sha1(feats.view(np.uint8).reshape(-1)).hexdigest())
    with _lock:
        entry = _radii.get(key)
        if entry is not None:
            _radii.move_to_end(key)
    missing = tuple(k for k in ks if entry is None or k not in entry)
    if missing:
        new = exact_knn_sq_radii(feats, missing, working, batch)
        for v in new.values():
            v.setflags(write=False)
        with _lock:
            entry = {**_radii.get(key, {}), **new}
            _radii[key] = entry
            _radii.move_to_end(key)
            while len(_radii) > RADII_CACHE_ENTRIES:
                _radii.popitem(last=False)
    return {k: entry[k] for k in ks}


def triangle_batch(batch: int) -> int:
    """The radii's block size for callers whose distance blocks are ``batch`` wide."""
    return min(int(batch), TRIANGLE_BATCH)


# ------------------------------------------------------------------------------ the cross pass
class CrossPass:
    """Exact ball memberships of reference x sample blocks (module doc).

    ``blocks()`` yields ``(r0, c0, memberships)`` where memberships maps each requested
    ``(side, k, rule)`` - side "ref" (reference balls, per row) or "samp" (sample balls, per
    column) - to the exact boolean block. Shared by :func:`prdc` and the bootstrap."""

    def __init__(self, ref, samp, ref_radii: dict[int, np.ndarray], samp_radii: dict[int, np.ndarray],
                 wanted: list[tuple[str, int, str]], working: np.dtype, row_batch: int, col_batch: int):
        self.ref_in, self.samp_in = ref, samp  # as given: the exact distances read these
        self.ref, self.samp = ref.astype(working, copy=False), samp.astype(working, copy=False)
        self.working, self.rb, self.cb, self.wanted = working, row_batch, col_batch, wanted
        margins = _Margins(ref, samp, working)
        self.balls = {}
        for side, k, _ in wanted:
            if (side, k) not in self.balls:
                radii = ref_radii[k] if side == "ref" else samp_radii[k]
                self.balls[side, k] = _Balls(radii, margins.rows if side == "ref" else margins.cols, working)
        self.resolved_pairs = 0

    def blocks(self):
        ref, samp = self.ref, self.samp
        ref_sq, samp_sq = np.einsum("ij,ij->i", ref, ref), np.einsum("ij,ij->i", samp, samp)
        for r0 in range(0, len(ref), self.rb):
            r1 = min(r0 + self.rb, len(ref))
            rows_m2 = ref[r0:r1] * self.working.type(-2)
            for c0 in range(0, len(samp), self.cb):
                c1 = min(c0 + self.cb, len(samp))
                d = raw_sq_distances(ref[r0:r1], samp[c0:c1], ref_sq[r0:r1], samp_sq[c0:c1], rows_m2)
                windows = {}
                for (side, k), balls in self.balls.items():
                    if side == "ref":
                        windows[side, k] = _inside(d, balls.lo[r0:r1, None], balls.hi[r0:r1, None])
                    else:
                        windows[side, k] = _inside(d, balls.lo[None, c0:c1], balls.hi[None, c0:c1])
                pairs = [p for _, p in windows.values() if p is not None]
                exact = {}
                if pairs:  # one float64 distance per undecided pair, whichever balls asked
                    i = np.concatenate([p[0] for p in pairs])
                    j = np.concatenate([p[1] for p in pairs])
                    flat, back = np.unique(i.astype(np.int64) * (c1 - c0) + j, return_inverse=True)
                    ui, uj = np.divmod(flat, c1 - c0)
                    dist = exact_sq_distances(self.ref_in, self.samp_in, ui + r0, uj + c0)
                    exact = (flat, dist)
                    self.resolved_pairs += len(flat)
                out = {}
                for side, k, rule in self.wanted:
                    sure, p = windows[side, k]
                    if p is None:
                        out[side, k, rule] = sure
                        continue
                    flat, dist = exact
                    at = np.searchsorted(flat, p[0].astype(np.int64) * (c1 - c0) + p[1])
                    radius = self.balls[side, k].radii[p[0] + r0] if side == "ref" else self.balls[side, k].radii[p[1] + c0]
                    shared = sum(1 for w in self.wanted if w[:2] == (side, k)) > 1
                    member = sure.copy() if shared else sure  # a window read by one rule is finished in place
                    member[p] = _COMPARISONS[rule](dist[at], radius)
                    out[side, k, rule] = member
                yield r0, c0, out


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

    Set ``pr_k=None`` or ``dc_k=None`` to skip a pair. ``dtype`` is the working precision of the
    fast pass only: the decisions are exact either way (module doc). The reference radii are cached
    across calls unless ``cache_reference=False``. ``prdc.compute_prdc(real, fake, nearest_k=k)``
    corresponds to ``pr_k=dc_k=k, pr_comparison="<"``.
    """
    if pr_k is None and dc_k is None:
        raise InputError("prdc: nothing to compute, both pr_k and dc_k are None")
    pr_k = None if pr_k is None else check_positive_int(pr_k, "pr_k")
    dc_k = None if dc_k is None else check_positive_int(dc_k, "dc_k")
    _comparison(pr_comparison, "pr_comparison")
    _comparison(dc_comparison, "dc_comparison")
    dt = _dtype(dtype)
    rb = check_positive_int(row_batch_size, "row_batch_size")
    cb = check_positive_int(col_batch_size, "col_batch_size")
    ref_ks = tuple(sorted({k for k in (pr_k, dc_k) if k is not None}))
    what = f"k-NN metrics with k={max(ref_ks)} (k+1 points per set)"
    ref = as_features(reference, "reference features", min_samples=max(ref_ks) + 1, what=what)
    samp_min = pr_k + 1 if pr_k is not None else 1
    samp = as_features(samples, "sample features", min_samples=samp_min,
                       what=f"precision/recall with k={pr_k} (k+1 points per set)" if pr_k else "density/coverage")
    check_same_dim(ref, samp, "reference features", "sample features")

    tri = triangle_batch(max(rb, cb))
    radii = cached_knn_sq_radii if cache_reference else exact_knn_sq_radii
    ref_r = radii(ref, ref_ks, batch=tri, working=dt)
    samp_r = exact_knn_sq_radii(samp, (pr_k,), dt, tri) if pr_k is not None else {}
    wanted = []
    if pr_k is not None:
        wanted += [("ref", pr_k, pr_comparison), ("samp", pr_k, pr_comparison)]
    if dc_k is not None and ("ref", dc_k, dc_comparison) not in wanted:
        wanted.append(("ref", dc_k, dc_comparison))
    n_ref, n_samp = len(ref), len(samp)
    samp_in = np.zeros(n_samp, dtype=bool)  # precision
    ref_in = np.zeros(n_ref, dtype=bool)  # recall
    samp_count = np.zeros(n_samp, dtype=np.int64)  # density
    ref_cov = np.zeros(n_ref, dtype=bool)  # coverage
    for r0, c0, member in CrossPass(ref, samp, ref_r, samp_r, wanted, dt, rb, cb).blocks():
        rows, cols = slice(r0, r0 + rb), slice(c0, c0 + cb)
        if pr_k is not None:
            samp_in[cols] |= member["ref", pr_k, pr_comparison].any(axis=0)
            ref_in[rows] |= member["samp", pr_k, pr_comparison].any(axis=1)
        if dc_k is not None:
            in_dc = member["ref", dc_k, dc_comparison]
            samp_count[cols] += np.count_nonzero(in_dc, axis=0)
            ref_cov[rows] |= in_dc.any(axis=1)

    out: dict[str, float] = {}
    if pr_k is not None:
        out["precision"] = float(samp_in.mean())
        out["recall"] = float(ref_in.mean())
    if dc_k is not None:
        out["density"] = float(samp_count.mean() / dc_k)
        out["coverage"] = float(ref_cov.mean())
    return out


def precision_recall(reference: Any, samples: Any, k: int = 3, comparison: str = "<=", **kwargs) -> dict[str, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019), guided-diffusion convention."""
    return prdc(reference, samples, pr_k=k, dc_k=None, pr_comparison=comparison, **kwargs)


def density_coverage(reference: Any, samples: Any, k: int = 5, comparison: str = "<", **kwargs) -> dict[str, float]:
    """Density and coverage (Naeem et al. 2020), ``prdc`` package convention."""
    return prdc(reference, samples, pr_k=None, dc_k=k, dc_comparison=comparison, **kwargs)
