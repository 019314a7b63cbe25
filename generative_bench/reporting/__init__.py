"""Leaderboards, figures and the HTML report, built from run folders' ``results.json`` alone.

>>> paths = build_report(["runs/sweep_2026-11-23_10-00-00"], "reports/sweep")  # doctest: +SKIP

writes ``leaderboard.md``, ``leaderboard.csv`` (+ ``failed_runs.csv``), ``leaderboard.tex``,
``leaderboard.json``, ``index.html`` and ``plots/*.png`` under the output folder. Every output
opens with the headline (one row per backend at its headline operating point, see
:data:`~generative_bench.reporting.leaderboard.HEADLINE_RULE`) and keeps the full sweep below.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Iterable, Sequence

from generative_bench.errors import InputError
from generative_bench.io import atomic_write_json, read_json
from generative_bench.reporting.collect import Collection, collect_runs
from generative_bench.reporting.leaderboard import Leaderboard, build_leaderboard

FORMATS = ("md", "csv", "html", "tex", "json")


def _summary(collection: Collection, board: Leaderboard) -> str:
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    inputs = ", ".join(str(p) for p in collection.inputs)
    n_bad = len(collection.problems)
    return (f"Built {when} from {len(collection.records)} completed run(s) in {len(board.tables)} protocol table(s)"
            f"{f'; {n_bad} failed or unfinished run(s) listed separately' if n_bad else ''}. Inputs: {inputs}.")


def _made_files(made) -> list[Path]:
    """Every figure path in ``make_plots``' nested result."""
    if isinstance(made, dict):
        return [p for v in made.values() for p in _made_files(v)]
    return [Path(made)] if made else []


def build_report(inputs: Iterable[str | os.PathLike] | str | os.PathLike, out_dir: str | os.PathLike,
                 formats: Sequence[str] = FORMATS, title: str | None = None, plots: bool = True,
                 embed_images: bool = False) -> dict[str, Path]:
    """Collect the runs below ``inputs`` and write the report files under ``out_dir``.

    Returns ``{"md"|"csv"|"failed_csv"|"tex"|"json"|"html": path, "plots": [png paths]}`` for what was
    written. Figures are skipped with ``plots=False``; ``embed_images`` puts them inside
    ``index.html`` as base64 instead of linking the PNGs beside it.
    """
    formats = tuple(formats)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise InputError(f"unknown report format(s) {unknown}; choose from {list(FORMATS)}")
    collection = collect_runs(inputs)
    out = Path(out_dir)
    title = title or "generative-bench leaderboard"
    key = _content_key(collection, formats=formats, title=title, plots=plots, embed_images=embed_images)
    kept = _kept_report(out, key)
    if kept is not None:
        return kept
    board = build_leaderboard(collection)
    out.mkdir(parents=True, exist_ok=True)
    summary = _summary(collection, board)

    made, errors, pngs = {}, [], []
    if plots:
        from generative_bench.reporting.plots import make_plots

        runs = [(r.run_dir, f"{r.run_dir.name} — {r.backend_name}, seed {r.seed}") for r in collection.records]
        runs += [(p.run_dir, f"{p.run_dir.name} — {p.backend or '?'}, seed {p.seed} ({p.status})")
                 for p in collection.problems]
        made, errors = make_plots(board, runs, out / "plots")
        pngs = sorted(set(_made_files(made)))  # this build's figures (not older files left in plots/)

    from generative_bench.reporting.render import write_text_outputs

    figures = [(p.stem, os.path.relpath(p, out)) for p in pngs]
    written = write_text_outputs(board, out, formats, title, summary, figures)
    if "html" in formats:
        from generative_bench.reporting.html import build_html

        written["html"] = build_html(board, collection, out, title, summary, made, errors, embed_images)
    written["plots"] = pngs
    def rel(p: Path) -> str:
        return os.path.relpath(p, out)

    atomic_write_json(out / KEY_FILE, {"content_key": key, "written": {
        k: rel(v) if isinstance(v, Path) else [rel(p) for p in v] for k, v in written.items()}})
    return written


#: what a report folder was built from (``build_report`` keeps the folder when it would be the same)
KEY_FILE = ".report_key.json"


def _content_key(collection: Collection, **options) -> str:
    """What the report would show: the records' results (not the times a rerun rewrites), the
    failed runs, the options and the code."""
    from generative_bench.content import records_digest

    records = [(os.fspath(r.run_dir), r.data) for r in collection.records]
    problems = [(os.fspath(p.run_dir), {"status": p.status, "stage": p.stage, "error": p.error})
                for p in collection.problems]
    return records_digest(records + problems, inputs=[os.fspath(p) for p in collection.inputs], **options)


def _kept_report(out: Path, key: str) -> dict[str, Path] | None:
    """The paths of the report already in ``out`` when it was built from the same content and all
    its files are still there; None otherwise (it is then built again)."""
    try:
        stored = read_json(out / KEY_FILE)
    except (OSError, ValueError):
        return None
    written = stored.get("written") if isinstance(stored, dict) else None
    if stored.get("content_key") != key or not isinstance(written, dict):
        return None
    paths = {k: (out / v if isinstance(v, str) else [out / p for p in v]) for k, v in written.items()}
    files = [p for v in paths.values() for p in (v if isinstance(v, list) else [v])]
    if not all(p.is_file() and p.resolve().is_relative_to(out.resolve()) for p in files):
        return None
    return paths


__all__ = ["FORMATS", "build_leaderboard", "build_report", "collect_runs"]
