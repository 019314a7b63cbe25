"""Memorization checks against the training set, in the evaluation's feature space.

Three complementary tests (all Euclidean distances between feature vectors; T the training
features, P held-out real features never trained on, Q the generated samples):

* **Nearest-neighbour distance ratio**: ``median_q d(q, T) / median_p d(p, T)`` with ``d(x, T)``
  the distance to the nearest training point. Samples drawn from the data distribution sit as far
  from the training set as held-out images do (ratio ~ 1); copies of training images sit on it
  (ratio -> 0). ``copy_share`` is the share of samples closer to T than the 1% quantile of the
  held-out distances (~0.01 for a model that does not copy).
* **Authenticity** (Alaa et al. 2022, "How Faithful is your Synthetic Data?", Sec. 3.3): a sample q
  with nearest training point t* is *not* authentic when it is closer to t* than t*'s own nearest
  other training point, ``d(q, t*) < min_{t != t*} d(t*, t)``; authenticity is the authentic share
  (the fls / dgm-eval ``AuthPct`` rule, as a fraction). Copies score 0.
* **C_T** (Meehan et al. 2020, "A Non-Parametric Test to Detect Data-Copying in Generative
  Models", eq. 3-4): the training set is partitioned into k cells (k-means, Lloyd's algorithm with
  k-means++ seeding, seeded); in each cell the distances to the cell's training points of held-out
  and generated points are compared with the Mann-Whitney U test, ``Z_U = (U - mn/2 + 1/2) /
  sqrt(mn(m+n+1)/12)`` (U of the generated sample, continuity-corrected as in the authors' code);
  C_T is the average of Z_U over the cells holding at least ``min_cell`` samples, weighted by the
  held-out share of each cell. C_T << 0 (e.g. < -3, a z-score) means data copying; C_T >> 0
  under-fitting; ~0 neither.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from generative_bench.errors import InputError

from ._checks import as_features, check_same_dim
from .distances import sq_distances

#: C_T below this (a z-score) is reported as data copying
CT_FLAG = -3.0
BLOCK = 4096


def nearest(query: np.ndarray, ref: np.ndarray, exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(distance, index) of each query row's nearest ``ref`` row, in blocks (float64 distances).

    ``exclude_self``: ``query`` is ``ref`` and a row is not its own neighbour."""
    q, r = np.asarray(query, np.float64), np.asarray(ref, np.float64)
    r_sq = np.einsum("ij,ij->i", r, r)
    dist = np.empty(len(q))
    idx = np.empty(len(q), np.int64)
    for s in range(0, len(q), BLOCK):
        d = sq_distances(q[s:s + BLOCK], r, None, r_sq)
        if exclude_self:
            rows = np.arange(s, min(s + BLOCK, len(q)))
            d[rows - s, rows] = np.inf
        idx[s:s + BLOCK] = d.argmin(axis=1)
        dist[s:s + BLOCK] = np.sqrt(d[np.arange(len(d)), idx[s:s + BLOCK]])
    return dist, idx


def nn_distance_ratio(samples: Any, train: Any, heldout: Any) -> dict[str, float]:
    q = as_features(samples, "sample features", min_samples=1, what="the memorization checks")
    t = as_features(train, "training features", min_samples=2, what="the memorization checks")
    p = as_features(heldout, "held-out features", min_samples=2, what="the memorization checks")
    check_same_dim(q, t, "sample features", "training features")
    check_same_dim(p, t, "held-out features", "training features")
    d_q, _ = nearest(q, t)
    d_p, _ = nearest(p, t)
    return {"nn_ratio": float(np.median(d_q) / max(np.median(d_p), 1e-300)),
            "copy_share": float((d_q < np.quantile(d_p, 0.01)).mean())}


def authenticity(samples: Any, train: Any) -> float:
    """Share of samples that are authentic (Alaa et al. 2022; module doc)."""
    q = as_features(samples, "sample features", min_samples=1, what="authenticity")
    t = as_features(train, "training features", min_samples=2, what="authenticity")
    check_same_dim(q, t, "sample features", "training features")
    d_t, _ = nearest(t, t, exclude_self=True)
    d_q, nn = nearest(q, t)
    return float((d_q >= d_t[nn]).mean())


def kmeans(x: np.ndarray, k: int, seed: int = 0, iters: int = 50) -> np.ndarray:
    """Cell centres of ``x`` by Lloyd's algorithm from k-means++ seeds (Arthur & Vassilvitskii 2007)."""
    rng = np.random.default_rng(seed)
    x = np.asarray(x, np.float64)
    centres = [x[rng.integers(len(x))]]
    d2 = sq_distances(x, np.asarray(centres))[:, 0]
    for _ in range(1, k):
        p = d2 / d2.sum() if d2.sum() > 0 else None
        centres.append(x[rng.choice(len(x), p=p)])
        d2 = np.minimum(d2, sq_distances(x, np.asarray(centres[-1:]))[:, 0])
    c = np.asarray(centres)
    for _ in range(iters):
        lab = sq_distances(x, c).argmin(axis=1)
        new = np.asarray([x[lab == j].mean(0) if (lab == j).any() else c[j] for j in range(k)])
        if np.allclose(new, c):
            break
        c = new
    return c


def _z_u(l_gen: np.ndarray, l_test: np.ndarray) -> float:
    """Z-scored Mann-Whitney U of generated vs held-out distances (Meehan et al. 2020, eq. 3)."""
    from scipy.stats import mannwhitneyu

    m, n = len(l_gen), len(l_test)
    u = mannwhitneyu(l_gen, l_test, alternative="less").statistic
    return float((u - (m * n / 2.0 - 0.5)) / np.sqrt(m * n * (n + m + 1) / 12.0))


def ct_statistic(samples: Any, train: Any, heldout: Any, cells: int = 10, min_cell: int = 20,
                 seed: int = 0) -> dict[str, Any]:
    """C_T (Meehan et al. 2020; module doc) and the number of cells it averaged over."""
    q = as_features(samples, "sample features", min_samples=2, what="the C_T test")
    t = as_features(train, "training features", min_samples=cells, what=f"the C_T test with {cells} cells")
    p = as_features(heldout, "held-out features", min_samples=2, what="the C_T test")
    check_same_dim(q, t, "sample features", "training features")
    c = kmeans(t, int(cells), seed=seed)
    cell_t, cell_p, cell_q = (sq_distances(np.asarray(a, np.float64), c).argmin(axis=1) for a in (t, p, q))
    zs, weights = [], []
    for j in range(int(cells)):
        tj, pj, qj = t[cell_t == j], p[cell_p == j], q[cell_q == j]
        if len(qj) < min_cell or len(pj) < 1 or len(tj) < 1:
            continue
        zs.append(_z_u(nearest(qj, tj)[0], nearest(pj, tj)[0]))
        weights.append(len(pj) / len(p))
    if not zs:
        raise InputError(f"the C_T test needs a cell with at least {min_cell} samples and a held-out image; raise "
                         "eval.num_samples or lower eval.memorization_cells")
    w = np.asarray(weights)
    return {"ct": float(np.asarray(zs) @ w / w.sum()), "cells_used": len(zs)}


def memorization(samples: Any, train: Any, heldout: Any, cells: int = 10, min_cell: int = 20,
                 seed: int = 0) -> dict[str, float]:
    """Every check at once: nn_ratio, copy_share, authenticity, ct (+ cells_used, flagged)."""
    out = nn_distance_ratio(samples, train, heldout)
    out["authenticity"] = authenticity(samples, train)
    out.update(ct_statistic(samples, train, heldout, cells=cells, min_cell=min_cell, seed=seed))
    out["flagged"] = float(out["ct"] < CT_FLAG)
    return out


__all__ = ["CT_FLAG", "authenticity", "ct_statistic", "kmeans", "memorization", "nearest", "nn_distance_ratio"]
