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

The distances and their bound live in :mod:`.distances`, the exact radii in :mod:`.knn`; this
module holds the cross pass and the four fractions. The reference radii are cached in-process by
the content (SHA-1) of the reference features, so
the evaluations of a sweep against one reference set compute them once (:func:`clear_cache`
empties the cache). guided-diffusion first computes distances in float16 (float32 fallback on
overflow), so a sample lying within float16 rounding of a radius may be classified differently
there.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from generative_bench.errors import InputError

from ._checks import as_features, check_positive_int, check_same_dim
from .distances import Balls, Margins, exact_sq_distances, raw_sq_distances, sq_distances, window
from .knn import (EXTRA_CANDIDATES, TRIANGLE_BATCH, cache_info, cached_knn_sq_radii, check_dtype, clear_cache,
                  exact_knn_sq_radii, knn_sq_radii, triangle_batch)

_COMPARISONS = {"<=": np.less_equal, "<": np.less}
DEFAULT_BATCH = 5000


def _comparison(op: str, name: str):
    if op not in _COMPARISONS:
        raise InputError(f"{name} must be one of {sorted(_COMPARISONS)}, got {op!r}")
    return _COMPARISONS[op]


_dtype = check_dtype


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
        margins = Margins(ref, samp, working)
        self.balls = {}
        for side, k, _ in wanted:
            if (side, k) not in self.balls:
                radii = ref_radii[k] if side == "ref" else samp_radii[k]
                self.balls[side, k] = Balls(radii, margins.rows if side == "ref" else margins.cols, working)
        self.resolved_pairs = 0
        # windows read by more than one rule are copied before float64 finishes them, others in place
        self.shared = {(side, k) for side, k, _ in wanted if sum(w[:2] == (side, k) for w in wanted) > 1}

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
                        windows[side, k] = window(d, balls.lo[r0:r1, None], balls.hi[r0:r1, None])
                    else:
                        windows[side, k] = window(d, balls.lo[None, c0:c1], balls.hi[None, c0:c1])
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
                    member = sure.copy() if (side, k) in self.shared else sure
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


__all__ = ["CrossPass", "DEFAULT_BATCH", "EXTRA_CANDIDATES", "TRIANGLE_BATCH", "cache_info", "cached_knn_sq_radii",
           "clear_cache", "density_coverage", "exact_knn_sq_radii", "exact_sq_distances", "knn_sq_radii", "prdc",
           "precision_recall", "raw_sq_distances", "sq_distances", "triangle_batch"]
