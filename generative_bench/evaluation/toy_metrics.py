"""Metrics for 2-D toy mixtures: modes, sample quality, mode balance, data-space P/R, NLL floor.

Pure functions of float sample arrays (numpy or torch, shape (n, d)) and the mixture object of
:mod:`generative_bench.data.toy` (``.means``, ``.std``, ``.log_prob``, ``.sample``).

* A sample is **high quality** when its Mahalanobis distance to the nearest mode,
  ``||x - mu_k|| / std`` for the isotropic components, is below ``max_mahalanobis`` = 3
  (within three standard deviations; Srivastava et al. 2017, Lin et al. 2018).
* A mode is **captured** when at least ``min_count`` high-quality samples fall in it. PacGAN
  counts a mode with >= 20 of 2,500 samples; the threshold here is that share,
  ``min_share = 20 / 2500 = 0.008`` of the samples, so it scales with n (``min_count`` given
  explicitly takes precedence).
* **Reverse KL** is KL(q || u) = sum_k q_k log(K q_k) between the histogram q of high-quality
  samples over the K modes and the uniform mode distribution u (PacGAN); 0 when balanced,
  log K when every high-quality sample sits in one mode, NaN when there is no high-quality sample.
* **Precision / recall** in data space with k-NN manifolds, k = 3 (Kynkaanniemi et al. 2019):
  precision is the share of generated points inside some reference ball
  (``d(x, r_i) <= radius_k(r_i)``); recall swaps the roles. "<=" as in guided-diffusion.
* **data_nll_floor_bpd** is the exact NLL of held-out data under the true density in bits per
  dimension: no model can beat it in expectation.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from generative_bench.errors import InputError

PACGAN_MIN_SHARE = 20 / 2500


def _points(x: Any, name: str, dim: int | None = None) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach().cpu()
    if not torch.is_floating_point(t):
        raise InputError(f"{name}: expected float points, got dtype {t.dtype}")
    if t.ndim != 2 or len(t) == 0 or (dim is not None and t.shape[1] != dim):
        want = f"(n, {dim})" if dim is not None else "(n, d)"
        raise InputError(f"{name}: expected a non-empty array of shape {want}, got {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        bad = int((~torch.isfinite(t)).any(1).sum())
        raise InputError(f"{name}: {bad} of {len(t)} points are NaN/Inf; the model diverged, check the run's train_log.csv")
    return t.double()


def nearest_mode(samples: Any, means: Any, std: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(index of the nearest mode, Mahalanobis distance to it) for each sample (isotropic modes)."""
    mu = _points(means, "means")
    x = _points(samples, "samples", mu.shape[1])
    dist, idx = torch.cdist(x, mu).min(dim=1)
    return idx, dist / float(std)


def mode_statistics(samples: Any, mixture: Any, max_mahalanobis: float = 3.0, min_share: float = PACGAN_MIN_SHARE,
                    min_count: int | None = None) -> dict[str, Any]:
    """Modes captured, high-quality share, reverse KL and the per-mode high-quality counts."""
    idx, maha = nearest_mode(samples, mixture.means, mixture.std)
    hq = maha < max_mahalanobis
    k = len(mixture.means)
    counts = torch.bincount(idx[hq], minlength=k)
    threshold = int(min_count) if min_count is not None else max(1, math.ceil(min_share * len(idx) - 1e-9))
    total = int(counts.sum())
    if total:
        q = counts.double() / total
        nz = q > 0
        reverse_kl = float((q[nz] * torch.log(q[nz] * k)).sum())
    else:
        reverse_kl = float("nan")
    return {"modes": int((counts >= threshold).sum()), "num_modes": k, "high_quality": float(hq.double().mean()),
            "reverse_kl": max(reverse_kl, 0.0) if total else reverse_kl, "counts": counts.tolist(),
            "min_count": threshold}


def class_mode_statistics(samples: Any, labels: Any, mixture: Any, max_mahalanobis: float = 3.0,
                          min_share: float = PACGAN_MIN_SHARE) -> dict[str, Any]:
    """Per-class agreement of class-conditional samples with their own mode.

    ``class_hit``: share of samples within ``max_mahalanobis`` of the mode of their intended class;
    ``class_modes``: classes whose own mode received at least ``min_share`` of that class's
    samples (at least one); ``class_log_density``: mean exact log p(x | y) (nats).
    """
    mu = _points(mixture.means, "means")
    x = _points(samples, "samples", mu.shape[1])
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if y.shape != (len(x),) or (len(y) and (int(y.min()) < 0 or int(y.max()) >= len(mu))):
        raise InputError(f"class labels must be {len(x)} indices in [0, {len(mu)}), got shape {tuple(y.shape)}")
    hit = (x - mu[y]).norm(dim=1) / float(mixture.std) < max_mahalanobis
    covered = 0
    for c in range(len(mu)):
        mine = y == c
        n_c = int(mine.sum())
        if n_c and int(hit[mine].sum()) >= max(1, math.ceil(min_share * n_c - 1e-9)):
            covered += 1
    return {"class_hit": float(hit.double().mean()), "class_modes": covered,
            "class_log_density": float(mixture.class_log_prob(x, y).mean())}


def knn_radii(points: torch.Tensor, k: int = 3, chunk: int = 2048) -> torch.Tensor:
    """Distance from each point to its k-th nearest other point of the same set."""
    if len(points) <= k:
        raise InputError(f"k-NN radii need more than k={k} points, got {len(points)}")
    out = []
    for i in range(0, len(points), chunk):
        d = torch.cdist(points[i:i + chunk], points)
        out.append(d.topk(k + 1, dim=1, largest=False).values[:, k])  # index 0 is the point itself
    return torch.cat(out)


def _inside_any_ball(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    hits = []
    for i in range(0, len(queries), chunk):
        d = torch.cdist(queries[i:i + chunk], centres)
        hits.append((d <= radii[None, :]).any(dim=1))
    return torch.cat(hits)


def knn_precision_recall(reference: Any, generated: Any, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) with k-NN balls in data space."""
    real = _points(reference, "reference")
    fake = _points(generated, "samples", real.shape[1])
    precision = _inside_any_ball(fake, real, knn_radii(real, k)).double().mean()
    recall = _inside_any_ball(real, fake, knn_radii(fake, k)).double().mean()
    return float(precision), float(recall)


def data_nll_floor_bpd(mixture: Any, heldout: Any) -> float:
    """Mean exact -log2 p(x) / d of held-out points under the true mixture density."""
    x = _points(heldout, "heldout", len(mixture.means[0]))
    return float(-mixture.log_prob(x).mean() / (x.shape[1] * math.log(2)))


def toy_metrics(samples: Any, mixture: Any, reference: Any | None = None, k: int = 3, max_mahalanobis: float = 3.0,
                min_share: float = PACGAN_MIN_SHARE, min_count: int | None = None, seed: int = 0) -> dict[str, float]:
    """The flat toy scorecard.

    ``reference`` are held-out true points for precision/recall and the NLL floor; when None,
    ``len(samples)`` points are drawn from ``mixture`` with ``seed``.
    """
    x = _points(samples, "samples", len(mixture.means[0]))
    if reference is None:
        reference = mixture.sample(len(x), torch.Generator().manual_seed(int(seed)))
    ref = _points(reference, "reference", x.shape[1])
    modes = mode_statistics(x, mixture, max_mahalanobis, min_share, min_count)
    precision, recall = knn_precision_recall(ref, x, k)
    return {
        "toy_modes": float(modes["modes"]),
        "toy_modes_total": float(modes["num_modes"]),
        "toy_high_quality": modes["high_quality"],
        "toy_reverse_kl": modes["reverse_kl"],
        "toy_precision": precision,
        "toy_recall": recall,
        "data_nll_floor_bpd": data_nll_floor_bpd(mixture, ref),
    }


__all__ = ["PACGAN_MIN_SHARE", "class_mode_statistics", "nearest_mode", "mode_statistics", "knn_radii", "knn_precision_recall",
           "data_nll_floor_bpd", "toy_metrics"]
