"""Leaderboard tables: mean ± std over seeds, one table per evaluation protocol.

Rows are (backend name, configuration overrides, training budget, sampler settings); the seeds of
a row are the runs that share all four. Numbers from different protocols (dataset variant,
number of samples, reference set, feature extractor, metric settings) never share a table.
Spread is the sample standard deviation over seeds (ddof=1); a single run shows its value alone.

Each table also has a headline (:func:`headline`): one row per backend at its headline operating
point (see :data:`HEADLINE_RULE`), with the protocol's main columns and a caption generated from
the numbers; the full sweep stays in the table's frame.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from generative_bench.reporting.collect import Collection, knob_of, measurements, setting_text
from generative_bench.reporting.measures import MEASURES, NFE, NLL, SAMPLING_SPEED, TRAIN_STEPS, TRAIN_WALL, Measure

NOT_COMPARABLE = "NOT comparable to published figures"


@dataclass(frozen=True)
class MetricSpec:
    """A leaderboard column: where to find the number, how to show it, which way is better.

    Built from the metric declarations (:mod:`generative_bench.evaluation.schema`), never written
    by hand: ``key`` is the column id, ``source`` the record key it reads."""

    key: str
    label: str
    better: str  # "lower" | "higher" | "" (no best value)
    source: str
    scale: float = 1.0
    digits: int = 2
    note: str | None = None
    domain: str | None = None
    headline: bool = True
    quality_rank: int | None = None

    @property
    def aliases(self) -> tuple[str, ...]:
        return (self.source,)


def metric_specs() -> list[MetricSpec]:
    """One column per declared, shown metric output, in declaration order (read at call time)."""
    from generative_bench.evaluation import suite  # noqa: F401  (the declarations)
    from generative_bench.evaluation.schema import outputs

    return [MetricSpec(o.column_id, o.label, o.better, o.key, o.scale, o.digits, o.note, o.domain, o.headline,
                       o.quality_rank) for o in outputs(shown_only=True)]


def __getattr__(name: str):
    if name == "METRICS":  # the current declarations, as a tuple
        return tuple(metric_specs())
    raise AttributeError(name)


_SPREAD_SUFFIXES = ("_std", "_sem", "_err", "_ci")


@dataclass
class ProtocolTable:
    """One table: rows that share an evaluation protocol."""

    pid: str
    protocol: dict[str, Any]
    rows: list[dict[str, Any]]  # the flat measurements behind the table (plots read them)
    frame: pd.DataFrame  # numeric: one row per (backend, config, budget, sampler)
    metrics: list[MetricSpec]
    comparable: bool
    reasons: list[str]
    warnings: list[str]
    devices: list[str]
    benchmarks: list[str]
    nll_bounds: list[str]
    toy: bool

    @property
    def title(self) -> str:
        p = self.protocol
        feat = p.get("features") or {}
        name = feat.get("name") or feat.get("extractor") or feat.get("model") or ("data space" if self.toy else "features")
        ds = p.get("dataset") or "dataset?"
        variant = f" ({p['variant']})" if p.get("variant") else ""
        n = p.get("num_samples")
        return f"{self.pid}: {ds}{variant}, {n if n is not None else '?'} samples, {name}"

    @property
    def short_title(self) -> str:
        """The title without the dataset variant (the short fingerprint states it)."""
        p = self.protocol
        feat = p.get("features") or {}
        name = feat.get("name") or feat.get("extractor") or feat.get("model") or ("data space" if self.toy else "features")
        n = p.get("num_samples")
        return f"{self.pid}: {p.get('dataset') or 'dataset?'}, {n if n is not None else '?'} samples, {name}"

    def label(self, spec: MetricSpec) -> str:
        """The column name of ``spec`` in this table: ``FD_<extractor>`` etc. in a domain feature space.

        The same formulas on another network's features are not FID/KID/IS, so a table made with a
        domain extractor (``kind: domain``) never shows those names.
        """
        from generative_bench.evaluation.domain.naming import metric_label

        feats = self.protocol.get("features") or {}
        name = metric_label(feats, spec.source)
        return name if name != spec.source else spec.label


@dataclass
class Leaderboard:
    tables: list[ProtocolTable]
    failed: pd.DataFrame
    comparable: bool
    reasons: list[str] = field(default_factory=list)


def _metric_value(metrics: dict[str, float], spec: MetricSpec) -> float | None:
    v = metrics.get(spec.source)
    if v is not None and math.isfinite(float(v)):
        return float(v) * spec.scale
    return None


def _extra_specs(rows: list[dict[str, Any]], specs: list[MetricSpec]) -> list[MetricSpec]:
    """Metrics a record holds that no declaration covers (shown raw, no best value)."""
    from generative_bench.evaluation.schema import outputs

    known = {o.key for o in outputs()}
    seen: dict[str, None] = {}
    for r in rows:
        for k in r["metrics"]:
            if k not in known and not k.endswith(_SPREAD_SUFFIXES):
                seen[k] = None
    return [MetricSpec(f"x:{k}", k, "", k, digits=4) for k in seen]


def _stats(values: list[float]) -> tuple[float, float, int]:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return math.nan, math.nan, 0
    std = float(np.std(vals, ddof=1)) if len(vals) > 1 else math.nan
    return float(np.mean(vals)), std, len(vals)


def _nll_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """NLL over the distinct runs of a group: values, or 'undefined' with its reason, or missing."""
    runs = {r["run_dir"]: r for r in rows}.values()
    values, reasons, bounds = [], [], []
    for r in runs:
        nll = r["nll"]
        if not isinstance(nll, dict):
            continue
        if nll.get("defined") is False:
            reasons.append(str(nll.get("reason") or "not defined for this model family"))
        elif nll.get("bpd") is not None:
            values.append(float(nll["bpd"]))
            split = f" on the {nll['split']} split" if nll.get("split") else ""
            ex = f" ({nll['examples']} examples)" if nll.get("examples") else ""
            floor = (f"; exact data NLL floor {nll['data_floor_bpd']:.3f} bits/dim"
                     if isinstance(nll.get("data_floor_bpd"), (int, float)) else "")
            bounds.append(f"{r['backend']}: {nll.get('bound') or 'bound not recorded'}{split}{ex}{floor}")
    mean, std, n = _stats(values)
    status = "ok" if n else ("undefined" if reasons else "missing")
    return {"nll_mean": mean, "nll_std": std, "nll_n": n, "nll_status": status,
            "nll_reason": reasons[0] if reasons and not n else "", "nll_bounds": sorted(set(bounds))}


def _budget_label(budget_json: str) -> str:
    budget = json.loads(budget_json) if budget_json else {}
    items = [f"{k}={v}" for k, v in sorted(budget.items()) if v is not None]
    return ", ".join(items)


def _aggregate(rows: list[dict[str, Any]], specs: list[MetricSpec]) -> pd.DataFrame:
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["backend"], r["config"], r["budget"], r["sampler_key"]), []).append(r)
    out = []
    for (backend, config, budget, _), grp in groups.items():
        seeds = sorted({r["seed"] for r in grp}, key=lambda s: (str(type(s)), s))
        row: dict[str, Any] = {
            "backend": backend, "display": grp[0].get("display") or backend, "family": grp[0]["family"],
            "sampler": grp[0]["sampler"],
            "method": grp[0].get("sampler_method", ""), "config": config,
            "budget": _budget_label(budget), "n": len({r["run_dir"] for r in grp}),
            "seeds": ", ".join(str(s) for s in seeds), "comparable": all(r["comparable"] for r in grp),
            "run_dirs": sorted({r["run_dir"] for r in grp}),
            "knob": grp[0].get("knob", ""), "knob_value": grp[0].get("knob_value"),
            "knob_names": sorted(grp[0].get("knobs") or {}),
            "knob_neutrals": {k: v.get("neutral") for k, v in (grp[0].get("knobs") or {}).items()},
            "knob_symbols": {k: v.get("symbol") for k, v in (grp[0].get("knobs") or {}).items()},
            "budget_json": budget, "sampler_key": grp[0]["sampler_key"],
            "settings": dict(((grp[0].get("evaluation") or {}).get("sampler") or {}).get("settings") or {}),
            "default": any(is_default_evaluation(r) for r in grp),
            "order": min(_evaluation_index(r) for r in grp),
        }
        for spec in specs:
            m, s, n = _stats([_metric_value(r["metrics"], spec) for r in grp])
            row.update({f"{spec.key}_mean": m, f"{spec.key}_std": s, f"{spec.key}_n": n})
            row.update(_interval(grp, spec))
        row.update(_nll_summary(grp))
        for measure in MEASURES:
            m, s, n = _stats([r[measure.source] for r in grp if r.get(measure.source) is not None])
            row.update({f"{measure.key}_mean": m, f"{measure.key}_std": s})
        nfes = sorted({r[NFE.source] for r in grp if r.get(NFE.source) is not None})
        row[NFE.key] = nfes[0] if len(nfes) == 1 else (math.nan if not nfes else float(np.mean(nfes)))
        out.append(row)
    frame = pd.DataFrame(out)
    return frame.sort_values(["backend", "config", "budget", "nfe", "sampler"], na_position="last",
                             kind="stable").reset_index(drop=True)


def _interval(grp: list[dict[str, Any]], spec: MetricSpec) -> dict[str, float]:
    """``{key}_lo/_hi``: the bootstrap interval (``eval.bootstrap``) of a single-run cell, scaled as shown."""
    if len(grp) != 1:
        return {}
    iv = (grp[0].get("intervals") or {}).get(spec.source) or {}
    lo, hi = iv.get("lo"), iv.get("hi")
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (lo, hi)):
        return {}
    return {f"{spec.key}_lo": float(lo) * spec.scale, f"{spec.key}_hi": float(hi) * spec.scale,
            f"{spec.key}_boot": int(iv.get("replicates") or 0)}


def _evaluation_index(row: dict[str, Any]) -> int:
    """Position of a measurement's evaluation in its run's record (0 = the first one made)."""
    rec = row.get("record")
    evals = (getattr(rec, "data", None) or {}).get("evaluations")
    ev = row.get("evaluation")
    if isinstance(evals, list) and ev:
        for i, e in enumerate(evals):
            if e is ev:
                return i
    return 0


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b or (a is not None and b is not None and str(a) == str(b))


def _default_sampling(record: Any) -> dict[str, Any] | None:
    """The model's default sampler settings as the run recorded them (``config.model.sampling``)."""
    cfg = (getattr(record, "data", None) or {}).get("config")
    model = cfg.get("model") if isinstance(cfg, dict) else None
    sampling = model.get("sampling") if isinstance(model, dict) else None
    return sampling if isinstance(sampling, dict) else None


def _is_neutral(evaluation: dict[str, Any]) -> bool:
    return knob_of(evaluation)[0] == ""


def _matches_default(evaluation: dict[str, Any], default: dict[str, Any]) -> bool:
    settings = (evaluation.get("sampler") or {}).get("settings") or {}
    if not isinstance(settings, dict):
        return False
    return all(_same_value(settings.get(k), v) for k, v in default.items() if v is not None)


def is_default_evaluation(row: dict[str, Any]) -> bool:
    """True when a measurement is its run's default sampler setting (the headline rule's first part).

    That is the run's first evaluation whose fidelity–diversity knobs are all at their neutral
    value and whose sampler settings equal the model's default ``sampling`` (settings the default
    leaves open, ``None``, match anything); a record without a recorded default has its first
    evaluation as default when that one's knobs are neutral.
    """
    ev = row.get("evaluation")
    rec = row.get("record")
    if not ev or rec is None:
        return False
    evals = [e for e in ((getattr(rec, "data", None) or {}).get("evaluations") or []) if isinstance(e, dict)]
    default = _default_sampling(rec)
    if default is None:
        return bool(evals) and evals[0] is ev and _is_neutral(ev)
    first = next((e for e in evals if _is_neutral(e) and _matches_default(e, default)), None)
    return first is ev


def _protocol_sort_key(protocol: dict[str, Any]) -> tuple:
    return (str(protocol.get("dataset")), str(protocol.get("variant")), -(protocol.get("num_samples") or 0),
            json.dumps(protocol, sort_keys=True, default=str))


def failed_frame(collection: Collection) -> pd.DataFrame:
    def message(p) -> str:
        extra = (f" ({p.evaluations_recorded} evaluation(s) recorded before it stopped; not in the tables)"
                 if p.evaluations_recorded else "")
        return (p.error or "") + extra

    rows = [{"run folder": collection.display_path(p.run_dir), "status": p.status, "stage": p.stage or "",
             "backend": p.backend or "", "seed": "" if p.seed is None else p.seed,
             "overrides": " ".join(p.overrides), "error": message(p)}
            for p in sorted(collection.problems, key=lambda p: str(p.run_dir))]
    return pd.DataFrame(rows, columns=["run folder", "status", "stage", "backend", "seed", "overrides", "error"])


def build_leaderboard(collection: Collection) -> Leaderboard:
    """Group the collection's measurements by protocol and aggregate each group over seeds."""
    rows = measurements(collection)
    by_protocol: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_protocol.setdefault(r["protocol_key"], []).append(r)
    ordered = sorted(by_protocol.values(), key=lambda rs: _protocol_sort_key(rs[0]["protocol"]))
    tables, all_reasons = [], []
    for i, prow in enumerate(ordered, 1):
        all_specs = metric_specs()
        specs = [s for s in all_specs if any(_metric_value(r["metrics"], s) is not None for r in prow)]
        if str((prow[0]["protocol"].get("features") or {}).get("kind")) == "domain":
            # a domain space has its own scale: display scales (KID x10^3) belong to the Inception space
            specs = [dataclasses.replace(s, scale=1.0, digits=max(s.digits, 3), note=None) if s.scale != 1.0 else s
                     for s in specs]
        specs += _extra_specs(prow, all_specs)
        frame = _aggregate(prow, specs)
        reasons = sorted({w for r in prow if not r["comparable"] for w in r["warnings"]})
        if any(not r["comparable"] for r in prow) and not reasons:
            reasons = ["the evaluation recorded comparable=false"]
        all_reasons += reasons
        bounds = sorted({b for lst in frame["nll_bounds"] for b in lst}) if len(frame) else []
        tables.append(ProtocolTable(
            pid=f"P{i}", protocol=prow[0]["protocol"], rows=prow, frame=frame, metrics=specs,
            comparable=all(r["comparable"] for r in prow), reasons=reasons,
            warnings=sorted({w for r in prow for w in r["warnings"]}),
            devices=sorted({str(r["device"]) for r in prow if r["device"]}),
            benchmarks=sorted({str(r["benchmark"]) for r in prow if r["benchmark"]}), nll_bounds=bounds,
            toy=any(r["toy"] for r in prow)))
    return Leaderboard(tables=tables, failed=failed_frame(collection),
                       comparable=all(t.comparable for t in tables), reasons=sorted(set(all_reasons)))


# ---------------------------------------------------------------------------------------------
# display: formatted strings with best values marked, per output style

#: best values are wrapped in these placeholders; each renderer turns them into its own bold
BOLD_OPEN, BOLD_CLOSE = "\x01", "\x02"

#: the headline operating point of each backend, as the reports state it
HEADLINE_RULE = ("Headline operating point, per backend: the model's default sampler setting, i.e. the run's first "
                 "evaluation whose fidelity–diversity knobs are all neutral and whose sampler settings equal the "
                 "model's default `sampling`; a backend without such an evaluation (marked †) is shown at its best "
                 "{quality} among its settings with the largest NFE. The full sweep tables list every setting.")

def values_note(table: "ProtocolTable", specs: list["MetricSpec"] | None = None, nll: bool = True) -> str:
    """How the table's values read, with which way is better for each of its columns (declared)."""
    specs = table.metrics if specs is None else specs
    lower = [table.label(s) for s in specs if s.better == "lower"] + (["NLL"] if nll else [])
    higher = [table.label(s) for s in specs if s.better == "higher"]
    sides = [f"lower is better for {_join(lower)}" if lower else "", f"higher for {_join(higher)}" if higher else ""]
    return ("Values are mean ± sample standard deviation (ddof=1) over n seeds; a single value when n = 1. "
            f"Best value per metric in bold ({'; '.join(x for x in sides if x)}).")
NA_NOTE = "n/a: not measured in this run."
INTERVAL_NOTE = ("[lo, hi]: bootstrap confidence interval of a single run (the generated samples resampled with "
                 "replacement, features reused, reference fixed; bias-corrected percentile, level in the record's "
                 "protocol.bootstrap).")
NFE_NOTE = NFE.note


def fmt_value(mean: float, std: float, digits: int) -> str:
    if mean is None or not math.isfinite(mean):
        return "n/a"
    text = f"{mean:.{digits}f}"
    if std is not None and math.isfinite(std):
        text += f" ± {std:.{digits}f}"
    return text


def _fmt_count(v: float) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:,.0f}"


def _best(values: pd.Series, better: str) -> float | None:
    vals = values.dropna()
    if vals.empty or not better or len(values) < 2:
        return None
    return float(vals.min() if better == "lower" else vals.max())


def _is_best(value: float, best: float | None, digits: int) -> bool:
    return best is not None and value == value and round(value, digits) == round(best, digits)


def backend_display_name(name: str, display: str | None = None) -> str:
    """How captions and figures name a backend: the display name its record declares (the model
    preset's ``display_name``, else its family's), else the name it was recorded under."""
    return str(display or name)


@dataclass
class Display:
    frame: pd.DataFrame
    notes: list[str]


class _Notes(list):
    """Footnotes in order of first use; ``mark`` returns the ``[n]`` marker of a note."""

    def mark(self, text: str) -> str:
        if text not in self:
            self.append(text)
        return f"[{self.index(text) + 1}]"


def _metric_column(table: ProtocolTable, f: pd.DataFrame, spec: MetricSpec, notes: _Notes) -> tuple[str, list[str]]:
    label = table.label(spec) + (f" {notes.mark(spec.note)}" if spec.note else "")
    best = _best(f[f"{spec.key}_mean"], spec.better)
    cells = []
    los = f[f"{spec.key}_lo"] if f"{spec.key}_lo" in f else [math.nan] * len(f)
    his = f[f"{spec.key}_hi"] if f"{spec.key}_hi" in f else [math.nan] * len(f)
    for m, s, lo, hi in zip(f[f"{spec.key}_mean"], f[f"{spec.key}_std"], los, his):
        text = fmt_value(m, s, spec.digits)
        if text != "n/a" and lo == lo and hi == hi:  # a bootstrap interval (single run)
            text += f" [{lo:.{spec.digits}f}, {hi:.{spec.digits}f}] {notes.mark(INTERVAL_NOTE)}"
        if text == "n/a":
            text += f" {notes.mark(NA_NOTE)}"
        elif _is_best(m, best, spec.digits):
            text = f"{BOLD_OPEN}{text}{BOLD_CLOSE}"
        cells.append(text)
    return label, cells


def _nll_column(table: ProtocolTable, f: pd.DataFrame, notes: _Notes) -> tuple[str, list[str]] | None:
    if not (f["nll_status"] != "missing").any():
        return None
    bounds = sorted({b for lst in f["nll_bounds"] for b in lst})
    if (f["nll_status"] == "ok").any() or bounds:
        bound_note = ("NLL in bits/dim (an upper bound on the negative log-likelihood, lower is better): "
                      + ("; ".join(bounds) if bounds else "bound not recorded") + ".")
        label = f"{NLL.label} {notes.mark(bound_note)}"
    else:  # no value to explain (e.g. a GAN alone): the cells' own notes say why
        label = NLL.label
    best = _best(f["nll_mean"].where(f["nll_status"] == "ok"), "lower")
    cells = []
    for m, s, st, reason in zip(f["nll_mean"], f["nll_std"], f["nll_status"], f["nll_reason"]):
        if st == "undefined":
            cells.append(f"— {notes.mark('—: ' + reason + '.')}")
        elif st == "missing":
            cells.append(f"n/a {notes.mark(NA_NOTE)}")
        else:
            text = fmt_value(m, s, 3)
            cells.append(f"{BOLD_OPEN}{text}{BOLD_CLOSE}" if _is_best(m, best, 3) else text)
    return label, cells


def _measure_column(table: ProtocolTable, f: pd.DataFrame, measure: Measure, notes: _Notes) -> tuple[str, list[str]]:
    """A declared run-level measure (measures.py): mean ± std over seeds, best in bold where it
    has a better direction; sampling speed names the devices it was measured on."""
    note = measure.note
    if measure is SAMPLING_SPEED:
        note += (f", on {'; '.join(table.devices)}" if table.devices else "") + "."
    label = measure.label + (f" {notes.mark(note)}" if note else "")
    scale = 1 / 60 if measure.minutes else 1
    best = _best(f[f"{measure.key}_mean"], measure.better)
    cells = []
    for m, s in zip(f[f"{measure.key}_mean"], f[f"{measure.key}_std"]):
        if not measure.better and not measure.minutes:  # counts
            cells.append(_fmt_count(m))
            continue
        text = fmt_value(m * scale, s * scale if s == s else s, measure.digits)
        cells.append(f"{BOLD_OPEN}{text}{BOLD_CLOSE}" if _is_best(m, best, measure.digits) else text)
    return label, cells


def _nfe_column(f: pd.DataFrame, notes: _Notes) -> tuple[str, list[str]]:
    return f"{NFE.label} {notes.mark(NFE.note)}", [_fmt_count(v) for v in f[NFE.key]]


def display_frame(table: ProtocolTable, frame: pd.DataFrame | None = None, compact: bool = False) -> Display:
    """Formatted table (strings) with footnote markers; best values wrapped in BOLD_OPEN/CLOSE.

    ``frame`` (rows of ``table.frame``, e.g. one backend's sweep) replaces the table's rows; with
    ``compact`` the columns that are constant over those rows (Backend, Config, Budget,
    Comparable) are left out and the NOT-comparable note is not repeated (the report states it
    once at the top).
    """
    f = table.frame if frame is None else frame
    notes = _Notes()

    def varies(col: str) -> bool:
        return len(set(map(str, f[col]))) > 1

    cols: dict[str, list[str]] = {}
    flag = " ⚠" if not table.comparable and not compact else ""
    if not compact or varies("backend"):
        cols["Backend"] = [f"{b}{flag if not c else ''}" for b, c in zip(f["backend"], f["comparable"])]
    if f["config"].astype(bool).any() and (not compact or varies("config")):
        cols["Config"] = list(f["config"])
    if f["budget"].astype(bool).any() and (not compact or varies("budget")):
        cols["Budget"] = list(f["budget"])
    if compact:
        cols["Setting"] = [short_setting(st) if sampler != "not evaluated" else sampler
                           for st, sampler in zip(f["settings"], f["sampler"])]
    else:
        cols["Sampler"] = list(f["sampler"])
    cols["n (seeds)"] = [f"{n} ({s})" for n, s in zip(f["n"], f["seeds"])]
    for spec in table.metrics:
        label, cells = _metric_column(table, f, spec, notes)
        cols[label] = cells
    nll = _nll_column(table, f, notes)
    if nll:
        cols[nll[0]] = nll[1]
    for measure in MEASURES:
        label, cells = _measure_column(table, f, measure, notes)
        cols[label] = cells
        if measure is SAMPLING_SPEED:  # NFE beside the speed it explains
            label, cells = _nfe_column(f, notes)
            cols[label] = cells
    if not compact or varies("comparable"):
        cols["Comparable"] = ["yes" if c else "NO ⚠" for c in f["comparable"]]
    if not table.comparable and not compact:
        notes.append(f"⚠ {NOT_COMPARABLE}: " + "; ".join(clean_reasons(table.reasons)) + ".")
    notes.append(values_note(table, nll=bool(nll)))
    return Display(pd.DataFrame(cols), list(notes))


# ------------------------------------------------------------------------------------ headline

def quality_spec(table: ProtocolTable) -> MetricSpec | None:
    """The table's headline quality metric: its declared output of lowest ``quality_rank``."""
    ranked = [s for s in table.metrics if s.quality_rank is not None]
    return min(ranked, key=lambda s: s.quality_rank) if ranked else None


def headline_metrics(table: ProtocolTable) -> list[MetricSpec]:
    """The metric columns of the headline: declared headline outputs with a better direction."""
    return [s for s in table.metrics if s.better and not s.key.startswith("x:") and s.headline]


@dataclass
class Headline:
    """One row per backend (and configuration / budget) at its headline operating point.

    ``frame`` holds rows of ``table.frame`` plus ``label`` (the row's name) and ``rule``
    (``"default"`` or ``"fallback"``, see :data:`HEADLINE_RULE`)."""

    table: ProtocolTable
    frame: pd.DataFrame
    metrics: list[MetricSpec]
    quality: MetricSpec | None

    @property
    def rule(self) -> str:
        return HEADLINE_RULE.format(quality=_prose(self.table.label(self.quality)) if self.quality
                                    else "first quality metric")

    @property
    def caption(self) -> str:
        return headline_caption(self)


def _pick_fallback(grp: pd.DataFrame, quality: MetricSpec | None) -> int:
    """Index (into ``grp``) of the best quality row among the rows with the largest NFE."""
    sub = grp[grp["nfe"] == grp["nfe"].max()] if grp["nfe"].notna().any() else grp
    if quality is not None:
        vals = sub[f"{quality.key}_mean"].dropna()
        if len(vals):
            return vals.idxmin() if quality.better == "lower" else vals.idxmax()
    return sub.sort_values("order", kind="stable").index[0]


def headline(table: ProtocolTable) -> Headline:
    """The table's headline rows, chosen by :data:`HEADLINE_RULE`, in the order the runs were made."""
    f = table.frame
    quality = quality_spec(table)
    first_seen: dict[str, int] = {}
    for r in table.rows:
        first_seen.setdefault(r["backend"], len(first_seen))
    chosen, labels, rules = [], [], []
    if len(f):
        groups = list(f.groupby(["backend", "config", "budget"], sort=False))
        per_backend: dict[str, int] = {}
        for (backend, _, _), _grp in groups:
            per_backend[backend] = per_backend.get(backend, 0) + 1
        for (backend, config, budget), grp in groups:
            defaults = grp[grp["default"]]
            if len(defaults):
                idx = defaults.sort_values(["n", "order"], ascending=[False, True], kind="stable").index[0]
                rule = "default"
            else:
                idx, rule = _pick_fallback(grp, quality), "fallback"
            extra = ", ".join(x for x in (config, budget) if x) if per_backend[backend] > 1 else ""
            chosen.append(idx)
            labels.append(f"{backend} ({extra})" if extra else str(backend))
            rules.append(rule)
    frame = f.loc[chosen].assign(label=labels, rule=rules) if chosen else f.assign(label=[], rule=[])
    frame = frame.assign(_o=[first_seen.get(b, len(first_seen)) for b in frame["backend"]])
    frame = frame.sort_values(["_o", "label"], kind="stable").drop(columns="_o").reset_index(drop=True)
    return Headline(table=table, frame=frame, metrics=headline_metrics(table), quality=quality)


def short_setting(settings: dict[str, Any]) -> str:
    """``ddim, steps=50, clip_denoised=True, eta=0.0`` for sampler settings; ``default`` with none."""
    if not settings:
        return "default"
    items = [str(settings["method"])] if settings.get("method") is not None else []
    items += [setting_text(k, v) for k, v in sorted(settings.items()) if k != "method"]
    return ", ".join(items)


def _compute_cell(row: pd.Series) -> str:
    """Training compute of a row: steps × batch size, or wall minutes under a time budget."""
    budget = json.loads(row["budget_json"]) if row.get("budget_json") else {}
    if budget.get("max_minutes") is not None:
        m, s = row[f"{TRAIN_WALL.key}_mean"], row[f"{TRAIN_WALL.key}_std"]
        text = fmt_value(m / 60, s / 60 if s == s else s, 1)
        return text if text == "n/a" else f"{text} min"
    steps = row[f"{TRAIN_STEPS.key}_mean"]
    if steps is None or not math.isfinite(steps):
        return "n/a"
    batch = budget.get("batch_size")
    return f"{steps:,.0f} × {batch}" if batch else f"{steps:,.0f} steps"


def _compute_note(h: Headline) -> str:
    budgets = sorted(set(h.frame["budget"]))
    text = ("Training compute: optimiser steps × batch size; wall-clock minutes where the budget was a time "
            "limit (max_minutes).")
    if len(budgets) == 1 and budgets[0]:
        text += f" Budget of every row: {budgets[0]}."
    elif len(budgets) > 1:
        text += " Budgets: " + "; ".join(f"{lab}: {b or 'not recorded'}" for lab, b in
                                         zip(h.frame["label"], h.frame["budget"])) + "."
    return text


def headline_display(h: Headline) -> Display:
    """The headline table as strings: best values (among the headline rows) in BOLD_OPEN/CLOSE."""
    f, table = h.frame, h.table
    notes = _Notes()
    cols: dict[str, list[str]] = {"Backend": list(f["label"])}
    cols[f"Setting {notes.mark(h.rule)}"] = [short_setting(s) + (" †" if r == "fallback" else "")
                                             for s, r in zip(f["settings"], f["rule"])]
    cols["n (seeds)"] = [f"{n} ({s})" for n, s in zip(f["n"], f["seeds"])]
    for spec in h.metrics:
        label, cells = _metric_column(table, f, spec, notes)
        cols[label] = cells
    nll = _nll_column(table, f, notes)
    if nll:
        cols[nll[0]] = nll[1]
    label, cells = _nfe_column(f, notes)
    cols[label] = cells
    label, cells = _measure_column(table, f, SAMPLING_SPEED, notes)
    cols[label] = cells
    cols[f"Training {notes.mark(_compute_note(h))}"] = [_compute_cell(r) for _, r in f.iterrows()]
    notes.append(values_note(table, h.metrics, nll=bool(nll)))
    return Display(pd.DataFrame(cols), list(notes))


def _prose(label: str) -> str:
    """A column label inside a sentence: ``Precision`` -> ``precision``; ``FID``, ``FD_x`` unchanged."""
    return label[0].lower() + label[1:] if len(label) > 1 and label[0].isupper() and label[1].islower() else label


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def headline_criteria(h: Headline) -> list[tuple[str, pd.Series, str, int]]:
    """(name in prose, values per headline row, better direction, digits) of each ranked column."""
    f, table = h.frame, h.table
    out = [(_prose(table.label(s)), f[f"{s.key}_mean"], s.better, s.digits) for s in h.metrics]
    if (f["nll_status"] == "ok").any():
        out.append((NLL.prose, f["nll_mean"].where(f["nll_status"] == "ok"), NLL.better, NLL.digits))
    out += [(m.prose, f[f"{m.key}_mean"], m.better, m.digits) for m in MEASURES if m.better]
    return out


def headline_winners(h: Headline) -> dict[str, list[int]]:
    """For each ranked column, the positions of the headline rows with its best value (ties: several)."""
    winners: dict[str, list[int]] = {}
    for name, values, better, digits in headline_criteria(h):
        vals = pd.to_numeric(values, errors="coerce").round(digits).reset_index(drop=True)
        if vals.notna().sum() < 2 or not better:
            continue
        best = vals.min() if better == "lower" else vals.max()
        winners[name] = [i for i, v in enumerate(vals) if v == best]
    return winners


def headline_caption(h: Headline) -> str:
    """One sentence naming each backend with the headline columns it is best at (ties say so)."""
    f = h.frame
    names = [backend_display_name(b, d) + (lab[len(str(b)):] if lab != str(b) else "")
             for b, d, lab in zip(f["backend"], f.get("display", f["backend"]), f["label"])]
    if len(f) < 2:
        return f"{names[0]} is the only backend in this table: nothing to rank." if names else "No rows."
    best: dict[int, list[str]] = {i: [] for i in range(len(f))}
    for name, rows in headline_winners(h).items():
        for i in rows:
            best[i].append(name + (" (tie)" if len(rows) > 1 else ""))
    parts = [f"{names[i]}: best {_join(best[i])}" for i in range(len(f)) if best[i]]
    none = [names[i] for i in range(len(f)) if not best[i]]
    if none:
        parts.append(f"{_join(none)}: best at none of these")
    return "; ".join(parts) + "."


# --------------------------------------------------------------------------------- fingerprint

_NOT_COMPARABLE_RE = re.compile(r"\s*(?:[:;,—–-]\s*)?" + re.escape(NOT_COMPARABLE) + r"\s*[.:;]?", re.I)


def clean_reasons(reasons: list[str]) -> list[str]:
    """Reasons without the NOT-comparable phrase itself (the report says it once), de-duplicated."""
    out: dict[str, None] = {}
    for r in reasons:
        text = _NOT_COMPARABLE_RE.sub("", str(r)).strip(" ;:,.—–-")
        if text:
            out[text] = None
    return list(out)


def weights_hash(table: ProtocolTable) -> str | None:
    """The feature extractor's weights sha256 as recorded (full), or None."""
    feats = table.protocol.get("features") or {}
    return next((str(v) for k, v in feats.items() if "sha" in str(k).lower() and v), None)


def fingerprint_summary(table: ProtocolTable) -> list[tuple[str, str]]:
    """The short, readable fingerprint: data, samples vs reference, extractor (name, weights hash,
    comparable). The full one is :func:`fingerprint_items`."""
    p = table.protocol
    data = str(p.get("dataset") or "dataset not recorded")
    if p.get("variant"):
        data += f" ({p['variant']})"
    data += f", {p.get('split') or '?'} split"
    if p.get("subset") is not None:
        data += f", class-balanced subset of {p['subset']:,}" if isinstance(p["subset"], int) else f", subset {p['subset']}"
    ref = p.get("reference") or {}
    n_ref = ref.get("examples") or ref.get("size")
    samples = f"{p.get('num_samples') if p.get('num_samples') is not None else '?'} generated per evaluation"
    if n_ref:
        samples += f" vs {n_ref:,} reference examples" if isinstance(n_ref, int) else f" vs {n_ref} reference examples"
        if ref.get("split"):
            samples += f" ({ref['split']} split)"
    feats = p.get("features") or {}
    comparable = "comparable: " + ("yes" if table.comparable else "no")
    if feats or not table.toy:
        name = feats.get("name") or feats.get("extractor") or feats.get("model") or "extractor not recorded"
        sha = weights_hash(table)
        extractor = str(name) + (f" · weights {sha[:12] if sha else 'not recorded'}" if sha or not table.toy else "")
        if feats.get("pretrained") is False:
            extractor += " (random initialisation)"
        extractor += f" · {comparable}"
    else:
        extractor = f"none, metrics in data space · {comparable}"
    items = [("Data", data), ("Samples", samples), ("Features", extractor)]
    if table.benchmarks:
        items.insert(0, ("Benchmark", ", ".join(table.benchmarks)))
    return items


def fingerprint_items(table: ProtocolTable) -> list[tuple[str, str]]:
    """(label, value) lines describing how a table's numbers were made."""
    p = table.protocol

    def readable(v: Any) -> str:
        """Nested values without JSON punctuation; long lists shortened to their first items."""
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k}: {readable(x)}" for k, x in v.items() if x is not None) + "}"
        if isinstance(v, list):
            shown = ", ".join(readable(x) for x in v[:4])
            return f"[{shown}{f', … ({len(v)} in all)' if len(v) > 4 else ''}]"
        return str(v)

    def kv(d: dict[str, Any]) -> str:
        return ", ".join(f"{k}={readable(v)}" for k, v in d.items() if v is not None) or "not recorded"

    variant = p.get("variant") or "variant not recorded"
    if "jpeg" in str(variant).lower():
        variant += " (a JPEG re-encoding, not the official CIFAR-10 pickle: FID against it is not the published protocol)"
    elif "official" in str(variant).lower():
        variant += " (the official release)"
    subset = ("full split" if p.get("subset") is None
              else f"class-balanced subset of {p['subset']} (subset seed {p.get('subset_seed')})")
    feats = dict(p.get("features") or {})
    sha = next((str(v) for k, v in feats.items() if "sha" in k.lower() and v), None)
    pretrained = feats.get("pretrained")
    # metric_names: the tables' own column labels; comparable/warning: the report's warning line
    feat_line = kv({k: v for k, v in feats.items()
                    if "sha" not in k.lower() and k not in ("pretrained", "metric_names", "comparable", "warning")})
    if not table.toy:
        feat_line += f"; weights sha256: {sha or 'not recorded'}; pretrained: " + (
            "not recorded" if pretrained is None else ("yes" if pretrained else "NO (random initialisation)"))
    def nr(v: Any) -> str:
        return "not recorded" if v is None else str(v)

    items = [("Benchmark", ", ".join(table.benchmarks))] if table.benchmarks else []
    items += [
        ("Dataset", f"{nr(p.get('dataset'))} — {variant}"),
        ("Training data", f"split {nr(p.get('split'))}, {subset}"),
        ("Generated samples per evaluation", nr(p.get("num_samples"))),
        ("Reference set", kv(p.get("reference") or {})),
        ("Feature extractor", feat_line if (feats or not table.toy) else "none (metrics in data space)"),
        ("Metric settings", kv(p.get("metric_settings") or {})),
        ("Comparable to published figures", "yes" if table.comparable else
         f"NO — {'; '.join(clean_reasons(table.reasons)) or 'the evaluation recorded comparable=false'}"),
    ]
    extra = [w for w in table.warnings if w not in table.reasons]  # the reasons are on the line above
    if extra:
        items.append(("Warnings", "; ".join(extra)))
    if table.devices:
        items.append(("Devices", "; ".join(table.devices)))
    return items


__all__ = ["BOLD_CLOSE", "BOLD_OPEN", "HEADLINE_RULE", "NOT_COMPARABLE", "Display", "Headline", "Leaderboard", "MetricSpec", "ProtocolTable", "backend_display_name",
           "build_leaderboard", "clean_reasons", "display_frame", "failed_frame", "fingerprint_items",
           "fingerprint_summary", "fmt_value", "headline", "headline_caption", "headline_display", "headline_metrics",
           "headline_winners", "is_default_evaluation", "metric_specs", "quality_spec", "short_setting"]
