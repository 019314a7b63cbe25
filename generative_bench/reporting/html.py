"""The HTML report: one ``index.html`` with the PNG figures beside it (or embedded as base64).

Order, so that the first screen (1280x800) answers the question: title, the NOT-comparable
warning once in one sentence, summary; per protocol a short fingerprint (data, samples vs
reference, extractor name + weights hash + comparable), the headline table (one row per backend
at its headline operating point, with its generated caption), every backend's samples side by
side, footnotes and the trade-off figures; then, folded (``<details>``), the full fingerprint and
the full sweep table of each backend. After that the training curves (one figure per logged
quantity, every run of the table), failed and unfinished runs, the published anchors in a
separate labelled block, and per run the Hydra overrides that made it.

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
from generative_bench.reporting.anchors import ANCHOR_NOTE
from generative_bench.reporting.collect import Collection, clean_text, contained_path
from generative_bench.reporting.leaderboard import (BOLD_CLOSE, BOLD_OPEN, Leaderboard, display_frame,
                                                    fingerprint_items, fingerprint_summary, headline,
                                                    headline_display)
from generative_bench.reporting.render import (FIRST_STAGE_MEASURED, anchor_sections, backend_frames, banner,
                                               first_stage_frame)

_CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:0 auto;max-width:1400px;padding:.6em 1em;color:#222;
font-size:14px;line-height:1.35}
h1{font-size:22px;margin:.2em 0 .3em}h2{font-size:18px;margin:.8em 0 .3em}h3{font-size:15px;margin:.8em 0 .3em}
table{border-collapse:collapse;font-size:13px;margin:.3em 0}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3;font-weight:600} tr.flag td{background:#fff4f4}
table.headline{font-size:13.5px}table.headline td{white-space:nowrap}table.headline td.setting{white-space:normal;
min-width:17em;max-width:26em;font-size:12px}
table.headline caption{caption-side:top;text-align:left;padding:.2em 0 .35em;font-size:14px}
.wide{max-width:100%;overflow-x:auto}
.banner{background:#b00020;color:#fff;font-weight:bold;padding:.45em .8em;border-radius:4px;margin:.3em 0}
.summary{font-size:12px;color:#555;margin:.2em 0}
ul.fp{list-style:none;padding:0;margin:.2em 0;font-size:13px}ul.fp li{margin:0}
.fingerprint{background:#f7f9fc;border-left:4px solid #4a6fa5;padding:.3em 1em;font-size:13px;margin:.5em 0}
.fingerprint dt{font-weight:bold;float:left;clear:left;width:17em}.fingerprint dd{margin-left:17.5em;
overflow-wrap:anywhere}
details{margin:.3em 0}summary{cursor:pointer;font-weight:600}
.notes{font-size:12px;color:#444;margin:.3em 0}.anchors{border:2px dashed #999;background:#fafafa;padding:.5em 1em;
margin:2em 0}
.anchors h2{color:#555}.figs img{max-width:100%;height:auto;border:1px solid #ddd;margin:4px}
.panel img{display:block;max-width:100%;max-height:290px;width:auto;height:auto}
.curves img{max-width:32%;height:auto;border:1px solid #ddd;margin:2px}
.run{border-top:1px solid #ddd;padding:.3em 0;font-size:13px;overflow-wrap:anywhere}
code{background:#f2f2f2;padding:1px 3px}
.failed td{background:#fff8e6}
"""


def _esc(text: Any) -> str:
    return html.escape(str(text)).replace(BOLD_OPEN, "<b>").replace(BOLD_CLOSE, "</b>")


def _esc_plain(text: Any) -> str:
    """Escape text that carries no bold markers (file names, messages): control characters dropped."""
    return html.escape(clean_text(text))


def _table(frame: pd.DataFrame, flags: list[bool] | None = None, cls: str = "", caption: str | None = None,
           table_id: str | None = None, cell_classes: dict[int, str] | None = None) -> str:
    if frame.empty:
        return "<p><i>none</i></p>"
    head = "".join(f"<th>{_esc(c)}</th>" for c in frame.columns)
    rows = []
    cell_classes = cell_classes or {}
    for i, (_, r) in enumerate(frame.iterrows()):
        tr = ' class="flag"' if flags is not None and flags[i] else ""
        rows.append(f"<tr{tr}>" + "".join(
            f'<td class="{cell_classes[j]}">{_esc(v)}</td>' if j in cell_classes else f"<td>{_esc(v)}</td>"
            for j, v in enumerate(r)) + "</tr>")
    ident = f' id="{_esc(table_id)}"' if table_id else ""
    cap = f"<caption>{caption}</caption>" if caption else ""
    return (f'<div class="wide"><table class="{cls}"{ident}>{cap}<thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


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


def _protocol_section(table, images: _Images, plots: dict[str, Any]) -> list[str]:
    """One protocol: short fingerprint, headline table, sample panel, notes, figures, folded details."""
    pid = table.pid
    h = headline(table)
    disp = headline_display(h)
    body = [f'<section class="protocol" id="{_esc(pid)}">', f"<h2>{_esc(table.short_title)}</h2>"]
    body.append('<ul class="fp">' + "".join(f"<li><b>{_esc(k)}:</b> {_esc(v)}</li>"
                                           for k, v in fingerprint_summary(table)) + "</ul>")
    body.append(_table(disp.frame, cls="headline", table_id=f"headline-{pid}",
                       caption=f"<b>Headline.</b> {_esc(h.caption)}", cell_classes={1: "setting"}))
    panel = plots.get("headline_samples", {}).get(pid)
    if panel:
        body.append('<div class="panel">' + images.tag(panel, f"samples at the headline setting, {pid}") + "</div>")
    body.append('<ol class="notes">' + "".join(f"<li>{_esc(n)}</li>" for n in disp.notes) + "</ol>")
    figs = [images.tag(plots.get("knob_tradeoff", {}).get(pid), "fidelity vs diversity as the knob moves"),
            images.tag(plots.get("tradeoff", {}).get(pid), "quality / speed trade-off"),
            images.tag(plots.get("precision_recall", {}).get(pid), "precision vs recall"),
            images.tag(plots.get("metrics", {}).get(pid), "every metric")]
    if any(figs):
        body.append('<div class="figs">' + "".join(figs) + "</div>")
    body.append('<details class="fingerprint"><summary>Full protocol fingerprint</summary><dl>' + "".join(
        f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in fingerprint_items(table)) + "</dl></details>")
    body.append("<h3>Full sweep tables</h3>")
    samples = plots.get("samples", {}).get(pid, {})
    for backend, rows in backend_frames(table):
        full = display_frame(table, rows, compact=True)
        n = len(rows)
        body.append(f"<details><summary>{_esc(backend)} — {n} setting{'' if n == 1 else 's'}</summary>"
                    + _table(full.frame, flags=[not c for c in rows["comparable"]])
                    + '<ol class="notes">' + "".join(f"<li>{_esc(x)}</li>" for x in full.notes) + "</ol>"
                    + (f'<div class="figs">{images.tag(samples[backend], f"samples: {backend}")}</div>'
                       if samples.get(backend) else "")
                    + "</details>")
    body.append("</section>")
    return body


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
    body.append(f'<p class="summary">{_esc(summary)}</p>')
    if collection.warnings:
        body.append("<h2>Ignored in the run folders</h2><ul>"
                    + "".join(f"<li>{_esc_plain(w)}</li>" for w in collection.warnings) + "</ul>")
    for table in board.tables:
        body += _protocol_section(table, images, plots)
    if not board.tables:
        body.append("<p><i>No completed run with results was found.</i></p>")
    curves = [(pid, name, path) for pid, figs in plots.get("training_metrics", {}).items() for name, path in figs.items()]
    if curves:
        body.append("<h2>Training curves</h2>")
        body.append('<div class="curves">' + "".join(
            images.tag(path, f"training: {name} ({pid})") for pid, name, path in curves) + "</div>")
    first = first_stage_frame(board)
    if len(first):
        body.append(f"<h2>{_esc(FIRST_STAGE_MEASURED)}</h2>{_table(first)}")
    body.append("<h2>Failed and unfinished runs</h2>")
    body.append(_table(board.failed, cls="failed") if len(board.failed) else "<p><i>none</i></p>")
    for heading, frame in anchor_sections(board):
        body.append(f'<div class="anchors"><h2>{_esc(heading)}</h2><p>{_esc(ANCHOR_NOTE)}</p>{_table(frame)}</div>')
    n_runs = len(collection.records) + len(collection.problems)
    body.append("<h2>Runs</h2>")
    body.append(f"<details><summary>{n_runs} run folder(s): Hydra overrides, commands, files and training curves"
                "</summary>" + _run_section(collection, images, plots) + "</details>")
    if plot_errors:
        body.append("<h2>Figures that could not be made</h2><ul>"
                    + "".join(f"<li>{_esc_plain(e)}</li>" for e in plot_errors)
                    + "</ul>")
    doc = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
           f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{_esc(title)}</title>'
           f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    return atomic_write_text(out_dir / "index.html", doc)


__all__ = ["build_html"]
