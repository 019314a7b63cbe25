"""The HTML report: one ``index.html`` with the PNG figures beside it (or embedded as base64).

Order: title, banner(s), summary, per protocol (fingerprint, table, footnotes, trade-off and
precision/recall plots, sample montages), failed and unfinished runs, the published anchors in
a separate labelled block, training curves, and per run the Hydra overrides that made it.

Every piece of record or file-system text is escaped (:func:`html.escape`, quotes included, so
also inside attributes); links to run files are made only for files that resolve inside their
run folder, and what the report refused to use from the run folders is listed near the top.
"""

from __future__ import annotations

import base64
import html
import os
import shlex
from pathlib import Path
from typing import Any

import pandas as pd

from generative_bench.io import atomic_write_text
from generative_bench.reporting.anchors import ANCHOR_HEADING, ANCHOR_NOTE, GUIDANCE_HEADING, anchors_frame
from generative_bench.reporting.render import has_knob_sweep
from generative_bench.reporting.collect import Collection, clean_text, contained_path
from generative_bench.reporting.leaderboard import (BOLD_CLOSE, BOLD_OPEN, NOT_COMPARABLE, Leaderboard,
                                                    display_frame, fingerprint_items)
from generative_bench.reporting.render import banner

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1400px;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.5em 0}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f3f3f3} tr.flag td{background:#fff4f4}
.banner{background:#b00020;color:#fff;font-weight:bold;padding:.8em 1em;font-size:1.15em;border-radius:4px;margin:1em 0}
.fingerprint{background:#f7f9fc;border-left:4px solid #4a6fa5;padding:.4em 1em;font-size:13px}
.fingerprint dt{font-weight:bold;float:left;clear:left;width:17em}.fingerprint dd{margin-left:17.5em}
.notes{font-size:12px;color:#444}.anchors{border:2px dashed #999;background:#fafafa;padding:.5em 1em;margin:2em 0}
.anchors h2{color:#555}.figs img{max-width:100%;border:1px solid #ddd;margin:4px}
.run{border-top:1px solid #ddd;padding:.3em 0;font-size:13px} code{background:#f2f2f2;padding:1px 3px}
.failed td{background:#fff8e6}
"""


def _esc(text: Any) -> str:
    return html.escape(str(text)).replace(BOLD_OPEN, "<b>").replace(BOLD_CLOSE, "</b>")


def _esc_plain(text: Any) -> str:
    """Escape text that carries no bold markers (file names, messages): control characters dropped."""
    return html.escape(clean_text(text))


def _table(frame: pd.DataFrame, flags: list[bool] | None = None, cls: str = "") -> str:
    if frame.empty:
        return "<p><i>none</i></p>"
    head = "".join(f"<th>{_esc(c)}</th>" for c in frame.columns)
    rows = []
    for i, (_, r) in enumerate(frame.iterrows()):
        tr = ' class="flag"' if flags is not None and flags[i] else ""
        rows.append(f"<tr{tr}>" + "".join(f"<td>{_esc(v)}</td>" for v in r) + "</tr>")
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


class _Images:
    """Image references relative to the report folder, or base64 data URIs."""

    def __init__(self, out_dir: Path, embed: bool):
        self.out_dir, self.embed = Path(out_dir), embed

    def tag(self, path: Path | None, alt: str, width: int | None = None) -> str:
        if not path:
            return ""
        path = Path(path)
        if self.embed:
            src = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
        else:
            src = os.path.relpath(path, self.out_dir)
        w = f' width="{width}"' if width else ""
        return f'<img src="{_esc(src)}" alt="{_esc(alt)}" title="{_esc(alt)}"{w}>'

    def link(self, path: Path, label: str) -> str:
        return f'<a href="{_esc(os.path.relpath(path, self.out_dir))}">{_esc(label)}</a>'


def _run_section(collection: Collection, images: _Images, plots: dict[str, Any]) -> str:
    parts = []
    entries = [(r.run_dir, r.data.get("status"), r.backend_name, r.seed, r.overrides, r.data.get("command"),
                r.data.get("stage")) for r in collection.records]
    entries += [(p.run_dir, p.status, p.backend or "?", p.seed, p.overrides, None, p.stage) for p in collection.problems]
    for run_dir, status, backend, seed, overrides, command, stage in sorted(entries, key=lambda e: str(e[0])):
        files = [images.link(run_dir / f, f) for f in ("results.json", "config.yaml", "train_log.csv", ".hydra/overrides.yaml")
                 if (target := contained_path(run_dir, f)) is not None and target.is_file()]
        cmd = command if isinstance(command, str) else (" ".join(shlex.quote(str(c)) for c in command) if command else None)
        lines = [f"<b>{_esc_plain(run_dir.name)}</b> — {_esc(backend)}, seed {_esc(seed)}, "
                 f"status <b>{_esc(status)}</b>"
                 + (f", stage {_esc(stage)}" if stage else ""),
                 f"run folder: <code>{_esc(collection.display_path(run_dir))}</code>",
                 "Hydra overrides: <code>" + (_esc(" ".join(shlex.quote(o) for o in overrides)) or "(none)") + "</code>"]
        if cmd:
            lines.append(f"command: <code>{_esc(cmd)}</code>")
        if files:
            lines.append("files: " + " · ".join(files))
        curve = plots.get("training", {}).get(str(run_dir))
        parts.append('<div class="run">' + "<br>".join(lines) + (
            f'<div class="figs">{images.tag(curve, clean_text(f"training curves {run_dir.name}"), 700)}</div>'
            if curve else "") + "</div>")
    return "\n".join(parts)


def build_html(board: Leaderboard, collection: Collection, out_dir: Path, title: str, summary: str,
               plots: dict[str, Any] | None = None, plot_errors: list[str] | None = None,
               embed_images: bool = False) -> Path:
    """Write ``out_dir/index.html`` and return its path."""
    out_dir = Path(out_dir)
    plots = plots or {}
    images = _Images(out_dir, embed_images)
    b = banner(board)
    body = [f"<h1>{_esc(title)}</h1>"]
    if b:
        body.append(f'<div class="banner">{_esc(b)}</div>')
    body.append(f"<p>{_esc(summary)}</p>")
    if collection.warnings:
        body.append("<h2>Ignored in the run folders</h2><ul>"
                    + "".join(f"<li>{_esc_plain(w)}</li>" for w in collection.warnings) + "</ul>")
    for table in board.tables:
        disp = display_frame(table)
        body.append(f'<h2 id="{table.pid}">{_esc(table.title)}</h2>')
        if not table.comparable:
            body.append(f'<div class="banner">⚠ {_esc(NOT_COMPARABLE)} — {_esc("; ".join(table.reasons))}</div>')
        body.append('<div class="fingerprint"><b>Protocol fingerprint</b><dl>' + "".join(
            f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in fingerprint_items(table)) + "</dl></div>")
        body.append(_table(disp.frame, flags=[not c for c in table.frame["comparable"]]))
        body.append('<ol class="notes">' + "".join(f"<li>{_esc(n)}</li>" for n in disp.notes) + "</ol>")
        figs = [images.tag(plots.get("knob_tradeoff", {}).get(table.pid), "fidelity vs diversity as the knob moves", 1000),
                images.tag(plots.get("tradeoff", {}).get(table.pid), "quality / speed trade-off", 900),
                images.tag(plots.get("precision_recall", {}).get(table.pid), "precision vs recall", 450),
                images.tag(plots.get("metrics", {}).get(table.pid), "every metric", 1000)]
        samples = plots.get("samples", {}).get(table.pid, {})
        figs += [images.tag(p, f"samples: {name}", 330) for name, p in samples.items()]
        if any(figs):
            body.append('<div class="figs">' + "".join(figs) + "</div>")
    if not board.tables:
        body.append("<p><i>No completed run with results was found.</i></p>")
    body.append("<h2>Failed and unfinished runs</h2>")
    body.append(_table(board.failed, cls="failed") if len(board.failed) else "<p><i>none</i></p>")
    if any(not t.toy for t in board.tables):
        body.append(f'<div class="anchors"><h2>{_esc(ANCHOR_HEADING)}</h2><p>{_esc(ANCHOR_NOTE)}</p>'
                    f"{_table(anchors_frame())}</div>")
    if has_knob_sweep(board):
        body.append(f'<div class="anchors"><h2>{_esc(GUIDANCE_HEADING)}</h2><p>{_esc(ANCHOR_NOTE)}</p>'
                    f"{_table(anchors_frame(guidance=True))}</div>")
    body.append("<h2>Runs</h2>")
    body.append(_run_section(collection, images, plots))
    if plot_errors:
        body.append("<h2>Figures that could not be made</h2><ul>"
                    + "".join(f"<li>{_esc_plain(e)}</li>" for e in plot_errors)
                    + "</ul>")
    doc = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
           f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    return atomic_write_text(out_dir / "index.html", doc)


__all__ = ["build_html"]
