"""Metric names in a domain feature space: ``FD_<extractor>``, never ``FID``.

FID, KID and the Inception Score are defined by the ImageNet Inception-v3 features. The same
formulas on the features of another network are different quantities; they are labelled with the
extractor's name so that a table can never pass them off as FID:

================  ===================================  ========================
harness key       in the Inception space               in a domain space "X"
================  ===================================  ========================
fid               fid                                  FD_X
fid_inf           fid_inf                              FD_inf_X
sfid              sfid                                 sFD_X
is_mean / is_std  is_mean / is_std                     CS_X / CS_std_X
is_inf            is_inf                               CS_inf_X
kid_mean/kid_std  kid_mean / kid_std                   KD_X / KD_std_X
precision ...     precision, recall, density, coverage precision_X, recall_X, ...
================  ===================================  ========================

(CS = classifier score, the Inception Score formula on the domain classifier's logits;
KD = kernel distance, KID's unbiased cubic-kernel MMD^2.)
"""

from __future__ import annotations

from typing import Any, Mapping


def domain_families() -> dict[str, str]:
    """Harness metric key -> family name written before the extractor name (from the declarations)."""
    from generative_bench.evaluation import suite  # noqa: F401  (the declarations)
    from generative_bench.evaluation.schema import outputs

    return {o.key: o.domain for o in outputs() if o.domain}


def __getattr__(name: str):
    if name == "DOMAIN_FAMILIES":
        return domain_families()
    raise AttributeError(name)


def is_domain(description: Mapping[str, Any]) -> bool:
    """True for an extractor description that asks for domain names (``kind: domain``)."""
    return str(description.get("kind", "")) == "domain"


def metric_label(description: Mapping[str, Any], metric: str) -> str:
    """The name under which ``metric`` (a harness key such as ``"fid"``) is reported.

    For a domain extractor (``description["kind"] == "domain"``) the family + extractor name, e.g.
    ``metric_label({"kind": "domain", "name": "cifar10-resnet"}, "fid") == "FD_cifar10-resnet"``;
    an explicit ``description["metric_names"][metric]`` wins; anything else is returned unchanged
    (the Inception extractor keeps the standard names).
    """
    names = description.get("metric_names") or {}
    if metric in names:
        return str(names[metric])
    if not is_domain(description):
        return metric
    family = domain_families().get(metric, metric)
    return f"{family}_{description.get('name')}"


def metric_names(name: str, metrics: tuple[str, ...] | None = None) -> dict[str, str]:
    """``{harness key: label}`` of a domain extractor called ``name`` (for its ``describe()``)."""
    keys = tuple(domain_families()) if metrics is None else metrics
    return {m: metric_label({"kind": "domain", "name": name}, m) for m in keys}


def relabel(metrics: Mapping[str, Any], description: Mapping[str, Any]) -> dict[str, Any]:
    """A metrics dict with every key passed through :func:`metric_label`."""
    return {metric_label(description, k): v for k, v in metrics.items()}


__all__ = ["domain_families", "is_domain", "metric_label", "metric_names", "relabel"]
