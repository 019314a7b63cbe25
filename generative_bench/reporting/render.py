"""Text outputs of the leaderboard: Markdown, CSV and LaTeX.

Every output carries the same pieces: the NOT-comparable banner when any evaluation was made
with non-reference settings (e.g. random-init Inception weights), one table per protocol with
its fingerprint and footnotes, the failed/unfinished runs, and the published anchors in their
own clearly labelled block.

Record content is untrusted text: in Markdown it cannot open raw HTML, entities or links (``<``
and ``>`` become ``&lt;``/``&gt;``, an ``&`` that would start a character reference becomes
``&amp;``, ``](`` is broken, ``|`` and line breaks are escaped) and the only link targets are the
report's own figure paths; CSV string cells that a spreadsheet would read as a formula get a
leading ``'``; LaTeX is escaped character by character and comment lines are kept on one line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from generative_bench.io import atomic_write_text
from generative_bench.reporting.anchors import ANCHOR_HEADING, ANCHOR_NOTE, GUIDANCE_HEADING, anchors_frame
from generative_bench.reporting.leaderboard import (BOLD_CLOSE, BOLD_OPEN, NOT_COMPARABLE, Leaderboard,
                                                    display_frame, fingerprint_items)


def banner(board: Leaderboard) -> str | None:
    """The loud warning shown at the top of every output, or None when all is comparable."""
    if board.comparable:
        return None
    return f"⚠ {NOT_COMPARABLE}: " + "; ".join(board.reasons or ["an evaluation recorded comparable=false"])


def _plain(text: str) -> str:
    return str(text).replace(BOLD_OPEN, "").replace(BOLD_CLOSE, "")


def one_line(text) -> str:
    """``text`` with every line break replaced by a space (for comment and header lines)."""
    return re.sub(r"[\r\n\u2028\u2029\x0b\x0c\x85]+", " ", str(text))


def record_warnings(board: Leaderboard) -> list[str]:
    """What the report refused to use from the records behind ``board`` (see ``RunEntry.warnings``)."""
    seen: dict[str, None] = {}
    for table in board.tables:
        for row in table.rows:
            for w in getattr(row.get("record"), "warnings", None) or []:
                seen[w] = None
    return list(seen)


# ------------------------------------------------------------------------------------ markdown

#: an ``&`` that would start an HTML character reference in Markdown
_MD_ENTITY = re.compile(r"&(?=#[0-9]{1,7};|#[xX][0-9a-fA-F]{1,6};|[A-Za-z][A-Za-z0-9]{0,31};)")
#: link targets written into Markdown: the report's own relative figure paths
_SAFE_TARGET = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*")


def md_text(text) -> str:
    """Record text for one Markdown line: no raw HTML, entity or link, no line break."""
    text = _MD_ENTITY.sub("&amp;", str(text)).replace("<", "&lt;").replace(">", "&gt;")
    return one_line(text.replace("](", "]\\("))


def _md_cell(text) -> str:
    return md_text(text).replace("|", "\\|").replace(BOLD_OPEN, "**").replace(BOLD_CLOSE, "**")


def _md_link(label: str, target: str) -> str | None:
    target = str(target).replace("\\", "/")
    if not _SAFE_TARGET.fullmatch(target) or ".." in target.split("/"):
        return None
    return f"[{_md_cell(label)}]({target})"


def _md_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "_none_"
    shown = frame.astype(str).map(_md_cell)
    shown.columns = [_md_cell(c) for c in shown.columns]
    return shown.to_markdown(index=False, disable_numparse=True)


def to_markdown(board: Leaderboard, title: str, summary: str, figures: list[tuple[str, str]] | None = None) -> str:
    out = [f"# {md_text(title)}", ""]
    b = banner(board)
    if b:
        out += [f"> **{_md_cell(b)}**", ""]
    out += [md_text(summary), ""]
    warnings = record_warnings(board)
    if warnings:
        out += ["**Ignored in the run folders:**", ""] + [f"- {_md_cell(w)}" for w in warnings] + [""]
    for table in board.tables:
        disp = display_frame(table)
        out += [f"## {_md_cell(table.title)}", ""]
        if not table.comparable:
            out += [f"> **⚠ {NOT_COMPARABLE}** — " + _md_cell("; ".join(table.reasons)), ""]
        out += ["**Protocol fingerprint**", ""]
        out += [f"- **{k}:** {_md_cell(v)}" for k, v in fingerprint_items(table)]
        out += ["", _md_table(disp.frame), ""]
        out += [f"{i}. {_md_cell(n)}" if not n.startswith(("⚠", "Values")) else f"- {_md_cell(n)}"
                for i, n in enumerate(disp.notes, 1)]
        out += [""]
    if not board.tables:
        out += ["_No completed run with results was found._", ""]
    out += ["## Failed and unfinished runs", ""]
    out += [_md_table(board.failed) if len(board.failed) else "_none_", ""]
    out += anchors_markdown(board)
    links = [link for label, path in figures or [] if (link := _md_link(label, path))]
    if links:
        out += ["## Figures", ""] + [f"- {link}" for link in links] + [""]
    return "\n".join(out)


def has_knob_sweep(board: Leaderboard) -> bool:
    """True when some table holds a fidelity–diversity sweep (a moved guidance/truncation/temperature knob)."""
    return any("knob" in t.frame and (t.frame["knob"] != "").any() for t in board.tables)


def anchors_markdown(board: Leaderboard) -> list[str]:
    out = []
    if any(not t.toy for t in board.tables):
        out += [f"## {ANCHOR_HEADING}", "", f"> {ANCHOR_NOTE}", "", _md_table(anchors_frame()), ""]
    if has_knob_sweep(board):
        out += [f"## {GUIDANCE_HEADING}", "", f"> {ANCHOR_NOTE}", "", _md_table(anchors_frame(guidance=True)), ""]
    return out


# ----------------------------------------------------------------------------------------- csv

#: first characters that make a spreadsheet read a cell as a formula
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value):
    """A string that a spreadsheet would read as a formula, with a leading ``'``; anything else as is."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def safe_csv(frame: pd.DataFrame) -> str:
    """``frame.to_csv(index=False)`` with :func:`csv_safe` applied to every string cell and header."""
    shown = frame.copy()
    shown.columns = [csv_safe(str(c)) for c in frame.columns]
    for col in shown.columns:
        if not (pd.api.types.is_numeric_dtype(shown[col]) or pd.api.types.is_bool_dtype(shown[col])):
            shown[col] = shown[col].map(csv_safe)
    return shown.to_csv(index=False)


def to_csv_text(board: Leaderboard) -> str:
    """Machine-readable numbers (one row per table row); leading ``#`` lines carry the banner and
    say how many lines to skip (``comment='#'`` would also cut cells that contain '#')."""
    rows = []
    for table in board.tables:
        p = table.protocol
        for _, r in table.frame.iterrows():
            row = {"protocol": table.pid, "dataset": p.get("dataset"), "variant": p.get("variant"),
                   "num_samples": p.get("num_samples"), "protocol_fingerprint": json.dumps(p, sort_keys=True, default=str),
                   "comparable": bool(r["comparable"]),
                   "backend": r["backend"], "family": r["family"], "config": r["config"], "budget": r["budget"],
                   "sampler": r["sampler"], "n_seeds": r["n"], "seeds": r["seeds"]}
            for spec in table.metrics:
                unit = "_x1e3" if spec.scale == 1e3 else ""
                row[f"{spec.key}{unit}_mean"] = r[f"{spec.key}_mean"]
                row[f"{spec.key}{unit}_std"] = r[f"{spec.key}_std"]
            row["nll_bpd_mean"] = r["nll_mean"] if r["nll_status"] == "ok" else None
            row["nll_bpd_std"] = r["nll_std"] if r["nll_status"] == "ok" else None
            row["nll_note"] = {"ok": "; ".join(r["nll_bounds"]), "undefined": r["nll_reason"],
                               "missing": "not measured"}[r["nll_status"]]
            row.update({"sample_images_per_s_mean": r["ips_mean"], "sample_images_per_s_std": r["ips_std"],
                        "nfe": r["nfe"], "train_steps_mean": r["train_steps_mean"],
                        "images_seen_mean": r["images_seen_mean"], "train_wall_s_mean": r["train_wall_s_mean"],
                        "train_wall_s_std": r["train_wall_s_std"], "run_dirs": " ".join(r["run_dirs"])})
            rows.append(row)
    head = []
    b = banner(board)
    if b:
        head.append(f"# {one_line(b)}")
    head.append("# mean/std over seeds (std: sample standard deviation, ddof=1; empty with one seed); "
                f"read with pandas.read_csv(path, skiprows={len(head) + 1})")
    return "\n".join(head) + "\n" + safe_csv(pd.DataFrame(rows))


# --------------------------------------------------------------------------------------- latex

_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_TEX_UNICODE = {"±": r"$\pm$", "—": "---", "–": "--", "×": r"$\times$", "≤": r"$\leq$", "≥": r"$\geq$",
                "⚠": r"(!)", "³": r"$^{3}$", "·": r"$\cdot$", "→": r"$\to$", "²": r"$^{2}$"}


def tex_escape(text) -> str:
    out = []
    for ch in one_line(text):
        out.append(_TEX_SPECIAL.get(ch) or _TEX_UNICODE.get(ch) or ch)
    return "".join(out).replace(BOLD_OPEN, r"\textbf{").replace(BOLD_CLOSE, "}")


def _tex_table(frame: pd.DataFrame, caption: str, notes: list[str]) -> str:
    shown = frame.astype(str).map(tex_escape)
    shown.columns = [tex_escape(c) for c in frame.columns]
    body = shown.style.hide(axis="index").to_latex(hrules=True, column_format="l" * len(shown.columns))
    lines = ["\\begin{table}[ht]", "\\centering", "\\scriptsize", f"\\caption{{{caption}}}",
             "\\resizebox{\\textwidth}{!}{%", body.rstrip(), "}"]
    if notes:
        lines += ["\\par\\smallskip\\raggedright\\footnotesize"] + [f"{tex_escape(n)}\\\\" for n in notes]
    lines.append("\\end{table}")
    return "\n".join(lines)


def to_latex(board: Leaderboard, title: str) -> str:
    b = banner(board)
    out = ["% generated by generative-bench; needs \\usepackage{booktabs} and \\usepackage{graphicx}",
           f"% {one_line(title)}"]
    if b:
        out.append(f"% {one_line(b)}")
    out += [f"% ignored in the run folders: {one_line(w)}" for w in record_warnings(board)]
    for table in board.tables:
        disp = display_frame(table)
        fp = "Protocol fingerprint: " + "; ".join(f"{k}: {v}" for k, v in fingerprint_items(table)) + "."
        if not table.comparable:
            warn = f"\\textbf{{{tex_escape('⚠ ' + NOT_COMPARABLE)}}} ({tex_escape('; '.join(table.reasons))}). "
        elif b:
            warn = f"This table is comparable; \\textbf{{other tables in this report are {NOT_COMPARABLE}}}. "
        else:
            warn = ""
        out.append(_tex_table(disp.frame, f"{warn}{tex_escape(table.title)}.", [fp] + disp.notes))
    if len(board.failed):
        failed = board.failed[["run folder", "status", "stage", "error"]]
        out.append(_tex_table(failed, "Failed and unfinished runs (no numbers in the tables above).", []))
    if any(not t.toy for t in board.tables):
        out.append(_tex_table(anchors_frame(), tex_escape(f"{ANCHOR_HEADING}. {ANCHOR_NOTE}"), []))
    return "\n\n".join(out) + "\n"


def write_text_outputs(board: Leaderboard, out_dir: Path, formats, title: str, summary: str,
                       figures: list[tuple[str, str]] | None = None) -> dict[str, Path]:
    """Write leaderboard.md / .csv / .tex (those asked for) and failed_runs.csv."""
    out_dir = Path(out_dir)
    written: dict[str, Path] = {}
    if "md" in formats:
        written["md"] = atomic_write_text(out_dir / "leaderboard.md", to_markdown(board, title, summary, figures))
    if "csv" in formats:
        written["csv"] = atomic_write_text(out_dir / "leaderboard.csv", to_csv_text(board))
        written["failed_csv"] = atomic_write_text(out_dir / "failed_runs.csv", safe_csv(board.failed))
    if "tex" in formats:
        written["tex"] = atomic_write_text(out_dir / "leaderboard.tex", to_latex(board, title))
    return written


__all__ = ["banner", "csv_safe", "md_text", "one_line", "record_warnings", "safe_csv", "tex_escape", "to_csv_text",
           "to_latex", "to_markdown", "write_text_outputs"]
