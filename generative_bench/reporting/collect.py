"""Find run records below report inputs and read them into flat measurements.

Inputs may be run folders, Hydra multirun sweep folders or any parent folder: every
``results.json`` below them is read (schema in :mod:`generative_bench.records`). Nothing is
dropped silently: records that are not ``completed`` (failed / interrupted / running), records
that cannot be read, and Hydra job folders (a ``.hydra/`` subfolder) without any record are kept
as :class:`RunProblem` entries and listed in their own table.

Run folders are untrusted input (they may come from someone else): a path a record names is
only opened when it resolves, symlinks followed, inside its run folder (:func:`contained_path`);
any other path is ignored and a warning says so in the report. Control characters are removed
from every string read from a record or log.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from generative_bench.errors import InputError
from generative_bench.records import RESULTS_FILE, SCHEMA

#: override keys that name where or how a job ran, not what it computed (ignored when rows
#: are grouped into seeds of one configuration)
IGNORED_OVERRIDE_PATTERNS = (
    r"^\+*seed$", r"\.seed$", r"^hydra\.", r"dir$", r"path$", r"root$", r"resume", r"device",
    r"num_workers", r"progress", r"log_every", r"checkpoint", r"^stage$", r"^run_name$", r"^paths\.",
    # captured elsewhere: evaluation settings in the protocol fingerprint, budgets in the Budget column
    r"^eval\.", r"^train\.(max_steps|max_images|max_minutes|batch_size)$",
)

#: the longest name a report shows (a backend or display name from a record is cut there)
DISPLAY_NAME_CHARS = 80


#: the longest error message of a failed run a report shows
ERROR_CHARS = 2000
#: the longest string a report keeps from a record (names are cut shorter where they are shown)
RECORD_STRING_CHARS = 4000


def bounded(text, limit: int = DISPLAY_NAME_CHARS) -> str:
    """``text`` as a string of at most ``limit`` characters (cut with an ellipsis)."""
    text = str(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


#: C0 control characters (tab, newline and carriage return excepted) and DEL; removed from
#: record text because the renderers use \x01/\x02 as their own bold markers
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

#: evaluation keys that name a file inside the run folder
FILE_KEYS = ("samples_file", "grid_file")


def clean_text(text: Any) -> str:
    """``str(text)`` without control characters (tab and line breaks kept)."""
    return _CONTROL.sub("", str(text))


def _clean(obj: Any) -> Any:
    """A JSON value with control characters removed from every string (keys included) and every
    string bounded (:data:`RECORD_STRING_CHARS`; keys to :data:`DISPLAY_NAME_CHARS`): a record of
    someone else's can put megabytes in a name, and a report must not pass them to a renderer."""
    if isinstance(obj, str):
        return bounded(clean_text(obj), RECORD_STRING_CHARS)
    if isinstance(obj, dict):
        return {bounded(clean_text(k)): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def contained_path(run_dir: str | os.PathLike, recorded: Any) -> Path | None:
    """``run_dir / recorded`` resolved (symlinks followed) when it stays inside ``run_dir``, else None.

    ``recorded`` is a path read from a run folder (e.g. an evaluation's ``samples_file``): it must
    be a non-empty relative path without ``..`` components or NUL characters, and its resolved
    target must lie inside the resolved run folder. Absolute paths, traversal and symlinks that
    lead elsewhere give None; the caller then ignores the path. Whether the file exists is not
    checked.
    """
    if isinstance(recorded, os.PathLike):
        recorded = os.fspath(recorded)
    if not isinstance(recorded, str) or not recorded.strip() or "\x00" in recorded:
        return None
    rel = Path(recorded)
    if rel.is_absolute() or rel.drive or rel.root or ".." in rel.parts:
        return None
    try:
        base = Path(run_dir).resolve()
        target = (base / rel).resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop or an unusable name
        return None
    if target == base or not target.is_relative_to(base):
        return None
    return target


@dataclass
class RunEntry:
    """One readable, completed ``results.json`` and the folder that holds it.

    ``warnings`` lists what the report refused to use from the record (e.g. a samples path
    outside the run folder).
    """

    run_dir: Path
    data: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    @property
    def backend_name(self) -> str:
        """The backend's name as recorded, bounded (records are untrusted: a name of megabytes would
        otherwise reach every table, legend and figure)."""
        b = self.data.get("backend") or {}
        return bounded(b.get("name") or b.get("family") or "unknown")

    @property
    def family(self) -> str:
        return bounded((self.data.get("backend") or {}).get("family") or "unknown")

    @property
    def display_name(self) -> str:
        """The backend's name in captions and figures, as recorded (bounded)."""
        return bounded((self.data.get("backend") or {}).get("display_name") or self.backend_name)

    @property
    def seed(self) -> Any:
        return self.data.get("seed")

    @property
    def overrides(self) -> list[str]:
        return [bounded(o, 200) for o in (self.data.get("overrides") or [])]

    @property
    def is_toy(self) -> bool:
        shape = (self.data.get("backend") or {}).get("data_shape")
        return shape is not None and len(shape) == 1


@dataclass
class RunProblem:
    """A run that produced no usable numbers: failed, interrupted, still running or unfinished."""

    run_dir: Path
    status: str
    stage: str | None = None
    error: str | None = None
    backend: str | None = None
    seed: Any = None
    overrides: list[str] = field(default_factory=list)
    evaluations_recorded: int = 0


@dataclass
class Collection:
    """Everything found below the report inputs."""

    inputs: list[Path]
    records: list[RunEntry]
    problems: list[RunProblem]

    @property
    def warnings(self) -> list[str]:
        """What the report refused to use from the run folders, one line each."""
        return [w for r in self.records for w in r.warnings]

    def display_path(self, path: Path) -> str:
        """``<input folder name>/<path below it>`` for tables; the full path if outside every input."""
        path = Path(path).resolve()
        for root in sorted((p.resolve() for p in self.inputs), key=lambda p: -len(p.parts)):
            base = root.parent if root.is_file() else root
            if path == base or base in path.parents:
                return clean_text(Path(base.name) / path.relative_to(base))
        return clean_text(path)


def _is_job_dir(path: Path) -> bool:
    return (path / ".hydra").is_dir()


def _last_log_line(job_dir: Path) -> str | None:
    """Last non-empty line of the Hydra job log (``<job>.log``), a hint of where it stopped."""
    logs = sorted(job_dir.glob("*.log"))
    for log in logs:
        path = contained_path(job_dir, log.name)
        if path is None or not path.is_file():
            continue
        try:
            lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            continue
        if lines:
            return clean_text(f"{log.name}: {lines[-1][:300]}")
    return None


def _hydra_overrides(job_dir: Path) -> list[str]:
    path = contained_path(job_dir, ".hydra/overrides.yaml")
    if path is None or not path.is_file():
        return []
    try:
        from omegaconf import OmegaConf

        return [clean_text(o) for o in OmegaConf.to_container(OmegaConf.load(path)) or []]
    except Exception:  # a broken overrides file must not stop the report
        return []


def _find(inputs: Sequence[Path]) -> tuple[list[Path], list[Path], list[Path]]:
    """(results.json files, Hydra job folders without one, results.json symlinks that lead out of
    their folder) below the inputs, de-duplicated. A found record's path is its resolved folder
    plus ``results.json``, so the run folder is the folder that holds the file."""
    results: dict[Path, None] = {}
    jobs: dict[Path, None] = {}
    escaped: dict[Path, None] = {}
    for root in inputs:
        if root.is_file():
            if root.name != RESULTS_FILE:
                raise InputError(f"{str(root)!r} is a file but not a {RESULTS_FILE}; pass run folders, "
                                 "sweep folders or a parent folder")
            results[root.resolve()] = None
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames if d not in (".hydra", "checkpoints", "samples", "__pycache__")
                                 and not d.startswith(".venv"))
            if RESULTS_FILE in filenames:
                if contained_path(here, RESULTS_FILE) is not None:
                    results[here.resolve() / RESULTS_FILE] = None
                else:
                    escaped[here.resolve() / RESULTS_FILE] = None
            elif _is_job_dir(here):
                jobs[here.resolve()] = None
    job_list = [j for j in jobs if not any(r.parent == j or j in r.parents for r in results)]
    return sorted(results), sorted(job_list), sorted(escaped)


def _check_files(run_dir: Path, data: dict[str, Any]) -> list[str]:
    """Drop evaluation file paths that lead outside ``run_dir``; one warning per dropped path."""
    warnings = []
    evaluations = data.get("evaluations")
    for ev in evaluations if isinstance(evaluations, list) else []:
        if not isinstance(ev, dict):
            continue
        for key in FILE_KEYS:
            value = ev.get(key)
            if value is None or contained_path(run_dir, value) is not None:
                continue
            ev[key] = None
            warnings.append(f"{run_dir.name}: {key} {str(value)[:200]!r} is not inside the run folder; ignored")
    return warnings


def collect_runs(inputs: Iterable[str | os.PathLike] | str | os.PathLike) -> Collection:
    """Read every record below ``inputs``; see the module docstring for what is kept."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    paths = [Path(p).expanduser() for p in inputs]
    if not paths:
        raise InputError("no report inputs given; pass one or more run, sweep or parent folders")
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise InputError(f"report input(s) do not exist: {', '.join(missing)}")
    result_files, job_dirs, escaped = _find(paths)
    if not result_files and not job_dirs and not escaped:
        raise InputError(f"no {RESULTS_FILE} and no Hydra job folder found below {', '.join(map(str, paths))}; "
                         "pass the folder(s) that training/evaluation runs wrote")
    records: list[RunEntry] = []
    problems: list[RunProblem] = [
        RunProblem(path.parent, "unreadable", error=f"{RESULTS_FILE} is a link to a file outside its run folder; "
                                                    "not read") for path in escaped]
    for path in result_files:
        run_dir = path.parent
        try:
            with open(path) as f:
                data = _clean(json.load(f))
        except (OSError, json.JSONDecodeError, RecursionError) as e:
            problems.append(RunProblem(run_dir, "unreadable", error=clean_text(f"{RESULTS_FILE} cannot be read: {e}")))
            continue
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            found = data.get("schema") if isinstance(data, dict) else type(data).__name__
            problems.append(RunProblem(run_dir, "unreadable",
                                       error=f"unsupported results schema {found!r} (expected {SCHEMA!r})"))
            continue
        status = str(data.get("status") or "unknown")
        if status == "completed":
            records.append(RunEntry(run_dir, data, warnings=_check_files(run_dir, data)))
            continue
        err = data.get("error") or {}
        message = err.get("message") if isinstance(err, dict) else str(err)
        if isinstance(err, dict) and err.get("type"):
            message = f"{err['type']}: {message or '(no message)'}"
        if not message:
            message = ("still running, or killed before it could record an error"
                       if status == "running" else "no error message recorded")
        message = bounded(message, ERROR_CHARS)
        problems.append(RunProblem(
            run_dir, status, stage=(err.get("stage") if isinstance(err, dict) else None) or data.get("stage"),
            error=message, backend=bounded((data.get("backend") or {}).get("name") or ""), seed=data.get("seed"),
            overrides=[str(o) for o in data.get("overrides") or []],
            evaluations_recorded=len(data.get("evaluations") or [])))
    for job in job_dirs:
        hint = _last_log_line(job)
        problems.append(RunProblem(
            job, "unfinished", stage="before the first record",
            error="no results.json: the job stopped before writing its record" + (f" (last log line: {hint})" if hint else ""),
            overrides=_hydra_overrides(job)))
    return Collection(inputs=paths, records=records, problems=problems)


# ---------------------------------------------------------------------------------------------
# flat measurements (one per completed record x evaluation)

def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))


def setting_text(key: str, value: Any) -> str:
    """``k=v`` of one sampler setting as reports show it: ``steps=full`` for the unrespaced process
    (recorded as ``steps: null``), never ``steps=None``."""
    return f"{key}=full" if key == "steps" and value is None else f"{key}={value}"


def settings_label(sampler: dict[str, Any]) -> str:
    """``name (k=v, ...)`` for a sampler dict; ``name (default)`` with no settings."""
    name = bounded(sampler.get("name") or "sampler")
    settings = sampler.get("settings") or {}
    if not settings:
        return f"{name} (default)"
    return f"{name} (" + ", ".join(setting_text(k, v) for k, v in sorted(settings.items())) + ")"


def config_variant(overrides: Sequence[str]) -> str:
    """The overrides that change what a run computes, minus ``model=``, seed and paths."""
    keep = []
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        if key == "model" or any(re.search(p, key) for p in IGNORED_OVERRIDE_PATTERNS):
            continue
        keep.append(o)
    return " ".join(sorted(keep))


def network_evaluations(record: RunEntry, evaluation: dict[str, Any]) -> int | None:
    """Network evaluations per generated image, as recorded by the sampler that made the images."""
    nfe = (evaluation.get("sampler") or {}).get("nfe")
    return int(nfe) if isinstance(nfe, (int, float)) and not isinstance(nfe, bool) else None


def knob_of(evaluation: dict[str, Any]) -> tuple[str, Any, dict[str, Any]]:
    """(moved knob, its value, all knobs) of an evaluation: the fidelity–diversity option that is
    away from its neutral value ("" and None at the unguided / untruncated point)."""
    knobs = (evaluation.get("sampler") or {}).get("knobs") or {}
    if not isinstance(knobs, dict):
        return "", None, {}
    clean = {str(k): v for k, v in knobs.items() if isinstance(v, dict) and "value" in v and "neutral" in v}
    moved = [(k, v["value"]) for k, v in clean.items() if v["value"] != v["neutral"]]
    name, value = moved[0] if moved else ("", None)
    return name, value, clean


def _strip(obj: Any) -> Any:
    """Drop keys that say where/when something ran (seed, device, batch size, timings)."""
    ignored = {"seed", "device", "batch_size", "num_workers", "wall_s", "path", "root", "cache", "cache_dir"}
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in ignored}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def protocol_of(record: RunEntry, evaluation: dict[str, Any]) -> dict[str, Any]:
    """What must be equal for two numbers to share a table (dataset, samples, reference, features)."""
    data = record.data.get("data") or {}
    protocol = evaluation.get("protocol") or {}
    return {
        "dataset": data.get("dataset") or data.get("name"),
        "variant": data.get("variant"),
        "split": data.get("split"),
        "subset": data.get("subset"),
        "subset_seed": data.get("subset_seed") if data.get("subset") is not None else None,
        "num_samples": evaluation.get("num_samples"),
        "reference": _strip(protocol.get("reference") or {}),
        "features": _strip(protocol.get("features") or {}),
        "metric_settings": _strip(protocol.get("metric_settings") or {}),
    }


def measurements(collection: Collection) -> list[dict[str, Any]]:
    """One flat dict per (completed record, evaluation); a record without evaluations gives one
    row without metrics so that its NLL and training figures still reach the table."""
    rows = []
    for rec in collection.records:
        d = rec.data
        train = d.get("train") or {}
        nll = d.get("nll")
        evals = d.get("evaluations") or [None]
        for ev in evals:
            ev = ev or {}
            sampler = ev.get("sampler") or {"name": "none", "settings": {}}
            proto = protocol_of(rec, ev)
            rows.append({
                "record": rec,
                "evaluation": ev,
                "run_dir": str(rec.run_dir),
                "backend": rec.backend_name,
                "display": rec.display_name,
                "family": rec.family,
                "seed": rec.seed,
                "toy": rec.is_toy,
                "sampler": settings_label(sampler) if ev else "not evaluated",
                "sampler_key": _canonical(sampler),
                "sampler_method": str((sampler.get("settings") or {}).get("method") or ""),
                "config": config_variant(rec.overrides),
                "budget": _canonical({**(train.get("budget") or {}), "batch_size": train.get("batch_size")}),
                "protocol": proto,
                "protocol_key": _canonical(proto),
                "comparable": bool(ev.get("comparable", True)) if ev else True,
                "warnings": list(ev.get("warnings") or []),
                "metrics": {k: v for k, v in (ev.get("metrics") or {}).items()
                            if isinstance(v, (int, float)) and not isinstance(v, bool)},
                "intervals": {k: v for k, v in (ev.get("intervals") or {}).items() if isinstance(v, dict)},
                "images_per_s": (ev.get("timings") or {}).get("sample_images_per_s"),
                "nfe": network_evaluations(rec, ev) if ev else None,
                "nll": nll,
                "train_steps": train.get("steps"),
                "images_seen": train.get("images_seen"),
                "train_wall_s": train.get("wall_s"),
                "device": (d.get("environment") or {}).get("device_name") or (d.get("environment") or {}).get("device"),
                "benchmark": (d.get("protocol") or {}).get("name") if isinstance(d.get("protocol"), dict) else None,
                "samples_file": ev.get("samples_file"),
                "knob": knob_of(ev)[0],
                "knob_value": knob_of(ev)[1],
                "knobs": knob_of(ev)[2],
                "grid_file": ev.get("grid_file"),
            })
    return rows


__all__ = ["Collection", "RunProblem", "RunEntry", "clean_text", "collect_runs", "config_variant", "contained_path",
           "measurements", "network_evaluations", "protocol_of", "settings_label"]
