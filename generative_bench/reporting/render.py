"""Text outputs of the leaderboard: Markdown, CSV, LaTeX and JSON.

Every output has the same order: the NOT-comparable warning once, in one sentence, when any
evaluation was made with non-reference settings (e.g. random-init Inception weights); per
protocol a short fingerprint, the headline table (one row per backend at its headline operating
point, :func:`~generative_bench.reporting.leaderboard.headline`) with its generated caption and
footnotes; then the full sweep tables per backend and the full fingerprints; the failed and
unfinished runs; and the published anchors in their own clearly labelled block.
``leaderboard.csv`` keeps one row per table row (the full sweep); ``leaderboard.json`` holds the
headline, the full tables and the fingerprints.

Record content is untrusted text: in Markdown it cannot open raw HTML, entities or links (``<``,
the only character that opens raw HTML or an autolink, gets the CommonMark backslash escape, as
do a leading ``>`` and an ``&`` that would start a character reference; ``](`` is broken, ``|``
and line breaks are escaped: the source stays readable, ``x >= 1`` and not ``x &gt;= 1``) and
the only link targets are the report's own figure paths; CSV string cells that a spreadsheet would read as a formula get a
leading ``'``; LaTeX is escaped character by character and comment lines are kept on one line.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import pandas as pd

from generative_bench.io import atomic_write_text
from generative_bench.reporting.anchors import (ANCHOR_HEADING, ANCHOR_NOTE, FIRST_STAGE_HEADING, GUIDANCE_HEADING,
                                                anchors_frame)
from generative_bench.reporting.leaderboard import (BOLD_CLOSE, BOLD_OPEN, NOT_COMPARABLE, Leaderboard,
                                                    ProtocolTable, clean_reasons, display_frame,
                                                    fingerprint_items, fingerprint_summary, headline,
                                                    headline_display)
from generative_bench.reporting.measures import MEASURES, NFE, SAMPLING_SPEED


def banner(board: Leaderboard) -> str | None:
    """The warning shown once at the top of every output (one sentence), or None when all is comparable."""
    if board.comparable:
        return None
    reasons = clean_reasons(board.reasons) or ["an evaluation recorded comparable=false"]
    return f"⚠ {NOT_COMPARABLE}: " + "; ".join(reasons) + "."


def backend_frames(table: ProtocolTable):
    """(backend, its rows of ``table.frame``) in the order the runs were made: the full sweep tables."""
    order: dict[str, int] = {}
    for r in table.rows:
        order.setdefault(r["backend"], len(order))
    f = table.frame
    for backend in sorted(set(f["backend"]), key=lambda b: (order.get(b, len(order)), str(b))):
        yield backend, f[f["backend"] == backend]


def _settings_count(n: int) -> str:
    return f"{n} setting" + ("" if n == 1 else "s")


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
    """Record text for one Markdown line: no raw HTML, entity or link, no line break (CommonMark
    backslash escapes, which render as the character itself)."""
    text = _MD_ENTITY.sub("\\\\&", str(text).replace("\\", "\\\\")).replace("<", "\\<")
    text = one_line(text.replace("](", "]\\("))
    return "\\" + text if text.startswith(">") else text


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


def _md_notes(notes: list[str]) -> list[str]:
    return [f"{i}. {_md_cell(n)}" if not n.startswith(("⚠", "Values")) else f"- {_md_cell(n)}"
            for i, n in enumerate(notes, 1)]


def to_markdown(board: Leaderboard, title: str, summary: str, figures: list[tuple[str, str]] | None = None) -> str:
    out = [f"# {md_text(title)}", ""]
    b = banner(board)
    if b:
        out += [f"> **{_md_cell(b)}**", ""]
    out += [md_text(summary), ""]
    warnings = record_warnings(board)
    if warnings:
        out += ["**Ignored in the run folders:**", ""] + [f"- {_md_cell(w)}" for w in warnings] + [""]
    figure_paths = dict(figures or [])
    for table in board.tables:
        h = headline(table)
        disp = headline_display(h)
        out += [f"## {_md_cell(table.short_title)}", ""]
        out += [f"- **{k}:** {_md_cell(v)}" for k, v in fingerprint_summary(table)]
        out += ["", f"**Headline.** {_md_cell(h.caption)}", "", _md_table(disp.frame), ""]
        out += _md_notes(disp.notes) + [""]
        panel = figure_paths.get(f"{table.pid}_headline_samples")
        if panel and (link := _md_link(f"samples at the headline setting, {table.pid}", panel)):
            out += ["!" + link, ""]
    if not board.tables:
        out += ["_No completed run with results was found._", ""]
    else:
        out += ["## Full sweep tables", ""]
        for table in board.tables:
            for backend, rows in backend_frames(table):
                disp = display_frame(table, rows, compact=True)
                out += [f"### {_md_cell(table.pid)} · {_md_cell(backend)} — {_settings_count(len(rows))}", ""]
                out += [_md_table(disp.frame), ""] + _md_notes(disp.notes) + [""]
            out += [f"### {_md_cell(table.pid)} · protocol fingerprint", ""]
            out += [f"- **{k}:** {_md_cell(v)}" for k, v in fingerprint_items(table)] + [""]
    first = first_stage_frame(board)
    if len(first):
        out += [f"## {FIRST_STAGE_MEASURED}", "", _md_table(first), ""]
    out += ["## Failed and unfinished runs", ""]
    out += [_md_table(board.failed) if len(board.failed) else "_none_", ""]
    out += anchors_markdown(board)
    links = [link for label, path in figures or [] if (link := _md_link(label, path))]
    if links:
        out += ["## Figures", ""] + [f"- {link}" for link in links] + [""]
    return "\n".join(out)


FIRST_STAGE_MEASURED = "First-stage reconstruction (models with an autoencoder, measured here)"


def first_stage_frame(board: Leaderboard) -> pd.DataFrame:
    """One row per run whose record holds a first-stage reconstruction entry (latent diffusion):
    PSNR of the uint8 round trip and rFD in the evaluation's feature space, as recorded."""
    rows, seen = [], set()
    for table in board.tables:
        for r in table.rows:
            rec = r.get("record")
            entry = (getattr(rec, "data", {}) or {}).get("reconstruction")
            if not isinstance(entry, dict) or r["run_dir"] in seen:
                continue
            seen.add(r["run_dir"])

            def num(key, digits):
                v = entry.get(key)
                return f"{v:.{digits}f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "—"

            rfd = num("rfd", 2)
            if rfd != "—" and not entry.get("rfd_comparable", False):
                rfd += " (NOT comparable)"
            rows.append({"Backend": r.get("display") or r["backend"], "Seed": r.get("seed"),
                         "Held-out images": entry.get("examples"), "PSNR (dB)": num("psnr_db", 2),
                         "rFD": rfd, "Features": entry.get("rfd_features") or "—",
                         "Latent": "×".join(str(x) for x in entry.get("latent_shape") or []) or "—",
                         "Downsampling f": entry.get("downsampling_factor")})
    return pd.DataFrame(rows)


def has_knob_sweep(board: Leaderboard) -> bool:
    """True when some table holds a fidelity–diversity sweep (a moved guidance/truncation/temperature knob)."""
    return any("knob" in t.frame and (t.frame["knob"] != "").any() for t in board.tables)


def has_family(board: Leaderboard, family: str) -> bool:
    """True when some table holds a row of model ``family`` (e.g. ``latent_diffusion``)."""
    return any("family" in t.frame and (t.frame["family"] == family).any() for t in board.tables)


def anchor_sections(board: Leaderboard) -> list[tuple[str, pd.DataFrame]]:
    """(heading, rows) of the published anchors that belong beside these tables: only for the
    datasets the image tables measured (no ImageNet rows under a CIFAR-10 or a 2-D table)."""
    datasets = {str(t.protocol.get("dataset") or "") for t in board.tables if not t.toy}
    if not datasets:
        return []
    sections = [(ANCHOR_HEADING, anchors_frame(datasets=datasets))]
    if has_knob_sweep(board):
        sections.append((GUIDANCE_HEADING, anchors_frame(guidance=True, datasets=datasets)))
    if has_family(board, "latent_diffusion"):
        sections.append((FIRST_STAGE_HEADING, anchors_frame(first_stage=True, datasets=datasets)))
    return [(heading, frame) for heading, frame in sections if len(frame)]


def anchors_markdown(board: Leaderboard) -> list[str]:
    out = []
    for heading, frame in anchor_sections(board):
        out += [f"## {heading}", "", f"> {ANCHOR_NOTE}", "", _md_table(frame), ""]
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
            for m in MEASURES:
                row[f"{m.csv}_mean"] = r[f"{m.key}_mean"]
                if m.better or m.minutes:  # counts have no spread worth a column
                    row[f"{m.csv}_std"] = r[f"{m.key}_std"]
                if m is SAMPLING_SPEED:
                    row[NFE.csv] = r[NFE.key]
            row["run_dirs"] = " ".join(r["run_dirs"])
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
                "⚠": r"(!)", "³": r"$^{3}$", "·": r"$\cdot$", "→": r"$\to$", "²": r"$^{2}$", "∞": r"$\infty$",
                "†": r"\textdagger{}", "★": r"$\star$", "≈": r"$\approx$", "µ": r"$\mu$", "…": r"\ldots{}",
                "’": "'", "‘": "`", "“": "``", "”": "''", "|": r"\textbar{}", "<": r"\textless{}",
                ">": r"\textgreater{}"}


def tex_escape(text) -> str:
    """Record text for LaTeX: special characters escaped, known symbols as LaTeX, any other
    character outside Latin (which pdflatex cannot set) as ``?``."""
    out = []
    for ch in one_line(text):
        mapped = _TEX_SPECIAL.get(ch) or _TEX_UNICODE.get(ch)
        if mapped is None:
            mapped = ch if ord(ch) < 0x250 or ch in (BOLD_OPEN, BOLD_CLOSE) else "?"
        out.append(mapped)
    return "".join(out).replace(BOLD_OPEN, r"\textbf{").replace(BOLD_CLOSE, "}")


def _tex_table(frame: pd.DataFrame, caption: str, notes: list[str], label: str | None = None,
               numeric_from: int | None = None, wrap: dict[int, str] | None = None) -> str:
    r"""A booktabs table (``\toprule``/``\midrule``/``\bottomrule``) in a ``table`` float, shrunk
    to the text width only when wider; columns from ``numeric_from`` on are right-aligned."""
    shown = frame.astype(str).map(tex_escape)
    shown.columns = [tex_escape(c) for c in frame.columns]
    if wrap:  # headers of paragraph columns may break after _ and - (FD_cifar10-resnet)
        shown.columns = [c.replace("\\_", "\\_\\allowbreak{}").replace("-", "-\\allowbreak{}") if i in wrap else c
                         for i, c in enumerate(shown.columns)]
    n = len(shown.columns)
    cols = ["l" if numeric_from is None or i < numeric_from else "r" for i in range(n)]
    for i, width in (wrap or {}).items():  # a paragraph column for long text (e.g. sampler settings)
        cols[i] = f"p{{{width}}}"
    fmt = "".join(cols)
    body = shown.style.hide(axis="index").to_latex(hrules=True, column_format=fmt)
    lines = ["\\begin{table}[ht]", "\\centering", "\\scriptsize", f"\\caption{{{caption}}}"]
    if wrap:
        lines.insert(3, "\\setlength{\\tabcolsep}{3pt}")
    if label:
        lines.append(f"\\label{{{label}}}")
    lines += ["\\resizebox{\\ifdim\\width>\\textwidth\\textwidth\\else\\width\\fi}{!}{%", body.rstrip(), "}"]
    if notes:
        lines += ["\\par\\smallskip\\raggedright\\footnotesize"] + [f"{tex_escape(n)}\\\\" for n in notes]
    lines.append("\\end{table}")
    return "\n".join(lines)


def _headline_widths(frame: pd.DataFrame) -> dict[int, str]:
    """Paragraph widths of the headline's columns after Backend: settings wrap, headers break."""
    widths = {1: "2.4cm", 2: "0.8cm"}
    for i in range(3, len(frame.columns)):
        widths[i] = "1.3cm"
    return widths


def _tex_label(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9-]+", "-", str(text)).strip("-") or "x"


def to_latex(board: Leaderboard, title: str) -> str:
    """Headline tables first (booktabs, labelled ``tab:headline-<protocol>``), then the full sweep
    tables per backend, the failed runs and the published anchors."""
    b = banner(board)
    out = ["% generated by generative-bench; needs \\usepackage{booktabs} and \\usepackage{graphicx}",
           f"% {one_line(title)}"]
    if b:
        out.append(f"% {one_line(b)}")
    out += [f"% ignored in the run folders: {one_line(w)}" for w in record_warnings(board)]

    def warn_for(table: ProtocolTable) -> str:
        if not table.comparable:
            return (f"\\textbf{{{tex_escape('⚠ ' + NOT_COMPARABLE)}}} "
                    f"({tex_escape('; '.join(clean_reasons(table.reasons)))}). ")
        if b:
            return f"This table is comparable; \\textbf{{other tables in this report are {NOT_COMPARABLE}}}. "
        return ""

    for table in board.tables:
        h = headline(table)
        disp = headline_display(h)
        fp = "; ".join(f"{k}: {v}" for k, v in fingerprint_summary(table))
        notes = [fp + "."]
        if not table.comparable:
            warn = f"\\textbf{{{tex_escape('⚠ ' + NOT_COMPARABLE)}.}} "
            notes.insert(0, f"⚠ {NOT_COMPARABLE}: " + "; ".join(clean_reasons(table.reasons)) + ".")
        else:
            warn = warn_for(table)
        caption = f"{warn}Headline, {tex_escape(table.short_title)}. {tex_escape(h.caption)}"
        out.append(_tex_table(disp.frame, caption, notes + disp.notes, label=f"tab:headline-{_tex_label(table.pid)}",
                              numeric_from=3, wrap=_headline_widths(disp.frame)))
    for table in board.tables:
        fp = "Protocol fingerprint: " + "; ".join(f"{k}: {v}" for k, v in fingerprint_items(table)) + "."
        for backend, rows in backend_frames(table):
            disp = display_frame(table, rows, compact=True)
            caption = (f"{warn_for(table)}Full sweep, {tex_escape(backend)} ({_settings_count(len(rows))}): "
                       f"{tex_escape(table.title)}.")
            out.append(_tex_table(disp.frame, caption, disp.notes,
                                  label=f"tab:sweep-{_tex_label(table.pid)}-{_tex_label(backend)}"))
        out.append(f"% {one_line(fp)}")
    if len(board.failed):
        failed = board.failed[["run folder", "status", "stage", "error"]]
        out.append(_tex_table(failed, "Failed and unfinished runs (no numbers in the tables above).", []))
    for heading, frame in anchor_sections(board):
        out.append(_tex_table(frame, tex_escape(f"{heading}. {ANCHOR_NOTE}"), []))
    return "\n\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------- json

def _plain_value(v):
    """A JSON-safe value: NaN/inf as None, numpy scalars as Python numbers."""
    if isinstance(v, dict):
        return {str(k): _plain_value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain_value(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        try:
            v = v.item()
        except (ValueError, AttributeError):
            return str(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


_JSON_DROP = ("run_dirs", "settings", "budget_json", "sampler_key", "order", "nll_bounds")


def _row_json(table: ProtocolTable, r: pd.Series) -> dict:
    row = {k: r[k] for k in ("backend", "family", "config", "budget", "sampler", "n", "seeds", "comparable",
                             "knob", "knob_value", "nfe")}
    row["default_setting"] = bool(r["default"])
    row["settings"] = dict(r["settings"])
    row["metrics"] = {s.key: {"label": table.label(s), "better": s.better, "mean": r[f"{s.key}_mean"],
                              "std": r[f"{s.key}_std"], "n": r[f"{s.key}_n"],
                              "scale": s.scale} for s in table.metrics}
    row["nll_bpd"] = {"status": r["nll_status"], "mean": r["nll_mean"], "std": r["nll_std"],
                      "reason": r["nll_reason"], "bounds": list(r["nll_bounds"])}
    row["measures"] = {m.csv: {"label": m.label, "better": m.better, "mean": r[f"{m.key}_mean"],
                               "std": r[f"{m.key}_std"]} for m in MEASURES}
    row["budget_settings"] = json.loads(r["budget_json"]) if r["budget_json"] else {}
    row["run_dirs"] = [os.path.basename(d) for d in r["run_dirs"]]
    return row


def to_json_text(board: Leaderboard, title: str, summary: str) -> str:
    """``leaderboard.json``: the warning, and per protocol its fingerprints, headline and full table."""
    tables = []
    for table in board.tables:
        h = headline(table)
        tables.append({
            "protocol": table.pid, "title": table.title, "comparable": table.comparable,
            "reasons": clean_reasons(table.reasons),
            "fingerprint_summary": dict(fingerprint_summary(table)),
            "fingerprint": dict(fingerprint_items(table)), "protocol_fingerprint": table.protocol,
            "headline": {"rule": h.rule, "caption": h.caption,
                         "rows": [{"label": r["label"], "chosen_by": r["rule"], **_row_json(table, r)}
                                  for _, r in h.frame.iterrows()]},
            "rows": [_row_json(table, r) for _, r in table.frame.iterrows()],
        })
    doc = {"title": title, "summary": summary, "comparable": board.comparable, "warning": banner(board),
           "tables": tables, "failed": board.failed.to_dict(orient="records")}
    return json.dumps(_plain_value(doc), indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def write_text_outputs(board: Leaderboard, out_dir: Path, formats, title: str, summary: str,
                       figures: list[tuple[str, str]] | None = None) -> dict[str, Path]:
    """Write leaderboard.md / .csv / .tex / .json (those asked for) and failed_runs.csv."""
    out_dir = Path(out_dir)
    written: dict[str, Path] = {}
    if "md" in formats:
        written["md"] = atomic_write_text(out_dir / "leaderboard.md", to_markdown(board, title, summary, figures))
    if "csv" in formats:
        written["csv"] = atomic_write_text(out_dir / "leaderboard.csv", to_csv_text(board))
        written["failed_csv"] = atomic_write_text(out_dir / "failed_runs.csv", safe_csv(board.failed))
    if "tex" in formats:
        written["tex"] = atomic_write_text(out_dir / "leaderboard.tex", to_latex(board, title))
    if "json" in formats:
        written["json"] = atomic_write_text(out_dir / "leaderboard.json", to_json_text(board, title, summary))
    return written


__all__ = ["backend_frames", "banner", "csv_safe", "md_text", "one_line", "record_warnings", "safe_csv", "tex_escape", "to_csv_text",
           "to_json_text", "to_latex", "to_markdown", "write_text_outputs"]
