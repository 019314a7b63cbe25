"""Metric registry of the harness: ``eval.metrics`` names -> pure functions of the features.

Each entry takes (sample features, reference arrays, eval config, seed) and returns
(metric values, the settings used). Reference arrays come from the cache and already hold
``mu``/``sigma`` (pool) and ``mu_s``/``sigma_s`` (spatial), so FID/sFID only need the samples'
statistics.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from generative_bench.errors import InputError
from generative_bench.evaluation import metrics as M


def _need(arrays, key: str, metric: str):
    try:
        return arrays[key]
    except KeyError:
        raise InputError(f"{metric} needs '{key}' features, which this feature extractor does not provide; "
                         f"remove {metric} from eval.metrics") from None


def _fid(feats, ref, cfg, seed):
    mu, sigma = M.gaussian_stats(_need(feats, "pool", "fid"), "sample features")
    method = str(cfg.get("fid_method", "sqrtm"))
    out = {"fid": M.frechet_distance(mu, sigma, ref["mu"], ref["sigma"], method=method)}
    if cfg.get("extrapolate", False):
        out["fid_inf"] = M.fid_infinity(feats["pool"], ref["mu"], ref["sigma"], seed=seed).value
    rule = "scipy.linalg.sqrtm, eps=1e-6 retry" if method == "sqrtm" else "symmetric eigh (exact, faster)"
    return out, {"precision": "float64", "trace_sqrt": rule}


def _sfid(feats, ref, cfg, seed):
    mu, sigma = M.gaussian_stats(_need(feats, "spatial", "sfid"), "sample spatial features")
    method = str(cfg.get("fid_method", "sqrtm"))
    return {"sfid": M.frechet_distance(mu, sigma, ref["mu_s"], ref["sigma_s"], method=method)}, {"features": "spatial"}


def _is(feats, ref, cfg, seed):
    splits = int(cfg.get("is_splits", 10))
    r = M.inception_score(_need(feats, "logits", "is"), splits=splits)
    out = {"is_mean": r.mean, "is_std": r.std}
    if cfg.get("extrapolate", False):
        out["is_inf"] = M.is_infinity(feats["logits"], seed=seed).value
    return out, {"splits": splits, "logits": "unbiased"}


def _kid(feats, ref, cfg, seed):
    subsets, size = int(cfg.get("kid_subsets", 100)), int(cfg.get("kid_subset_size", 1000))
    n = min(len(feats["pool"]), len(ref["pool"]))
    clip = size > n
    r = M.kernel_inception_distance(feats["pool"], ref["pool"], subsets=subsets, subset_size=size, seed=seed,
                                    clip_subset_size=clip)
    return {"kid_mean": r.mean, "kid_std": r.std}, {"subsets": r.subsets, "subset_size": r.subset_size,
                                                    "kernel": "cubic polynomial", "clipped_to_n": clip}


def _prdc(feats, ref, cfg, seed):
    pr_k, dc_k = int(cfg.get("pr_k", 3)), int(cfg.get("dc_k", 5))
    out = M.prdc(ref["pool"], _need(feats, "pool", "prdc"), pr_k=pr_k, dc_k=dc_k)
    return out, {"pr_k": pr_k, "pr_comparison": "<=", "dc_k": dc_k, "dc_comparison": "<"}


IMAGE_METRICS: dict[str, Callable[..., tuple[dict[str, float], dict[str, Any]]]] = {
    "fid": _fid,
    "sfid": _sfid,
    "is": _is,
    "kid": _kid,
    "prdc": _prdc,
}


def toy_suite(samples: torch.Tensor, reference_points: torch.Tensor, mixture, cfg) -> tuple[dict[str, float], dict]:
    """Toy metrics of 2-D samples against the exact mixture and held-out points."""
    from generative_bench.evaluation.toy_metrics import toy_metrics

    ref = reference_points[: len(samples)]  # equal-size sets for the k-NN precision/recall
    values = toy_metrics(samples, mixture, ref, k=int(cfg.get("pr_k", 3)))
    values.pop("data_nll_floor_bpd", None)  # reported with the NLL, on the NLL's own points
    total = values.pop("toy_modes_total", None)  # a property of the data, not a score: goes with the settings
    settings = {"space": "data (2-D)", "high_quality": "Mahalanobis < 3 to the nearest mode"}
    if total is not None:
        settings["modes_total"] = int(total)
    return values, settings


__all__ = ["IMAGE_METRICS", "toy_suite"]
