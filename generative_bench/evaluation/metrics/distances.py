"""Squared Euclidean distances for the k-NN metrics: the fast blocked form, the exact float64 form,
and the a-priori bound between them (see :mod:`.prdc` for what is promised).

* :func:`raw_sq_distances` / :func:`sq_distances`: ``(|u|^2 + |v|^2) - 2 u.v`` with a BLAS matrix
  product in the working precision (fast, rounded);
* :func:`exact_sq_distances`: ``sum_i (u_i - v_i)^2`` in float64, pair by pair (the reference);
* :func:`rounding_coefficient` / :class:`Margins`: ``|fast - exact| <= c_D (|u| + |v|)^2``;
* :class:`Balls` / :func:`window`: which pairs of a fast block are certainly inside a radius, and
  which lie within the bound of it and must be measured exactly.
"""

from __future__ import annotations

import numpy as np

from . import _chunks

#: float64 values per chunk of the exact re-measurement (4 MiB of differences: cache-sized)
EXACT_CHUNK_VALUES = 1 << 19


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


class Margins:
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


class Balls:
    """Exact radii and the fast-precision window around each: a fast distance below ``lo`` is
    certainly inside (both rules), above ``hi`` certainly outside; between, float64 decides."""

    def __init__(self, radii: np.ndarray, margins: np.ndarray, working: np.dtype):
        self.radii = radii
        self.lo = _rounded(radii - margins, working, -np.inf)
        self.hi = _rounded(radii + margins, working, np.inf)


def window(d: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """Certainly-inside mask of a fast block and the (row, col) pairs to decide in float64."""
    sure = d < lo
    maybe = d <= hi
    if np.count_nonzero(maybe) == np.count_nonzero(sure):
        return sure, None
    return sure, np.divmod(np.flatnonzero(maybe ^ sure), d.shape[1])  # flat: far faster than 2-D nonzero
