"""Exact k-NN radii: each point's distance to its k-th nearest other point, as a float64 brute force
decides it, for any block size (see :mod:`.prdc` for what is promised and how).

One pass over the upper block triangle of the set's fast distance matrix keeps each row's nearest
candidates with their indices; the candidates within the rounding bound of the k-th are measured
exactly; exact duplicates are merged first and carried as multiplicities. Reference radii are
cached in-process by the content of the features (:func:`cached_knn_sq_radii`).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from generative_bench.errors import InputError

from . import _chunks
from .distances import EXACT_CHUNK_VALUES, Margins, exact_sq_distances, raw_sq_distances

# block size of the k-NN radii's triangle: smaller diagonal blocks run the symmetric product
# nearer the general product's rate (10k x 2048 float32, one core: 2.46 s at 2500 against 2.70 s
# at 5000, knn_sq_smallest timed alone); never above the caller's block size (memory)
TRIANGLE_BATCH = 2500
#: nearest candidates kept per row beyond the k+1 a radius needs: room for the near-ties that
#: must be re-measured in float64 (a row whose candidates overflow them gets a pass of its own)
EXTRA_CANDIDATES = 8
RADII_CACHE_ENTRIES = 8


def check_dtype(dtype: Any) -> np.dtype:
    """The working precision of a fast pass: float32 or float64."""
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise InputError(f"distance dtype must be float32 or float64, got {dt}")
    return dt


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
    wt = check_dtype(working)
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
        two_m = 2 * Margins(uniq, uniq, wt).rows[:, None]
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
