"""Bootstrap confidence intervals of the feature-space metrics (``eval.bootstrap=B``).

Each of the B replicates resamples the N generated samples with replacement (Efron & Tibshirani
1993, ch. 13: the percentile interval); the features are reused, so no network runs again, and
the reference set stays fixed -- the interval is the uncertainty from having drawn N samples.
FID and KID-like statistics are biased at finite N, and a resample (about 63% distinct samples)
is more biased than the full set, so the raw replicates sit above the full-sample FID. The
interval is therefore the percentile interval of the replicates after removing the bootstrap
estimate of their bias, ``bias = mean(theta*_b) - theta_hat`` (Efron & Tibshirani 1993, sec. 10.2):
``[q_lo(theta*) - bias, q_hi(theta*) - bias]``; ``bias`` is recorded beside it.
A metric opts in through its declaration's ``bootstrap``: ``"resample"`` recomputes it on the
resampled features (FID, sFID, IS, per-class FD), a callable computes all replicates at once
(KID and the k-NN metrics, which must treat repeated points apart:
:mod:`generative_bench.evaluation.metrics.resampled`). The record gets, per output, the
percentile interval ``[lo, hi]`` at ``eval.bootstrap_level`` (0.95) and the replicates' std.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from generative_bench.evaluation.metrics import MetricWarning
from generative_bench.evaluation.metrics.order import inverse
from generative_bench.evaluation.schema import Metric, MetricInputs

METHOD = ("bias-corrected percentile bootstrap over the generated samples (drawn with replacement; features reused; "
          "reference fixed)")


#: the most replicates ``eval.bootstrap`` may ask for (a 95% percentile interval is stable at 1,000-2,000)
MAX_REPLICATES = 10_000


class ReplicateIndices:
    """B index vectors of length n drawn with replacement, from a generator seeded by ``seed``.

    Re-iterable and lazy: each pass regenerates the same vectors from the seed, so memory is one
    vector (8 n bytes), not B of them, and every metric sees the same resamples."""

    def __init__(self, n: int, replicates: int, seed: int):
        self.n, self.replicates, self.seed = int(n), int(replicates), int(seed)

    def __len__(self) -> int:
        return self.replicates

    def __iter__(self):
        rng = np.random.default_rng([self.seed, 0xB007])
        for _ in range(self.replicates):
            yield rng.integers(0, self.n, self.n)


def replicate_indices(n: int, replicates: int, seed: int) -> ReplicateIndices:
    """The B resamples of n generated samples (see :class:`ReplicateIndices`)."""
    return ReplicateIndices(n, replicates, seed)


def resampled_inputs(inputs: MetricInputs, idx: np.ndarray) -> MetricInputs:
    """The metric inputs with the samples' features (and labels) taken at ``idx``; extrapolated
    variants (FID_inf, IS_inf) are not recomputed per replicate."""
    feats = {k: np.asarray(v)[idx] for k, v in (inputs.features or {}).items()}
    labels = None if inputs.labels is None else np.asarray(inputs.labels)[idx]
    cfg = inputs.cfg
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.merge(cfg, {"extrapolate": False})
    elif isinstance(cfg, dict):
        cfg = {**cfg, "extrapolate": False}
    order = None
    if inputs.order is not None:  # the resample's canonical order: its samples by their place in the set's
        order = np.argsort(inverse(np.asarray(inputs.order))[np.asarray(idx)], kind="stable")
    return replace(inputs, features=feats, labels=labels, cfg=cfg, order=order)


def replicates_of(m: Metric, inputs: MetricInputs, indices: list[np.ndarray]) -> list[dict[str, Any]]:
    if callable(m.bootstrap):
        return m.bootstrap(inputs, indices)
    return [m.compute(resampled_inputs(inputs, idx))[0] for idx in indices]


def percentile_interval(values: list[float], level: float, estimate: float | None = None) -> dict[str, float]:
    """Percentile interval at ``level`` of the replicates, shifted by their bootstrap bias against the
    full-sample ``estimate`` (no shift without one); the replicates' std and the bias beside it."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if len(v) == 0:
        return {"lo": None, "hi": None, "std": None, "bias": None, "replicates": 0}
    bias = float(v.mean() - estimate) if estimate is not None else 0.0
    alpha = (1.0 - level) / 2.0
    lo, hi = np.percentile(v, [100 * alpha, 100 * (1 - alpha)]) - bias
    return {"lo": float(lo), "hi": float(hi), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "bias": bias, "replicates": int(len(v))}


def intervals(metrics: list[Metric], inputs: MetricInputs, values: dict[str, Any], replicates: int,
              level: float = 0.95, seed: int = 0) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """({output key: {lo, hi, std, replicates}}, protocol entry) for every bootstrapped metric."""
    n = len(next(iter((inputs.features or {}).values())))
    indices = replicate_indices(n, replicates, seed)
    out: dict[str, dict[str, float]] = {}
    done = []
    for m in metrics:
        if m.bootstrap is None:
            continue
        with warnings.catch_warnings():  # the full-sample computation has warned already
            warnings.simplefilter("ignore", MetricWarning)
            reps = replicates_of(m, inputs, indices)
        keys = [o.key for o in m.outputs if o.shown and isinstance(values.get(o.key), (int, float))]
        for k in keys:
            out[k] = percentile_interval([r.get(k) for r in reps], level, float(values[k]))
        done.append(m.name)
    protocol = {"replicates": int(replicates), "level": float(level), "method": METHOD, "seed": int(seed),
                "metrics": done}
    return out, protocol


__all__ = ["MAX_REPLICATES", "ReplicateIndices", "intervals", "percentile_interval", "replicate_indices", "resampled_inputs"]
