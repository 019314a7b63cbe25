"""Leaderboard tables: mean ± std over seeds, one table per evaluation protocol.

Rows are (backend name, configuration overrides, training budget, sampler settings); the seeds of
a row are the runs that share all four. Numbers from different protocols (dataset variant,
number of samples, reference set, feature extractor, metric settings) never share a table.
Spread is the sample standard deviation over seeds (ddof=1); a single run shows its value alone.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from generative_bench.reporting.collect import Collection, measurements

NOT_COMPARABLE = "NOT comparable to published figures"
GAN_NLL_NOTE = "not defined for GANs: implicit model, no likelihood"


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

    @property
    def aliases(self) -> tuple[str, ...]:
        return (self.source,)


def metric_specs() -> list[MetricSpec]:
    """One column per declared, shown metric output, in declaration order (read at call time)."""
    from generative_bench.evaluation import suite  # noqa: F401  (the declarations)
    from generative_bench.evaluation.schema import outputs

    return [MetricSpec(o.column_id, o.label, o.better, o.key, o.scale, o.digits, o.note, o.domain)
            for o in outputs(shown_only=True)]


def __getattr__(name: str):
    if name == "METRICS":  # the current declarations, as a tuple
        return tuple(metric_specs())
    raise AttributeError(name)


#: the first of these a table has is its headline quality metric (plots)
QUALITY_ORDER = ("fid", "hq", "data_precision", "precision", "kid", "coverage")
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
            reasons.append(GAN_NLL_NOTE if r["family"] == "gan"
                           else str(nll.get("reason") or "not defined for this model family"))
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
            "backend": backend, "family": grp[0]["family"], "sampler": grp[0]["sampler"],
            "method": grp[0].get("sampler_method", ""), "config": config,
            "budget": _budget_label(budget), "n": len({r["run_dir"] for r in grp}),
            "seeds": ", ".join(str(s) for s in seeds), "comparable": all(r["comparable"] for r in grp),
            "run_dirs": sorted({r["run_dir"] for r in grp}),
            "knob": grp[0].get("knob", ""), "knob_value": grp[0].get("knob_value"),
            "knob_names": sorted(grp[0].get("knobs") or {}),
        }
        for spec in specs:
            m, s, n = _stats([_metric_value(r["metrics"], spec) for r in grp])
            row.update({f"{spec.key}_mean": m, f"{spec.key}_std": s, f"{spec.key}_n": n})
        row.update(_nll_summary(grp))
        for key, col in (("images_per_s", "ips"), ("train_steps", "train_steps"), ("images_seen", "images_seen"),
                         ("train_wall_s", "train_wall_s")):
            m, s, n = _stats([r[key] for r in grp if r[key] is not None])
            row.update({f"{col}_mean": m, f"{col}_std": s})
        nfes = sorted({r["nfe"] for r in grp if r["nfe"] is not None})
        row["nfe"] = nfes[0] if len(nfes) == 1 else (math.nan if not nfes else float(np.mean(nfes)))
        out.append(row)
    frame = pd.DataFrame(out)
    return frame.sort_values(["backend", "config", "budget", "nfe", "sampler"], na_position="last",
                             kind="stable").reset_index(drop=True)


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


@dataclass
class Display:
    frame: pd.DataFrame
    notes: list[str]


def display_frame(table: ProtocolTable) -> Display:
    """Formatted table (strings) with footnote markers; best values wrapped in BOLD_OPEN/CLOSE."""
    f = table.frame
    b0, b1 = BOLD_OPEN, BOLD_CLOSE
    notes: list[str] = []

    def mark(text: str) -> str:
        if text not in notes:
            notes.append(text)
        return f"[{notes.index(text) + 1}]"

    cols: dict[str, list[str]] = {}
    flag = " ⚠" if not table.comparable else ""
    cols["Backend"] = [f"{b}{flag if not c else ''}" for b, c in zip(f["backend"], f["comparable"])]
    if f["config"].astype(bool).any():
        cols["Config"] = list(f["config"])
    if f["budget"].astype(bool).any():
        cols["Budget"] = list(f["budget"])
    cols["Sampler"] = list(f["sampler"])
    cols["n (seeds)"] = [f"{n} ({s})" for n, s in zip(f["n"], f["seeds"])]
    for spec in table.metrics:
        label = table.label(spec) + (f" {mark(spec.note)}" if spec.note else "")
        best = _best(f[f"{spec.key}_mean"], spec.better)
        cells = []
        for m, s in zip(f[f"{spec.key}_mean"], f[f"{spec.key}_std"]):
            text = fmt_value(m, s, spec.digits)
            if text == "n/a":
                text += f" {mark('n/a: not measured in this run.')}"
            elif best is not None and round(m, spec.digits) == round(best, spec.digits):
                text = f"{b0}{text}{b1}"
            cells.append(text)
        cols[label] = cells
    if (f["nll_status"] != "missing").any():
        bound_note = ("NLL in bits/dim (an upper bound on the negative log-likelihood, lower is better): "
                      + ("; ".join(table.nll_bounds) if table.nll_bounds else "bound not recorded") + ".")
        label = f"NLL (bits/dim) {mark(bound_note)}"
        best = _best(f["nll_mean"].where(f["nll_status"] == "ok"), "lower")
        cells = []
        for m, s, st, reason in zip(f["nll_mean"], f["nll_std"], f["nll_status"], f["nll_reason"]):
            if st == "undefined":
                cells.append(f"— {mark('—: ' + reason + '.')}")
            elif st == "missing":
                cells.append(f"n/a {mark('n/a: not measured in this run.')}")
            else:
                text = fmt_value(m, s, 3)
                cells.append(f"{b0}{text}{b1}" if best is not None and round(m, 3) == round(best, 3) else text)
        cols[label] = cells
    ips_note = ("Sampling speed: generated images per second, sampling only"
                + (f", on {'; '.join(table.devices)}" if table.devices else "") + ".")
    best = _best(f["ips_mean"], "higher")
    cols[f"Sampling img/s {mark(ips_note)}"] = [
        (f"{b0}{fmt_value(m, s, 1)}{b1}" if best is not None and round(m, 1) == round(best, 1) else fmt_value(m, s, 1))
        for m, s in zip(f["ips_mean"], f["ips_std"])]
    cols[f"NFE {mark('NFE: network evaluations per generated image (1 for the one-step GAN and VAE).')}"] = [
        _fmt_count(v) for v in f["nfe"]]
    cols["Train steps"] = [_fmt_count(v) for v in f["train_steps_mean"]]
    cols["Images seen"] = [_fmt_count(v) for v in f["images_seen_mean"]]
    cols["Train wall (min)"] = [fmt_value(m / 60, s / 60 if s == s else s, 1) for m, s in
                                zip(f["train_wall_s_mean"], f["train_wall_s_std"])]
    cols["Comparable"] = ["yes" if c else "NO ⚠" for c in f["comparable"]]
    if not table.comparable:
        notes.append(f"⚠ {NOT_COMPARABLE}: " + "; ".join(table.reasons) + ".")
    notes.append("Values are mean ± sample standard deviation (ddof=1) over n seeds; a single value when n = 1. "
                 "Best value per metric in bold (lower is better for FID, sFID, KID, reverse KL and NLL; higher for the others).")
    return Display(pd.DataFrame(cols), notes)


def fingerprint_items(table: ProtocolTable) -> list[tuple[str, str]]:
    """(label, value) lines describing how a table's numbers were made."""
    p = table.protocol

    def kv(d: dict[str, Any]) -> str:
        return ", ".join(f"{k}={json.dumps(v) if isinstance(v, (dict, list)) else v}" for k, v in d.items()
                         if v is not None) or "not recorded"

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
    feat_line = kv({k: v for k, v in feats.items() if "sha" not in k.lower() and k != "pretrained"})
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
        ("Comparable to published figures", "yes" if table.comparable else f"NO — {'; '.join(table.reasons)}"),
    ]
    if table.warnings:
        items.append(("Warnings", "; ".join(table.warnings)))
    if table.devices:
        items.append(("Devices", "; ".join(table.devices)))
    return items


__all__ = ["BOLD_CLOSE", "BOLD_OPEN", "GAN_NLL_NOTE", "NOT_COMPARABLE", "QUALITY_ORDER", "Display", "metric_specs",
           "Leaderboard", "MetricSpec",
           "ProtocolTable", "build_leaderboard", "display_frame", "failed_frame", "fingerprint_items", "fmt_value"]
