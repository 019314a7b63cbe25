"""The metric declarations of the harness (see :mod:`generative_bench.evaluation.schema`).

Feature-space metrics (``eval.metrics``) are pure functions of the samples' features against the
cached reference arrays, which already hold ``mu``/``sigma`` (pool) and ``mu_s``/``sigma_s``
(spatial); toy metrics (``eval.toy_metrics``) work in data space against the exact 2-D mixture.
Conditional metrics use the samples' intended classes and run only for labelled samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from generative_bench.errors import InputError
from generative_bench.evaluation import metrics as M
from generative_bench.evaluation.metrics import fid as fid_rules
from generative_bench.evaluation.metrics.inception_score import TORCH_FIDELITY_SEED
from generative_bench.evaluation.metrics.inception_score import ORDERS as IS_ORDERS
from generative_bench.evaluation.metrics.kid import ORDERS as KID_ORDERS
from generative_bench.evaluation.metrics.order import inverse
from generative_bench.evaluation.schema import Metric, MetricInputs, Options, Output, register

KID_NOTE = "KID is shown ×10³ (raw KID, a squared MMD with the cubic polynomial kernel, times 1000)."


@dataclass(frozen=True)
class ISOptions(Options):
    is_splits: int = 10
    is_split_order: str = "canonical"  # metrics/inception_score.py: canonical | shuffled | sequential
    CHOICES = {"is_split_order": IS_ORDERS}


@dataclass(frozen=True)
class KIDOptions(Options):
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    kid_subset_order: str = "canonical"  # metrics/kid.py: canonical | given
    CHOICES = {"kid_subset_order": KID_ORDERS}


@dataclass(frozen=True)
class PRDCOptions(Options):
    pr_k: int = 3  # precision/recall neighbourhood (guided-diffusion)
    dc_k: int = 5  # density/coverage neighbourhood (Naeem et al. 2020)


@dataclass(frozen=True)
class DataPROptions(Options):
    pr_k: int = PRDCOptions.pr_k


def _fid_method(cfg) -> str:
    """``eval.fid_method``: "eigh" (exact symmetric eigendecomposition, the default when the key is
    absent) or "sqrtm" (the guided-diffusion / pytorch-fid scipy rule)."""
    return fid_rules.check_method(str(cfg.get("fid_method", fid_rules.DEFAULT_METHOD)))


def _fid_settings(method: str) -> dict[str, Any]:
    return {"precision": "float64", "fid_method": method, "trace_sqrt": fid_rules.METHOD_RULES[method]}


def _fid(inp: MetricInputs):
    feats, ref, cfg = inp.features, inp.reference, inp.cfg
    mu, sigma = M.gaussian_stats(feats["pool"], "sample features")
    method = _fid_method(cfg)
    # the reference statistics go second: their covariance factor is cached across evaluations
    out = {"fid": M.frechet_distance(mu, sigma, ref["mu"], ref["sigma"], method=method)}
    if cfg.get("extrapolate", False):
        out["fid_inf"] = M.fid_infinity(feats["pool"], ref["mu"], ref["sigma"], seed=inp.seed, method=method).value
    return out, _fid_settings(method)


def _sfid(inp: MetricInputs):
    mu, sigma = M.gaussian_stats(inp.features["spatial"], "sample spatial features")
    ref = inp.reference
    method = _fid_method(inp.cfg)
    return ({"sfid": M.frechet_distance(mu, sigma, ref["mu_s"], ref["sigma_s"], method=method)},
            {"features": "spatial", **_fid_settings(method)})


def _is(inp: MetricInputs):
    opts = ISOptions.read(inp.cfg)
    splits, order = int(opts.is_splits), str(opts.is_split_order)
    logits, how = _in_sample_order(inp, inp.features["logits"], order, "shuffled")
    r = M.inception_score(logits, splits=splits, order=how)
    out = {"is_mean": r.mean, "is_std": r.std}
    if inp.cfg.get("extrapolate", False):
        out["is_inf"] = M.is_infinity(inp.features["logits"], seed=inp.seed).value
    return out, {"splits": splits, "logits": "unbiased", "split_order": order,
                 **({} if order == "sequential" else {"shuffle_seed": TORCH_FIDELITY_SEED})}


def _in_sample_order(inp: MetricInputs, features, order: str, then: str):
    """``canonical`` with the samples' images known: the features in the samples' canonical order
    (by image content, exact whatever made the features), then the metric's ``then`` convention on
    that order; otherwise the features as they are and the metric's own ``order``."""
    if order == "canonical" and inp.order is not None:
        return np.asarray(features)[np.asarray(inp.order)], then
    return features, order


def _kid(inp: MetricInputs):
    opts = KIDOptions.read(inp.cfg)
    pool, how = _in_sample_order(inp, inp.features["pool"], opts.kid_subset_order, "given")
    r = M.kernel_inception_distance(pool, inp.reference["pool"], subsets=int(opts.kid_subsets),
                                    subset_size=int(opts.kid_subset_size), seed=inp.seed, order=how)
    return {"kid_mean": r.mean, "kid_std": r.std}, {"subsets": r.subsets, "subset_size": r.subset_size,
                                                    "kernel": "cubic polynomial", "subset_order": opts.kid_subset_order}


def _prdc(inp: MetricInputs):
    opts = PRDCOptions.read(inp.cfg)
    pr_k, dc_k = int(opts.pr_k), int(opts.dc_k)
    out = M.prdc(inp.reference["pool"], inp.features["pool"], pr_k=pr_k, dc_k=dc_k)
    return out, {"pr_k": pr_k, "pr_comparison": "<=", "dc_k": dc_k, "dc_comparison": "<",
                 "decisions": "float64 brute force (float32 pass, pairs within its rounding bound re-measured)"}


def _kid_boot(inp: MetricInputs, indices):
    from generative_bench.evaluation.metrics.resampled import kid_replicates

    opts = KIDOptions.read(inp.cfg)
    pool, how = _in_sample_order(inp, inp.features["pool"], opts.kid_subset_order, "given")
    if how == "given" and opts.kid_subset_order == "canonical":  # replicates in the samples' canonical order
        rank = inverse(np.asarray(inp.order))
        indices = (np.sort(rank[np.asarray(i)]) for i in indices)  # one pass, one vector at a time
    vals = kid_replicates(pool, inp.reference["pool"], indices, int(opts.kid_subsets),
                          int(opts.kid_subset_size), seed=inp.seed, order=how)
    return [{"kid_mean": v} for v in vals]


def _prdc_boot(inp: MetricInputs, indices):
    from generative_bench.evaluation.metrics.resampled import prdc_replicates

    opts = PRDCOptions.read(inp.cfg)
    pr_k, dc_k = int(opts.pr_k), int(opts.dc_k)
    return prdc_replicates(inp.reference["pool"], inp.features["pool"], indices, pr_k=pr_k, dc_k=dc_k)


def _labels(values: Any) -> np.ndarray:
    return np.asarray(values.cpu() if isinstance(values, torch.Tensor) else values, dtype=np.int64)


def _class_fd(inp: MetricInputs):
    """FD between the samples of class c and the reference images of class c, for every class.

    A class with fewer than 2 samples (or reference images) has no covariance: its entry is null
    and the mean is over the scored classes, whose number the settings record."""
    y, ref_y = _labels(inp.labels), _labels(inp.reference["labels"])
    method = _fid_method(inp.cfg)
    per_class: list[float | None] = []
    for c in sorted(set(ref_y.tolist())):
        mine, theirs = inp.features["pool"][y == c], inp.reference["pool"][ref_y == c]
        if len(mine) < 2 or len(theirs) < 2:
            per_class.append(None)
            continue
        mu1, s1 = M.gaussian_stats(mine, f"samples of class {c}")
        mu2, s2 = M.gaussian_stats(theirs, f"reference images of class {c}")
        per_class.append(float(M.frechet_distance(mu1, s1, mu2, s2, method=method)))
    scored = [v for v in per_class if v is not None]
    if not scored:
        raise InputError("per-class FD needs at least 2 samples of some class; raise eval.num_samples")
    return ({"fid_class_mean": float(np.mean(scored)), "fid_per_class": per_class, "fid_class_scored": len(scored)},
            {"classes": len(per_class), **_fid_settings(method)})


def _class_accuracy(inp: MetricInputs):
    """Share of samples that the extractor's own classifier assigns to their intended class."""
    ext = inp.extractor or {}
    ref_y = _labels(inp.reference["labels"])
    k = int((ext.get("dims") or {}).get("logits", 0))
    if ext.get("kind") != "domain" or k != int(ref_y.max()) + 1:
        raise InputError("class_accuracy needs a feature extractor that classifies the data's own classes (a domain "
                         "extractor such as eval/features=cifar10_resnet); remove class_accuracy from eval.metrics")
    y = _labels(inp.labels)
    pred = np.asarray(inp.features["logits"]).argmax(1)
    return {"class_accuracy": float((pred == y).mean())}, {"classifier": ext.get("name")}


register(Metric("fid", "features", needs=("pool",), compute=_fid, reference_needs=("mu",), bootstrap="resample",
                outputs=(
    Output("fid", "FID", "lower", domain="FD", quality_rank=0, tradeoff=("fidelity", "y")),
    Output("fid_inf", "FID∞", "lower", domain="FD_inf", digits=2, headline=False),
)))
register(Metric("sfid", "features", needs=("spatial",), compute=_sfid, reference_needs=("mu_s",),
                bootstrap="resample", outputs=(
    Output("sfid", "sFID", "lower", domain="sFD", headline=False),
)))
register(Metric("is", "features", needs=("logits",), compute=_is, bootstrap="resample", options=ISOptions, outputs=(
    Output("is_mean", "IS", "higher", domain="CS", column="is", spread="is_std", tradeoff=("fidelity", "x")),
    Output("is_std", "IS std", domain="CS_std", shown=False),
    Output("is_inf", "IS∞", "higher", domain="CS_inf", headline=False),
)))
register(Metric("kid", "features", needs=("pool",), compute=_kid, reference_needs=("pool",), bootstrap=_kid_boot,
                options=KIDOptions, outputs=(
    Output("kid_mean", "KID ×10³", "lower", domain="KD", column="kid", scale=1e3, note=KID_NOTE, spread="kid_std",
           quality_rank=4),
    Output("kid_std", "KID std", domain="KD_std", shown=False),
)))
register(Metric("prdc", "features", needs=("pool",), compute=_prdc, reference_needs=("pool",), bootstrap=_prdc_boot,
                options=PRDCOptions, outputs=(
    Output("precision", "Precision", "higher", domain="precision", digits=3, quality_rank=3,
           tradeoff=("precision-recall", "y")),
    Output("recall", "Recall", "higher", domain="recall", digits=3, tradeoff=("precision-recall", "x")),
    Output("density", "Density", "higher", domain="density", digits=3, headline=False),
    Output("coverage", "Coverage", "higher", domain="coverage", digits=3, headline=False, quality_rank=5),
)))
register(Metric("class_fd", "features", needs=("pool",), compute=_class_fd, conditional=True,
                reference_needs=("pool", "labels"), bootstrap="resample", outputs=(
    Output("fid_class_mean", "per-class FID (mean)", "lower", domain="FD_class", digits=1,
           note="Per-class FID: FID between the samples of each intended class and the reference images of that "
                "class, averaged over the classes."),
    Output("fid_per_class", "per-class FID", domain="FD_per_class", shown=False),
    Output("fid_class_scored", "classes scored", shown=False),
)))
register(Metric("class_accuracy", "features", needs=("logits",), compute=_class_accuracy, conditional=True,
                reference_needs=("labels",), extractor_kinds=("domain",), bootstrap="resample",
                outputs=(Output("class_accuracy", "Class accuracy", "higher", domain="accuracy", digits=3,
                                note="Class accuracy: share of samples the domain classifier assigns to the class "
                                     "they were generated for."),)))


def _memorization(inp: MetricInputs):
    """Memorization checks of the samples against the training set (metrics/memorization.py)."""
    from generative_bench.evaluation.metrics.memorization import CT_FLAG, memorization

    sets = inp.memorization or {}
    if "train" not in sets or "heldout" not in sets:
        raise InputError("the memorization checks need training and held-out features; set eval.memorization=true "
                         "(the harness then loads the train split and eval.memorization_split)")
    cells, min_cell = int(inp.cfg.get("memorization_cells", 10)), int(inp.cfg.get("memorization_min_cell", 20))
    r = memorization(inp.features["pool"], sets["train"], sets["heldout"], cells=cells, min_cell=min_cell,
                     seed=inp.seed)
    out = {"mem_nn_ratio": r["nn_ratio"], "mem_copy_share": r["copy_share"], "mem_authenticity": r["authenticity"],
           "mem_ct": r["ct"], "mem_ct_cells": r["cells_used"], "mem_flagged": r["flagged"]}
    return out, {"features": "pool", "distance": "euclidean", "train_set": sets.get("train_set"),
                 "heldout_set": sets.get("heldout_set"), "ct_cells": cells, "ct_min_cell": min_cell,
                 "ct_flag": f"C_T < {CT_FLAG:g}"}


register(Metric("memorization", "features", needs=("pool",), compute=_memorization, outputs=(
    Output("mem_nn_ratio", "NN distance ratio", domain="NN_ratio", digits=3,
           note="NN distance ratio: median distance of the samples to their nearest training image over that of "
                "held-out real images (~1: no copying; -> 0: copies)."),
    Output("mem_copy_share", "Copy share", "lower", domain="copy_share", digits=3,
           note="Copy share: samples closer to the training set than the 1% quantile of held-out images (~0.01 "
                "without copying)."),
    Output("mem_authenticity", "Authenticity", "higher", domain="authenticity", digits=3,
           note="Authenticity (Alaa et al. 2022): share of samples farther from their nearest training image than "
                "that image is from its own nearest training neighbour."),
    Output("mem_ct", "C_T", domain="C_T", digits=2,
           note="C_T (Meehan et al. 2020): cell-averaged Mann-Whitney z-score of sample vs held-out distances to "
                "the training set; << 0 (below -3) is data copying, >> 0 under-fitting."),
    Output("mem_ct_cells", "C_T cells", shown=False),
    Output("mem_flagged", "Memorization flagged", shown=False),
)))


def _vendi(inp: MetricInputs):
    from generative_bench.evaluation.metrics.vendi import vendi_score

    return {"vendi": vendi_score(inp.features["pool"])}, {"kernel": "cosine", "features": "pool", "order": 1}


register(Metric("vendi", "features", needs=("pool",), compute=_vendi, outputs=(
    Output("vendi", "Vendi", "higher", domain="Vendi", digits=2,
           note="Vendi score (Friedman & Dieng 2023): effective number of distinct samples, cosine kernel on the "
                "features; no reference."),
)))


def _cmmd(inp: MetricInputs):
    from generative_bench.evaluation.metrics.cmmd import SCALE, SIGMA, cmmd

    return ({"cmmd": cmmd(inp.reference["clip"], inp.features["clip"])},
            {"kernel": "gaussian rbf", "sigma": SIGMA, "scale": SCALE, "features": "clip (L2-normalised)",
             "estimator": "all pairs, diagonals included (google-research/cmmd)",
             "network": (inp.extractor or {}).get("name")})


register(Metric("cmmd", "features", needs=("clip",), compute=_cmmd, reference_needs=("clip",), bootstrap="resample",
                outputs=(
    Output("cmmd", "CMMD", "lower", digits=3,
           note="CMMD (Jayasumana et al. 2024): squared MMD between CLIP embeddings of samples and reference, Gaussian "
                "RBF kernel sigma=10, x1000; the network is named in the metric settings (the paper: ViT-L/14@336)."),
)))


# ------------------------------------------------------------------------------------------ toy
def _toy_modes(inp: MetricInputs):
    from generative_bench.evaluation.toy_metrics import mode_statistics

    s = mode_statistics(inp.samples, inp.mixture)
    return ({"toy_modes": float(s["modes"]), "toy_high_quality": s["high_quality"], "toy_reverse_kl": s["reverse_kl"]},
            {"space": "data (2-D)", "high_quality": "Mahalanobis < 3 to the nearest mode",
             "modes_total": int(s["num_modes"]), "min_count": int(s["min_count"])})


def _toy_pr(inp: MetricInputs):
    from generative_bench.evaluation.toy_metrics import knn_precision_recall

    ref = inp.reference_points[: len(inp.samples)]  # equal-size sets for the k-NN precision/recall
    k = int(DataPROptions.read(inp.cfg).pr_k)
    precision, recall = knn_precision_recall(ref, inp.samples, k)
    return {"toy_precision": precision, "toy_recall": recall}, {"pr_k": k, "reference_points": len(ref)}


def _toy_class(inp: MetricInputs):
    from generative_bench.evaluation.toy_metrics import class_mode_statistics

    s = class_mode_statistics(inp.samples, _labels(inp.labels), inp.mixture)
    return ({"toy_class_hit": s["class_hit"], "toy_class_modes": float(s["class_modes"]),
             "toy_class_log_density": s["class_log_density"]},
            {"class_hit": "sample within Mahalanobis 3 of its own class's mode"})


register(Metric("modes", "toy", compute=_toy_modes, outputs=(
    Output("toy_modes", "Modes", "higher", column="modes", digits=1,
           note="Modes: mixture components covered by the samples (criterion in the metric settings)."),
    Output("toy_high_quality", "High-quality share", "higher", column="hq", digits=3, quality_rank=1,
           tradeoff=("fidelity", "y"),
           note="High-quality share: fraction of samples close to a mode (criterion in the metric settings)."),
    Output("toy_reverse_kl", "Reverse KL", "lower", column="reverse_kl", digits=3,
           note="Reverse KL: KL(model || data) over the mixture's modes, in nats."),
)))
register(Metric("data_pr", "toy", compute=_toy_pr, options=DataPROptions, outputs=(
    Output("toy_precision", "Data precision", "higher", column="data_precision", digits=3, quality_rank=2,
           tradeoff=("precision-recall", "y")),
    Output("toy_recall", "Data recall", "higher", column="data_recall", digits=3, tradeoff=("precision-recall", "x")),
)))
register(Metric("class_modes", "toy", compute=_toy_class, conditional=True, outputs=(
    Output("toy_class_hit", "Class hit rate", "higher", digits=3,
           note="Class hit rate: share of samples within 3 standard deviations of the mode of the class they were "
                "generated for."),
    Output("toy_class_modes", "Classes covered", "higher", digits=1,
           note="Classes covered: classes whose own mode received at least the mode-capture share of its samples."),
    Output("toy_class_log_density", "Class log-density", "higher", digits=3,
           note="Class log-density: mean exact log p(x | y) of the samples under their class's Gaussian (nats)."),
)))

__all__ = ["KID_NOTE"]
