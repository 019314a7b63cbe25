"""One declaration per metric: what it needs, what it outputs and how each output is shown.

A :class:`Metric` names the features it needs, its outputs and the pure function that computes
them; an :class:`Output` gives a number's key in the results record, its display label, which
way is better, its name in a domain feature space (``FD`` for ``fid``: the same formula on
another network's features is not FID), its display scale and footnote. The harness computes
the metrics listed in ``eval.metrics`` (image data) or ``eval.toy_metrics`` (2-D data) from this
registry, and the leaderboard, the domain naming, the regression gate and the plots read their
columns, labels and directions from it, so adding a metric is one :func:`register` call.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

from generative_bench.errors import InputError

SPACES = ("features", "toy")


@dataclass(frozen=True)
class Output:
    """One number a metric writes into the record's ``metrics``."""

    key: str
    label: str
    better: str = ""          # "lower" | "higher" | "" (no best value)
    domain: str | None = None  # family name in a domain feature space; None = no such variant (label unchanged)
    column: str | None = None  # short leaderboard id (default: key), e.g. "is" for "is_mean"
    scale: float = 1.0         # shown multiplied by this in the Inception space
    digits: int = 2
    note: str | None = None    # footnote of the column
    spread: str | None = None  # key of the output holding this number's spread (e.g. "is_std")
    shown: bool = True         # False for spreads and bookkeeping outputs: no column of their own
    headline: bool = True      # False: a variant or secondary view, shown in the full tables only
    quality_rank: int | None = None  # the table's headline quality metric is its present output of lowest rank
    # (panel, axis) in the fidelity–diversity figure: panel "precision-recall" or "fidelity", axis "x" or "y";
    # each panel plots its first present x against its first present y (the knob value when no x is present)
    tradeoff: tuple[str, str] | None = None

    @property
    def column_id(self) -> str:
        return self.column or self.key


@dataclass(frozen=True)
class Options:
    """A metric's settings, declared once: each field is an ``eval.<field>`` key with its default.

    Subclasses are frozen dataclasses; ``CHOICES`` maps a field to its allowed values. ``read(cfg)``
    takes the eval config's values (the defaults where a key is absent) and :meth:`problems` says
    what is wrong with them (the pre-flight validation lists them all)."""

    CHOICES: ClassVar[dict[str, tuple]] = {}

    @classmethod
    def read(cls, cfg: Any) -> "Options":
        values = {}
        for f in dataclasses.fields(cls):
            v = cfg.get(f.name, f.default) if cfg is not None else f.default
            values[f.name] = v
        return cls(**values)

    def problems(self) -> list[str]:
        out = []
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            choices = self.CHOICES.get(f.name)
            if choices is not None:
                if v not in choices:
                    out.append(f"eval.{f.name}={v!r} is not one of {list(choices)}; pick one")
            elif f.type in ("int", int) and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                out.append(f"eval.{f.name}={v!r}: must be an integer >= 1")
        return out


@dataclass
class MetricInputs:
    """Everything a metric may read; each metric uses what it declared."""

    cfg: Any                                # the eval config (metric settings)
    seed: int = 0
    features: Mapping[str, Any] | None = None   # sample features: pool / spatial / logits
    reference: Mapping[str, Any] | None = None  # reference arrays: mu, sigma, pool, ..., labels
    labels: Any = None                          # the samples' intended classes (conditional samplers)
    samples: Any = None                         # 2-D points (toy data)
    reference_points: Any = None                # held-out 2-D points (toy data)
    mixture: Any = None                         # the exact 2-D mixture (toy data)
    extractor: Mapping[str, Any] = field(default_factory=dict)  # the feature extractor's description
    memorization: Mapping[str, Any] | None = None   # training and held-out features (memorization checks)
    # the samples' canonical order: the permutation that sorts them by their images' bytes (exact,
    # whatever the batch size or ranks that made the features); None where the images are not known
    order: Any = None


@dataclass(frozen=True)
class Metric:
    name: str
    space: str                                        # "features" | "toy"
    outputs: tuple[Output, ...]
    compute: Callable[[MetricInputs], tuple[dict[str, float], dict[str, Any]]]
    needs: tuple[str, ...] = ()                       # feature keys (features space)
    conditional: bool = False                         # needs the samples' labels; skipped without them
    description: str = ""
    reference_needs: tuple[str, ...] = ()             # reference arrays it reads (mu, mu_s, pool, labels)
    extractor_kinds: tuple[str, ...] | None = None    # extractor kinds it applies to (None: any)
    # bootstrap replicates: None = not bootstrapped; "resample" = recompute on resampled features;
    # or a callable (inputs, index arrays) -> list of output dicts (see evaluation.bootstrap)
    bootstrap: Any = None
    options: type[Options] | None = None               # its settings (eval.<field>), declared once

    def check_features(self, available: set[str] | None) -> None:
        missing = [k for k in self.needs if available is not None and k not in available]
        if missing:
            raise InputError(f"metric {self.name!r} needs '{missing[0]}' features, which this feature extractor does "
                             f"not provide; remove {self.name} from eval.metrics")


_METRICS: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    """Add ``metric`` to the registry (its name and output keys must be new)."""
    if metric.space not in SPACES:
        raise ValueError(f"metric space must be one of {SPACES}, got {metric.space!r}")
    if metric.name in _METRICS:
        raise ValueError(f"metric {metric.name!r} is already registered")
    taken = {o.key for m in _METRICS.values() for o in m.outputs}
    clash = [o.key for o in metric.outputs if o.key in taken]
    if clash:
        raise ValueError(f"output key(s) {clash} of metric {metric.name!r} are already declared")
    _METRICS[metric.name] = metric
    return metric


def unregister(name: str) -> None:
    _METRICS.pop(name, None)


def metric(name: str, space: str | None = None) -> Metric:
    m = _METRICS.get(name)
    if m is None or (space is not None and m.space != space):
        choices = sorted(k for k, v in _METRICS.items() if space is None or v.space == space)
        where = "eval.metrics" if space == "features" else "eval.toy_metrics" if space == "toy" else "the metrics"
        raise InputError(f"unknown metric {name!r} in {where}; choose from {choices}")
    return m


def metrics(space: str | None = None) -> list[Metric]:
    return [m for m in _METRICS.values() if space is None or m.space == space]


def outputs(shown_only: bool = False) -> list[Output]:
    """Every declared output in registration order."""
    return [o for m in _METRICS.values() for o in m.outputs if o.shown or not shown_only]


def output(key: str) -> Output | None:
    return next((o for o in outputs() if o.key == key), None)


def spread_keys() -> set[str]:
    return {o.spread for o in outputs() if o.spread}


def domain_label(key: str, extractor_name: str) -> str:
    """``FD_<extractor>`` for ``fid`` etc.; the key itself when it has no domain variant."""
    o = output(key)
    if o is None:
        return key
    if o.domain is None:
        return o.label
    return f"{o.domain}_{extractor_name}"


def tradeoff_panels() -> list[tuple[str, list[str], list[str]]]:
    """(panel, x output keys, y output keys) of the fidelity–diversity figure, in declaration order."""
    panels: dict[str, tuple[list[str], list[str]]] = {}
    for o in outputs(shown_only=True):
        if o.tradeoff:
            panel, axis = o.tradeoff
            xs, ys = panels.setdefault(panel, ([], []))
            (xs if axis == "x" else ys).append(o.column_id)
    return [(p, xs, ys) for p, (xs, ys) in panels.items()]


__all__ = ["Metric", "MetricInputs", "Options", "Output", "SPACES", "domain_label", "metric", "metrics", "output",
           "outputs", "register", "spread_keys", "tradeoff_panels", "unregister"]
