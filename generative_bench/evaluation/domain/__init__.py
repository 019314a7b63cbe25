"""Domain feature extractors: the FID metric family in the feature space of a classifier trained
on the user's own labelled images (for air-gapped clusters and non-ImageNet domains).

* :mod:`.nets`       compact classifier nets (:class:`CompactResNet`), flip-TTA inference
* :mod:`.classifier` the classifier as a Trainable for the project's generic trainer
* :mod:`.stage`      ``gbench train-extractor``: train, test accuracy, weights + manifest
* :mod:`.manifest`   weights/manifest I/O and sha256 checks
* :mod:`.extractor`  :class:`DomainFeatures`, the harness's feature extractor
* :mod:`.naming`     :func:`metric_label`: ``fid`` -> ``FD_<name>`` etc. (never "FID")
"""

from __future__ import annotations

from generative_bench.evaluation.domain.naming import metric_label, metric_names, relabel

__all__ = ["DomainFeatures", "metric_label", "metric_names", "relabel"]


def __getattr__(name: str):
    if name == "DomainFeatures":  # imported lazily: it needs the harness's feature-extractor base
        from generative_bench.evaluation.domain.extractor import DomainFeatures

        return DomainFeatures
    raise AttributeError(name)
