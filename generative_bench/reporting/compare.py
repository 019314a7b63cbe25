"""Regression gate: compare a new benchmark against a baseline (``gbench compare``).

    gbench compare NEW BASELINE [--tolerance REL] [--abs-tolerance ABS] [--tolerance KEY=ABS ...]
                   [--allow-missing] [--allow-fingerprint-change] [--out FILE.md] [--json FILE.json]

Each side is either a folder of runs (a sweep folder, run folders or any parent of them, read
with :func:`~generative_bench.reporting.collect.collect_runs` and
:func:`~generative_bench.reporting.leaderboard.build_leaderboard` exactly as ``gbench report``
does, then serialised as the report's ``leaderboard.json``) or a ``leaderboard.json`` written by
``gbench report`` (the usual committed baseline; a folder that holds only a report is read as
its ``leaderboard.json``). Each metric cell of that file carries its mean, its better direction
and its label, so the gate names no metric itself. An older ``leaderboard.csv`` is read too (its
directions then come from the metric declarations by column name). Both sides become one table
of rows keyed by (backend, config, budget, sampler), each with its protocol fingerprint and its
metric means (means over seeds, as in the leaderboard). A cell that holds text or a spreadsheet
formula instead of a number is refused (exit 2), never read as "not measured".

What is compared, in this order:

1. **Protocol fingerprints.** For every row on both sides the parsed fingerprints (dataset,
   variant, subset, number of samples, reference set, feature extractor, metric settings) must
   be equal; the differing fields are listed (e.g. ``num_samples: 500 vs 1000``). A mismatch
   makes the numbers incomparable: exit 3, unless ``--allow-fingerprint-change``.
2. **Rows.** A baseline row missing from NEW is a failure (exit 1) unless ``--allow-missing``;
   rows only in NEW are listed as additions and pass. A metric that the baseline has and NEW
   lacks counts as missing too.
3. **Metrics.** Every quality metric present on both sides and the NLL (bits/dim, lower is
   better). Timings (images/s, wall times, train steps, images seen, NFE) are never compared.
   The better direction of a metric is the one its cell records (the leaderboard's metric
   declaration when the report was made; for a CSV, :func:`metric_direction`).
   A change in the worse direction larger than the tolerance is a REGRESSION (exit 1); a change
   in the better direction larger than the tolerance is reported as improved (exit 0). Metrics
   without a direction (extra metrics a record holds) are shown and never fail.

Tolerance: a change is within tolerance when ``|new - baseline| <= max(abs, rel * |baseline|)``
with ``--tolerance REL`` (relative, default 0) and ``--abs-tolerance ABS`` (default 1e-9, so an
identical rerun passes and any real change is caught). ``--tolerance KEY=ABS`` (repeatable) sets
an absolute tolerance for one metric (``fid=2.0``, ``kid_x1e3=0.5``, ``nll=0.01``; leaderboard
keys, CSV column names and record metric names are accepted; values in the units of the
leaderboard column, e.g. KID ×10³) and replaces the other two for it.

Exit codes: 0 pass (ok / improved / additions), 1 regression or missing rows/metrics,
3 protocol fingerprint mismatch (takes precedence), 2 bad input (path does not exist, no runs
found, not a leaderboard, a malformed cell, an output path equal to an input, bad option) with a one-line ``gbench compare: error: ...``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from generative_bench.errors import InputError
from generative_bench.reporting import leaderboard as _leaderboard

#: exit codes of ``gbench compare``
EXIT_OK, EXIT_REGRESSION, EXIT_BAD_INPUT, EXIT_FINGERPRINT = 0, 1, 2, 3
#: columns every leaderboard CSV has (see ``to_csv_text`` in generative_bench/reporting/render.py)
KEY_COLUMNS = ("backend", "config", "budget", "sampler")
REQUIRED_COLUMNS = ("protocol_fingerprint",) + KEY_COLUMNS
#: the likelihood column of the leaderboard (bits/dim; an upper bound, lower is better)
NLL_KEY = "nll_bpd"
_NLL_NAMES = (NLL_KEY, "nll", "bpd")
_SCALE_SUFFIX = "_x1e3"

OK, REGRESSION, IMPROVED, MISMATCH, MISSING, ADDED = (
    "ok", "REGRESSION", "improved", "fingerprint mismatch", "missing", "added")
CHANGED_ALLOWED = "fingerprint changed (allowed)"
MISSING_ALLOWED = "missing (allowed)"
#: the metric column of lines about a whole row / about its protocol fingerprint
ROW_METRIC, FINGERPRINT_METRIC = "(row)", "protocol fingerprint"


def _base_key(key: str) -> str:
    """``kid_x1e3_mean`` -> ``kid``; ``toy_reverse_kl`` stays as it is."""
    key = str(key).strip()
    if key.endswith("_mean"):
        key = key[: -len("_mean")]
    if key.endswith(_SCALE_SUFFIX):
        key = key[: -len(_SCALE_SUFFIX)]
    return key


def _declared(key: str):
    """The leaderboard's declaration (``MetricSpec``) of a column or metric key, or None."""
    specs = _leaderboard.metric_specs()
    for k in (str(key).strip(), _base_key(key)):
        found = next((s for s in specs if k == s.key or k in s.aliases), None)
        if found is not None:
            return found
    return None


def metric_direction(key: str) -> str | None:
    """Which way is better for a leaderboard column or metric key: ``"lower"``, ``"higher"``,
    ``""`` (a metric with no best value, e.g. an extra ``x:`` column) or None (not a quality
    metric: timings and bookkeeping columns, never compared).

    Read from the leaderboard's declarations at call time (``MetricSpec.key``, ``.aliases`` and
    ``.better``), so metrics added or renamed there are picked up here; the NLL is lower-better.
    """
    base = _base_key(key)
    if base in _NLL_NAMES:
        return "lower"
    if base.startswith("x:"):
        return ""
    spec = _declared(key)
    return spec.better if spec is not None else None


def _canonical_metric(key: str) -> str | None:
    """The leaderboard key a name refers to (``toy_high_quality`` -> ``hq``), or None."""
    if _base_key(key) in _NLL_NAMES:
        return NLL_KEY
    spec = _declared(key)
    return spec.key if spec is not None else None


# ------------------------------------------------------------------------------------ reading

@dataclass(frozen=True)
class Cell:
    """One metric of one row as the leaderboard declared it: its mean (in the units the
    leaderboard shows, e.g. KID x10^3), which way is better and its label."""

    value: float
    better: str  # "lower" | "higher" | "" (shown, never fails)
    label: str = ""


@dataclass
class Row:
    """One leaderboard row: (backend, config, budget, sampler), its protocol and metric means."""

    key: tuple[str, str, str, str]
    fingerprint: dict[str, Any]
    metrics: dict[str, Cell]  # metric key (``fid``, ``kid``, ``nll_bpd``, ``x:name``) -> its cell
    n_seeds: str = ""
    protocol: str = ""

    @property
    def num_samples(self) -> Any:
        return self.fingerprint.get("num_samples")


#: how each kind of input is named in the console
KIND_NAMES = {"runs": "runs", "json": "leaderboard.json", "csv": "leaderboard CSV"}


@dataclass
class Side:
    """One side of a comparison: where it came from and its rows."""

    path: Path
    kind: str  # "runs" | "json" | "csv"
    rows: list[Row]
    problems: list[str] = field(default_factory=list)  # failed / unfinished runs (folder input)


_REGENERATE = "regenerate it with `gbench report RUNS --out DIR`, or pass the folder of runs"


def _number(value: Any, where: str) -> float:
    """A metric mean read from a file: a finite number, or NaN for "not measured" (empty / null).

    Anything else (text, a spreadsheet formula such as ``=1+1``, a boolean) is refused: a gate
    that read it as "not measured" would pass a worse run."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return math.nan
    if isinstance(value, bool):
        raise InputError(f"{where} holds {value!r}, not a number; {_REGENERATE}")
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        kind = "a spreadsheet formula" if text[:1] in "=+-@" else "text"
        raise InputError(f"{where} holds {bounded_repr(text)} ({kind}), not a number; {_REGENERATE}") from None


def bounded_repr(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _json_object(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise InputError(f"{where} is not a JSON object; {_REGENERATE}")
    return value


def parse_leaderboard_json(text: str, source: str) -> list[Row]:
    """Rows of a ``leaderboard.json`` (``render.to_json_text``): every metric cell carries its own
    direction and label, so nothing here names a metric. InputError if it is not one."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{source!r} is not JSON ({e.msg} at line {e.lineno}); {_REGENERATE}") from None
    tables = _json_object(doc, repr(source)).get("tables")
    if not isinstance(tables, list):
        raise InputError(f"{source!r} is not a leaderboard.json written by `gbench report` (no list 'tables'); "
                         f"{_REGENERATE}")
    rows = []
    for t, table in enumerate(tables):
        table = _json_object(table, f"{source!r} tables[{t}]")
        fingerprint = _json_object(table.get("protocol_fingerprint"), f"{source!r} tables[{t}].protocol_fingerprint")
        body = table.get("rows")
        if not isinstance(body, list):
            raise InputError(f"{source!r} tables[{t}] has no list 'rows'; {_REGENERATE}")
        for i, row in enumerate(body):
            where = f"{source!r} tables[{t}].rows[{i}]"
            row = _json_object(row, where)
            metrics: dict[str, Cell] = {}
            for key, cell in _json_object(row.get("metrics", {}), f"{where}.metrics").items():
                cell = _json_object(cell, f"{where}.metrics.{key}")
                better = cell.get("better", "")
                if better not in ("lower", "higher", ""):
                    raise InputError(f"{where}.metrics.{key}.better is {better!r}, not 'lower', 'higher' or ''; "
                                     f"{_REGENERATE}")
                value = _number(cell.get("mean"), f"{where}.metrics.{key}.mean")
                if math.isfinite(value):
                    metrics[str(key)] = Cell(value, better, str(cell.get("label") or ""))
            nll = row.get("nll_bpd")
            if isinstance(nll, dict) and nll.get("status") == "ok":
                value = _number(nll.get("mean"), f"{where}.nll_bpd.mean")
                if math.isfinite(value):
                    metrics[NLL_KEY] = Cell(value, "lower", "NLL, bits/dim")
            rows.append(Row(key=tuple(str(row.get(c) or "") for c in KEY_COLUMNS), fingerprint=fingerprint,
                            metrics=metrics, n_seeds=str(row.get("n") or ""), protocol=str(table.get("protocol") or "")))
    return rows


def parse_leaderboard_csv(text: str, source: str) -> list[Row]:
    """Rows of a ``leaderboard.csv`` text (leading ``#`` lines skipped); InputError if it is not one.

    The CSV names its metrics by column (``fid_mean``, ``kid_x1e3_mean``): their directions and
    labels come from the metric declarations. ``leaderboard.json`` carries them in each cell and
    is read first when a report folder holds both."""
    lines = text.splitlines(keepends=True)
    skip = 0
    while skip < len(lines) and (lines[skip].startswith("#") or not lines[skip].strip()):
        skip += 1
    body = "".join(lines[skip:])
    try:
        reader = csv.DictReader(io.StringIO(body))
        header = list(reader.fieldnames or [])
        records = list(reader)
    except csv.Error as e:
        raise InputError(f"{source!r} is not a leaderboard CSV ({e}); pass the leaderboard.csv that "
                         "`gbench report` writes, or a folder of runs") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise InputError(f"{source!r} is not a leaderboard CSV written by `gbench report` (no column(s) "
                         f"{', '.join(missing)}); pass its leaderboard.csv or a folder of runs")
    metric_cols = {c: _canonical_metric(c) or _base_key(c) for c in header
                   if c.endswith("_mean") and metric_direction(c) is not None}
    rows = []
    for i, rec in enumerate(records, start=skip + 2):
        try:
            fingerprint = json.loads(rec.get("protocol_fingerprint") or "")
        except json.JSONDecodeError:
            raise InputError(f"{source!r} line {i}: protocol_fingerprint is not JSON; {_REGENERATE}") from None
        if not isinstance(fingerprint, dict):
            raise InputError(f"{source!r} line {i}: protocol_fingerprint is not a JSON object; {_REGENERATE}")
        metrics = {}
        for col, key in metric_cols.items():
            value = _number(rec.get(col), f"{source!r} line {i} column {col}")
            if math.isfinite(value):
                metrics[key] = Cell(value, metric_direction(col) or "", _declared_label(col))
        rows.append(Row(key=tuple(str(rec.get(c) or "") for c in KEY_COLUMNS), fingerprint=fingerprint,
                        metrics=metrics, n_seeds=str(rec.get("n_seeds") or ""),
                        protocol=str(rec.get("protocol") or "")))
    return rows


def _declared_label(column: str) -> str:
    if _base_key(column) == NLL_KEY:
        return "NLL, bits/dim"
    spec = _declared(column)
    return spec.label if spec is not None else ""


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{str(path)!r} is not a text {what} file; pass the {what} that `gbench report` "
                         "writes, or a folder of runs") from None
    except OSError as e:
        raise InputError(f"cannot read {str(path)!r} ({e.strerror or e}); check the path and its permissions") from None


def _read_file(path: Path) -> Side:
    if path.suffix.lower() == ".json":
        return Side(path, "json", parse_leaderboard_json(_read_text(path, "leaderboard.json"), str(path)))
    return Side(path, "csv", parse_leaderboard_csv(_read_text(path, "leaderboard.csv"), str(path)))


def _read_runs(path: Path) -> Side:
    from generative_bench.reporting.collect import collect_runs
    from generative_bench.reporting.leaderboard import build_leaderboard
    from generative_bench.reporting.render import to_json_text

    collection = collect_runs([path])
    board = build_leaderboard(collection)
    problems = [f"{collection.display_path(p.run_dir)}: {p.status}" + (f" ({p.error})" if p.error else "")
                for p in collection.problems]
    if not board.tables and not problems:
        raise InputError(f"no completed run with results below {str(path)!r}; pass a folder whose runs "
                         "finished, or a leaderboard.json written by `gbench report`")
    # the same serialisation as the report's leaderboard.json, so both kinds of input read alike;
    # failed / unfinished runs only: no rows, so every baseline row is reported missing
    rows = parse_leaderboard_json(to_json_text(board, "", ""), str(path)) if board.tables else []
    return Side(path, "runs", rows, problems)


def read_side(path: str | os.PathLike, role: str = "input") -> Side:
    """A folder of runs, a ``leaderboard.json`` or a ``leaderboard.csv`` as a :class:`Side`
    (a report folder without runs is read as its leaderboard.json, else its leaderboard.csv);
    InputError on bad input."""
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"{role} {str(p)!r} does not exist; pass a sweep/run folder or the leaderboard.json "
                         "(or leaderboard.csv) written by `gbench report`")
    if p.is_file():
        if p.name == "results.json":
            return _read_runs(p)
        return _read_file(p)
    try:
        return _read_runs(p)
    except InputError as e:
        for name in ("leaderboard.json", "leaderboard.csv"):  # a committed report folder without the runs
            if (p / name).is_file():
                return _read_file(p / name)
        raise InputError(f"{role} {str(p)!r}: {e} (or pass a leaderboard.json written by `gbench report`)") from None


def check_outputs(outputs: dict[str, Any], inputs: Iterable[Any]) -> None:
    """Refuse an output file (``--out`` / ``--json``) that is one of the inputs: writing the
    comparison there would destroy the baseline it was made from."""
    read = {Path(p).expanduser().resolve() for p in inputs if p is not None}
    for option, out in outputs.items():
        if out is not None and Path(out).expanduser().resolve() in read:
            raise InputError(f"{option} {str(out)!r} is one of the inputs; writing there would replace it, so "
                             "name another file (e.g. compare.md beside the report)")


# ---------------------------------------------------------------------------------- comparing

_ABSENT = "(absent)"


def fingerprint_changes(baseline: Any, new: Any, prefix: str = "") -> list[tuple[str, str, str]]:
    """``(field, baseline value, new value)`` for every differing leaf of two parsed fingerprints;
    nested fields are dotted (``features.weights_sha256``), a field one side lacks is ``(absent)``."""
    if isinstance(baseline, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(baseline) | set(new), key=str):
            name = f"{prefix}.{k}" if prefix else str(k)
            if k not in new:
                out.append((name, _show(baseline[k]), _ABSENT))
            elif k not in baseline:
                out.append((name, _ABSENT, _show(new[k])))
            else:
                out += fingerprint_changes(baseline[k], new[k], name)
        return out
    if baseline != new:
        return [(prefix or "fingerprint", _show(baseline), _show(new))]
    return []


def fingerprint_diff(baseline: Any, new: Any) -> list[str]:
    """``field: baseline vs new`` lines, e.g. ``num_samples: 500 vs 1000``."""
    return [f"{name}: {old} vs {newer}" for name, old, newer in fingerprint_changes(baseline, new)]


def _show(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)


@dataclass
class Tolerance:
    """``max(absolute, relative * |baseline|)``, or a per-metric absolute value."""

    relative: float = 0.0
    absolute: float = 1e-9
    per_metric: dict[str, float] = field(default_factory=dict)  # canonical key (or x:name) -> absolute

    def allowed(self, key: str, baseline: float) -> float:
        if key in self.per_metric:
            return self.per_metric[key]
        return max(self.absolute, self.relative * abs(baseline))

    def describe(self) -> str:
        text = f"relative {self.relative:g}, absolute {self.absolute:g}"
        if self.per_metric:
            text += "; per metric: " + ", ".join(f"{k}={v:g}" for k, v in sorted(self.per_metric.items()))
        return text


def parse_tolerances(values: Iterable[str] = (), abs_tolerance: float | None = None) -> Tolerance:
    """``--tolerance`` values: a number (relative) or ``KEY=VALUE`` (absolute, one metric)."""
    tol = Tolerance()
    if abs_tolerance is not None:
        if not math.isfinite(abs_tolerance) or abs_tolerance < 0:
            raise InputError(f"--abs-tolerance {abs_tolerance!r} must be a finite number >= 0")
        tol.absolute = float(abs_tolerance)
    for raw in values:
        text = str(raw).strip()
        name, sep, number = text.partition("=")
        try:
            value = float(number if sep else text)
        except ValueError:
            raise InputError(f"--tolerance {text!r} is neither a number (relative, e.g. 0.05) nor KEY=VALUE "
                             "(absolute for one metric, e.g. fid=2.0)") from None
        if not math.isfinite(value) or value < 0:
            raise InputError(f"--tolerance {text!r}: the tolerance must be a finite number >= 0")
        if not sep:
            tol.relative = value
            continue
        name = name.strip()
        key = _canonical_metric(name)
        if key is None:
            if name.startswith("x:"):
                key = name
            else:
                known = ", ".join([s.key for s in _leaderboard.metric_specs()] + ["nll"])
                raise InputError(f"--tolerance {text!r}: unknown metric {name!r}; use one of {known} "
                                 "(or x:NAME for an extra metric)")
        tol.per_metric[key] = value
    return tol


@dataclass
class Line:
    """One line of the comparison table."""

    row: str
    metric: str
    baseline: Any
    new: Any
    delta: float | None
    rel_delta: float | None
    verdict: str
    note: str = ""


@dataclass
class Comparison:
    new: Side
    baseline: Side
    tolerance: Tolerance
    lines: list[Line]
    mismatched_rows: list[dict[str, Any]]
    missing_rows: list[str]
    added_rows: list[str]
    notes: list[str]
    exit_code: int
    headline: str | None = None  # what the console says first (nothing compared, protocols differ)

    def counts(self) -> dict[str, int]:
        metric_lines = [ln for ln in self.lines if ln.metric != ROW_METRIC
                        and not ln.metric.startswith(FINGERPRINT_METRIC)]
        c = {v: sum(1 for ln in metric_lines if ln.verdict == v) for v in (OK, IMPROVED, REGRESSION, MISSING, ADDED)}
        c["missing rows"] = len(self.missing_rows)
        c["added rows"] = len(self.added_rows)
        c["fingerprint mismatches"] = len(self.mismatched_rows)
        return c

    @property
    def status(self) -> str:
        return {EXIT_OK: "PASS", EXIT_REGRESSION: "FAIL", EXIT_FINGERPRINT: "FINGERPRINT MISMATCH"}[self.exit_code]

    def summary(self) -> str:
        c = self.counts()
        parts = [f"{c[REGRESSION]} regression(s)", f"{c['missing rows']} missing row(s)"]
        if c[MISSING]:
            parts.append(f"{c[MISSING]} missing metric(s)")
        n_fp = c["fingerprint mismatches"]
        parts.append(f"{n_fp} fingerprint change(s) allowed" if n_fp and self.exit_code != EXIT_FINGERPRINT
                     else f"{n_fp} fingerprint mismatch(es)")
        parts += [f"{c[IMPROVED]} improved",
                  f"{c[OK]} ok", f"{c['added rows']} added row(s)"]
        return f"gbench compare: {self.status}: " + ", ".join(parts) + f" (tolerance: {self.tolerance.describe()})"


def row_label(key: tuple[str, ...], num_samples: Any = None) -> str:
    text = " / ".join(k if k else "-" for k in key)
    return f"{text} [n={num_samples}]" if num_samples is not None else text


def _pair_rows(new: list[Row], base: list[Row]) -> tuple[list[tuple[Row, Row]], list[Row], list[Row]]:
    """(pairs, baseline-only, new-only). A key seen in several protocols is paired by fingerprint
    first; one leftover per side is then paired (and its fingerprints differ)."""
    by_key_new: dict[tuple, list[Row]] = {}
    by_key_base: dict[tuple, list[Row]] = {}
    for r in new:
        by_key_new.setdefault(r.key, []).append(r)
    for r in base:
        by_key_base.setdefault(r.key, []).append(r)
    pairs, only_base, only_new = [], [], []
    for key, brows in by_key_base.items():
        nrows = list(by_key_new.get(key, []))
        left = []
        for b in brows:
            same = next((n for n in nrows if n.fingerprint == b.fingerprint), None)
            if same is not None:
                nrows.remove(same)
                pairs.append((b, same))
            else:
                left.append(b)
        if len(left) == 1 and len(nrows) == 1:
            pairs.append((left[0], nrows[0]))
            left, nrows = [], []
        only_base += left
        only_new += nrows
    only_new += [r for key, rows in by_key_new.items() if key not in by_key_base for r in rows]
    return pairs, only_base, only_new


def compare_sides(new: Side, baseline: Side, tolerance: Tolerance | None = None, allow_missing: bool = False,
                  allow_fingerprint_change: bool = False) -> Comparison:
    """Judge NEW against BASELINE; see the module docstring for the rules and exit codes."""
    tol = tolerance or Tolerance()
    pairs, only_base, only_new = _pair_rows(new.rows, baseline.rows)
    repeated = {r.key for side in (new.rows, baseline.rows) for r in side
                if sum(1 for o in side if o.key == r.key) > 1}

    def label(r: Row) -> str:
        return row_label(r.key, r.num_samples if r.key in repeated else None)

    lines: list[Line] = []
    mismatched, notes = [], []
    regression = fingerprint_error = missing_failure = False
    for b, n in pairs:
        name = label(b)
        changes = fingerprint_changes(b.fingerprint, n.fingerprint)
        diffs = [f"{field_name}: {old} vs {newer}" for field_name, old, newer in changes]
        if changes:
            mismatched.append({"row": name, "differences": diffs})
            verdict = CHANGED_ALLOWED if allow_fingerprint_change else MISMATCH
            fingerprint_error |= not allow_fingerprint_change
            for field_name, old, newer in changes:
                lines.append(Line(name, f"{FINGERPRINT_METRIC}: {field_name}", old, newer, None, None, verdict))
        if b.n_seeds and n.n_seeds and b.n_seeds != n.n_seeds:
            notes.append(f"{name}: means over {b.n_seeds} seed(s) in the baseline, {n.n_seeds} in NEW")
        for key in sorted(set(b.metrics) | set(n.metrics), key=_metric_order):
            cell = b.metrics.get(key) or n.metrics[key]
            direction = cell.better
            mlabel = metric_line_name(key, cell)
            if key not in n.metrics:
                lines.append(Line(name, mlabel, b.metrics[key].value, None, None, None,
                                  MISSING_ALLOWED if allow_missing else MISSING, "not measured in NEW"))
                missing_failure |= not allow_missing
                continue
            if key not in b.metrics:
                lines.append(Line(name, mlabel, None, n.metrics[key].value, None, None, ADDED, "not in the baseline"))
                continue
            bv, nv = b.metrics[key].value, n.metrics[key].value
            if n.metrics[key].better != direction:
                notes.append(f"{name}: {key} is '{direction or 'no direction'}'-better in the baseline and "
                             f"'{n.metrics[key].better or 'no direction'}'-better in NEW; the baseline's is used")
            delta = nv - bv
            rel = delta / abs(bv) if bv != 0 else (0.0 if delta == 0 else None)
            note = ""
            if diffs and not allow_fingerprint_change:
                verdict = MISMATCH
            elif abs(delta) <= tol.allowed(key, bv):
                verdict = OK
            elif not direction:
                verdict, note = OK, "changed; no better direction, never fails"
            elif (delta > 0) == (direction == "higher"):
                verdict = IMPROVED
            else:
                verdict = REGRESSION
                regression = True
            lines.append(Line(name, mlabel, bv, nv, delta, rel, verdict, note))
    missing_rows = [label(r) for r in only_base]
    added_rows = [label(r) for r in only_new]
    for r in only_base:
        lines.append(Line(label(r), ROW_METRIC, "present", "absent", None, None,
                          MISSING_ALLOWED if allow_missing else MISSING, "row not in NEW"))
    for r in only_new:
        lines.append(Line(label(r), ROW_METRIC, "absent", "present", None, None, ADDED, "row only in NEW"))
    missing_failure |= bool(only_base) and not allow_missing
    if new.problems:
        notes.append(f"NEW has {len(new.problems)} failed or unfinished run(s): " + "; ".join(new.problems[:5])
                     + (" ..." if len(new.problems) > 5 else ""))
    code = (EXIT_FINGERPRINT if fingerprint_error else
            EXIT_REGRESSION if (regression or missing_failure) else EXIT_OK)
    headline = None
    if not pairs:  # a gate that compared nothing cannot pass, whatever --allow-missing says
        def protocols(side: Side) -> set[str]:
            return {json.dumps(r.fingerprint, sort_keys=True, default=str) for r in side.rows}

        if new.rows and baseline.rows and not protocols(new) & protocols(baseline):
            code = EXIT_FINGERPRINT
            differ = fingerprint_changes(baseline.rows[0].fingerprint, new.rows[0].fingerprint)
            headline = ("protocols differ: no row of NEW was measured with a protocol of the baseline ("
                        + "; ".join(f"{k}: {old} vs {newer}" for k, old, newer in differ[:4])
                        + "); compare runs of one protocol, or refresh the baseline")
        else:
            code = max(code, EXIT_REGRESSION) if code != EXIT_FINGERPRINT else code
            headline = (f"nothing was compared: NEW has {len(new.rows)} row(s), the baseline {len(baseline.rows)}, "
                        "and none of them match (backend, config, budget, sampler); a gate that compares nothing fails")
    if headline:
        notes.insert(0, headline)
    return Comparison(new, baseline, tol, lines, mismatched, missing_rows, added_rows, notes, code, headline)


def _metric_order(key: str) -> tuple[int, str]:
    keys = [s.key for s in _leaderboard.metric_specs()]
    if key in keys:
        return keys.index(key), key
    return (len(keys) + 1 if key == NLL_KEY else len(keys) + 2), key


def metric_line_name(key: str, cell: Cell) -> str:
    """``fid (FD_inception)``: the metric key and the label the leaderboard gave it."""
    return f"{key} ({cell.label})" if cell.label and cell.label != key else key


# ---------------------------------------------------------------------------------- rendering

def _num(v: Any, digits: int = 6) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if not math.isfinite(v):
        return "n/a"
    return f"{v:.{digits}g}"


def _rel(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.2%}"


def table_rows(comp: Comparison) -> list[list[str]]:
    return [[ln.row, ln.metric, _num(ln.baseline), _num(ln.new),
             "" if ln.delta is None else f"{ln.delta:+.4g}", "" if ln.delta is None else _rel(ln.rel_delta),
             ln.verdict + (f" ({ln.note})" if ln.note else "")] for ln in comp.lines]


HEADERS = ["row (backend / config / budget / sampler)", "metric", "baseline", "new", "delta", "rel. delta", "verdict"]


def render_text(comp: Comparison) -> str:
    """The console report: the table, the fingerprint differences, missing/added rows, the summary."""
    from tabulate import tabulate

    out = [f"gbench compare: {comp.headline}", ""] if comp.headline else []
    out += [f"NEW:      {comp.new.path} ({KIND_NAMES[comp.new.kind]}, {len(comp.new.rows)} row(s))",
            f"BASELINE: {comp.baseline.path} ({KIND_NAMES[comp.baseline.kind]}, {len(comp.baseline.rows)} row(s))", ""]
    out.append(tabulate(table_rows(comp), headers=HEADERS, tablefmt="github", disable_numparse=True)
               if comp.lines else "(nothing to compare)")
    out.append("")
    for m in comp.mismatched_rows:
        kind = "changed (allowed)" if comp.exit_code != EXIT_FINGERPRINT else "MISMATCH"
        out.append(f"protocol fingerprint {kind} for {m['row']}: " + "; ".join(m["differences"]))
    for r in comp.missing_rows:
        out.append(f"missing in NEW: {r}")
    for r in comp.added_rows:
        out.append(f"only in NEW (added): {r}")
    out += comp.notes
    out.append(comp.summary())
    return "\n".join(out)


def render_markdown(comp: Comparison) -> str:
    from tabulate import tabulate

    def cell(text: str) -> str:
        return str(text).replace("|", "\\|")

    rows = [[cell(c) for c in r] for r in table_rows(comp)]
    out = ["# gbench compare", "", f"**{comp.summary()}**", "",
           f"- NEW: `{comp.new.path}` ({comp.new.kind})", f"- Baseline: `{comp.baseline.path}` ({comp.baseline.kind})",
           f"- Tolerance: {comp.tolerance.describe()}", ""]
    out.append(tabulate(rows, headers=[cell(h) for h in HEADERS], tablefmt="github", disable_numparse=True)
               if rows else "_nothing to compare_")
    out.append("")
    if comp.mismatched_rows:
        out += ["## Protocol fingerprint differences", ""]
        out += [f"- {cell(m['row'])}: " + "; ".join(m["differences"]) for m in comp.mismatched_rows] + [""]
    if comp.missing_rows or comp.added_rows:
        out += ["## Rows", ""] + [f"- missing in NEW: {cell(r)}" for r in comp.missing_rows]
        out += [f"- only in NEW (added): {cell(r)}" for r in comp.added_rows] + [""]
    if comp.notes:
        out += ["## Notes", ""] + [f"- {n}" for n in comp.notes] + [""]
    return "\n".join(out)


def to_json(comp: Comparison) -> dict[str, Any]:
    def finite(v: Any) -> Any:
        return None if isinstance(v, float) and not math.isfinite(v) else v

    return {
        "status": comp.status, "exit_code": comp.exit_code, "summary": comp.summary(),
        "new": {"path": str(comp.new.path), "kind": comp.new.kind, "rows": len(comp.new.rows),
                "problems": comp.new.problems},
        "baseline": {"path": str(comp.baseline.path), "kind": comp.baseline.kind, "rows": len(comp.baseline.rows)},
        "tolerance": {"relative": comp.tolerance.relative, "absolute": comp.tolerance.absolute,
                      "per_metric": dict(comp.tolerance.per_metric)},
        "counts": comp.counts(),
        "fingerprint_mismatches": comp.mismatched_rows, "missing_rows": comp.missing_rows,
        "added_rows": comp.added_rows, "notes": comp.notes,
        "lines": [{"row": ln.row, "metric": ln.metric, "baseline": finite(ln.baseline), "new": finite(ln.new),
                   "delta": finite(ln.delta), "rel_delta": finite(ln.rel_delta), "verdict": ln.verdict,
                   "note": ln.note} for ln in comp.lines],
    }


__all__ = ["EXIT_BAD_INPUT", "EXIT_FINGERPRINT", "EXIT_OK", "EXIT_REGRESSION", "Cell", "Comparison", "Line", "Row", "Side",
           "Tolerance", "check_outputs", "compare_sides", "fingerprint_changes", "fingerprint_diff", "metric_direction",
           "parse_leaderboard_csv", "parse_leaderboard_json", "parse_tolerances", "read_side", "render_markdown", "render_text", "to_json"]
