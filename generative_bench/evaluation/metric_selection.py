"""Which feature-space metrics an evaluation runs: the default list, or the user's own.

``eval.metrics: default`` (the shipped setting) runs ``eval.default_metrics`` minus the metrics
this evaluation cannot provide -- a feature space without 'spatial' features has no sFID, a
stats-only reference file has no KID or precision/recall, a metric made for a domain classifier
does not run on Inception -- and the record gets one note naming what was left out and why.
A list the user sets (``eval.metrics=[fid,sfid]``) is taken as asked: a metric in it that cannot
be provided is an :class:`InputError` naming the fix. ``eval.memorization=true`` adds the
memorization checks to either.
"""

from __future__ import annotations

from typing import Any, Callable

from generative_bench.errors import InputError
from generative_bench.evaluation import suite  # noqa: F401  (registers the metric declarations)
from generative_bench.evaluation.schema import Metric, metric

DEFAULT = "default"
FALLBACK_DEFAULT = ("fid", "sfid", "is", "kid", "prdc", "class_fd", "class_accuracy")


def is_default(eval_cfg: Any) -> bool:
    value = eval_cfg.get("metrics", DEFAULT)
    return isinstance(value, str) and value == DEFAULT


def requested(eval_cfg: Any) -> tuple[list[str], bool]:
    """(metric names, whether they are the default list) before any check."""
    value = eval_cfg.get("metrics", DEFAULT)
    if isinstance(value, str):
        if value != DEFAULT:
            raise InputError(f"eval.metrics={value!r}: must be 'default' or a list such as [fid,kid]")
        names, default = [str(n) for n in (eval_cfg.get("default_metrics") or FALLBACK_DEFAULT)], True
    else:
        names, default = [str(n) for n in (value or [])], False
    if bool(eval_cfg.get("memorization", False)) and "memorization" not in names:
        names.append("memorization")
    return names, default


def _gap(m: Metric, features: set[str] | None, reference: set[str] | None,
         extractor: dict[str, Any] | None) -> tuple[str, str] | None:
    """(kind, what is missing) when ``m`` cannot run here, else None."""
    miss = [k for k in m.needs if features is not None and k not in features]
    if miss:
        return "features", miss[0]
    miss = [k for k in m.reference_needs if reference is not None and k not in reference]
    if miss:
        return "reference", miss[0]
    if m.extractor_kinds and extractor is not None and extractor.get("kind") not in m.extractor_kinds:
        return "extractor", str(extractor.get("kind"))
    return None


def select(eval_cfg: Any, features: set[str] | None = None, reference: set[str] | None = None,
           extractor: dict[str, Any] | None = None, extractor_name: str | None = None,
           reference_fix: Callable[[str], str] | None = None) -> tuple[list[Metric], list[str]]:
    """The metrics to run and the notes for the record (at most one).

    ``features``: the feature keys the extractor provides; ``reference``: the reference arrays
    held (None = not known yet: not checked); ``reference_fix(key)`` words the fix for a missing
    reference array (a reference file knows how to get one)."""
    names, default = requested(eval_cfg)
    name = extractor_name or (extractor or {}).get("name") or "the feature extractor"
    explicit = set(_explicit(eval_cfg)) | ({"memorization"} if eval_cfg.get("memorization", False) else set())
    if not default:
        explicit |= set(names)
    chosen: list[Metric] = []
    left_out: list[str] = []
    for n in names:
        m = metric(n, "features")
        gap = _gap(m, features, reference, extractor)
        if gap is None:
            chosen.append(m)
            continue
        kind, what = gap
        if kind == "features":
            why = f"eval.features ({name}) has no '{what}' features"
            fix = f"remove {m.name} from eval.metrics (or choose a feature space that has them)"
        elif kind == "reference":
            why = f"the reference has no '{what}' arrays"
            fix = reference_fix(what) if reference_fix else f"remove {m.name} from eval.metrics"
        else:
            why = f"it needs a {' or '.join(m.extractor_kinds or ())} feature extractor, not {what!r}"
            fix = f"remove {m.name} from eval.metrics"
        if n in explicit:
            asked = "eval.memorization=true" if n == "memorization" and n not in _explicit(eval_cfg) else f"metric {n!r}"
            raise InputError(f"{asked} cannot be computed: {why}; {fix}")
        left_out.append(f"{m.name} ({why})")
    notes = [f"left out of the default metrics: {'; '.join(left_out)}"] if left_out else []
    return chosen, notes


def _explicit(eval_cfg: Any) -> list[str]:
    value = eval_cfg.get("metrics", DEFAULT)
    return [] if isinstance(value, str) else [str(n) for n in (value or [])]


__all__ = ["DEFAULT", "is_default", "requested", "select"]
