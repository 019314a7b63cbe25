"""Metric functions: pure functions of numpy feature arrays (no extractor, no I/O).

=====================  ==========================================  =====================
metric                 function                                    features
=====================  ==========================================  =====================
FID / sFID             :func:`fid_from_features`,                  pool (N, 2048) /
                       :func:`frechet_distance`                    spatial (N, 2023)
Inception Score        :func:`inception_score`                     logits (N, 1008)
KID                    :func:`kernel_inception_distance`           pool
precision / recall     :func:`precision_recall` (k=3, "<=")        pool
density / coverage     :func:`density_coverage` (k=5, "<")         pool
FID_inf / IS_inf       :func:`fid_infinity`, :func:`is_infinity`   pool / logits
CMMD                   :func:`cmmd.cmmd` (RBF, sigma=10, x1000)    clip (N, 512)
=====================  ==========================================  =====================
"""

from ._checks import MeanStd, MetricWarning
from .extrapolated import Extrapolation, fid_infinity, fit_inverse_n, is_infinity, subset_sizes
from .fid import (GaussianStats, fid_from_features, fid_from_stats, frechet_distance, gaussian_stats, psd_sqrt_factor,
                  sfid_from_features, trace_sqrt_product)
from .inception_score import inception_score
from .kid import KIDResult, kernel_inception_distance, mmd2_unbiased, polynomial_kernel
from .prdc import density_coverage, knn_sq_radii, prdc, precision_recall

__all__ = [
    "Extrapolation",
    "GaussianStats",
    "KIDResult",
    "MeanStd",
    "MetricWarning",
    "density_coverage",
    "fid_from_features",
    "fid_from_stats",
    "fid_infinity",
    "fit_inverse_n",
    "frechet_distance",
    "gaussian_stats",
    "inception_score",
    "is_infinity",
    "kernel_inception_distance",
    "knn_sq_radii",
    "mmd2_unbiased",
    "polynomial_kernel",
    "prdc",
    "psd_sqrt_factor",
    "precision_recall",
    "sfid_from_features",
    "subset_sizes",
    "trace_sqrt_product",
]
