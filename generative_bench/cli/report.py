"""``gbench report DIR... [--out OUT] [--formats md,csv,html,tex,json] [--title T]``.

Errors the suite raises on purpose (unreadable inputs, an unusable output folder) are printed as
one line, ``gbench report: error: <message>``, with exit code 2 and no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from generative_bench.errors import GBenchError, InputError


def print_summary(paths: dict) -> None:
    """Print the Markdown leaderboard and the path of the HTML report."""
    md = paths.get("md") or paths.get("markdown")
    if md and Path(md).is_file():
        print(Path(md).read_text())
    html = paths.get("html")
    if html:
        print(f"report: {html}")


def check_out_dir(out: Path, default: bool = False) -> Path:
    """Check, before anything is written, that ``out`` can be the report's output folder.

    Raises InputError, naming the path and the fix, when ``out`` (or a folder above it) is a
    file, when the folder that would hold it cannot be written, or when a default output folder
    inside an input is a symbolic link (the input would choose where the report goes).
    Nothing is created here; ``build_report`` creates the folder.
    """
    flag = "the default output folder" if default else "--out"
    if default and out.is_symlink():
        raise InputError(f"{flag} {str(out)!r} is a symbolic link inside the report input; "
                         "pass --out FOLDER to choose where the report goes")
    for folder in (out, *out.parents):
        if folder.exists() and not folder.is_dir():
            what = f"{str(out)!r} is a file" if folder == out else f"{str(out)!r} is inside the file {str(folder)!r}"
            raise InputError(f"{flag} {what}; pass a folder (it is created if missing)")
    existing = next((f for f in (out, *out.parents) if f.exists()), None)
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {str(out)!r} cannot be written (permission denied on {str(existing)!r}); "
                         "pass a folder you can write to")
    plots = out / "plots"
    if plots.is_symlink() or (plots.exists() and not plots.is_dir()):
        raise InputError(f"{str(plots)!r} exists and is not a plain folder; remove it or pass another --out folder")
    return out


def report_main(argv: list[str]) -> int:
    from generative_bench.reporting import build_report

    p = argparse.ArgumentParser(prog="gbench report", description="Leaderboard and HTML report over run folders "
                                "(single runs, sweep folders, or any parent folder of them).")
    p.add_argument("inputs", nargs="+", type=Path, help="run folders, sweep folders or parents of them")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: <first input>/report)")
    p.add_argument("--formats", default="md,csv,html,tex,json", help="comma-separated: md,csv,html,tex,json")
    p.add_argument("--title", default=None)
    args = p.parse_args(argv)
    missing = [str(i) for i in args.inputs if not i.exists()]
    if missing:
        print(f"gbench report: error: no such folder(s): {', '.join(map(repr, missing))}; pass existing run or sweep "
              "folders (or a parent folder of them)", file=sys.stderr)
        return 2
    first = args.inputs[0]
    out = args.out or ((first.parent if first.is_file() else first) / "report")
    try:
        check_out_dir(out, default=args.out is None)
        paths = build_report(args.inputs, out, formats=tuple(f.strip() for f in args.formats.split(",") if f.strip()),
                             title=args.title)
    except GBenchError as e:
        print(f"gbench report: error: {e}", file=sys.stderr)
        return 2
    except PermissionError as e:
        where = e.filename or out
        print(f"gbench report: error: cannot write {os.fspath(where)!r} (permission denied); "
              "pass --out with a folder you can write to", file=sys.stderr)
        return 2
    except (FileExistsError, NotADirectoryError) as e:
        print(f"gbench report: error: cannot create {os.fspath(e.filename or out)!r} ({e.strerror}): a file is "
              "in the way; pass --out with a folder", file=sys.stderr)
        return 2
    print_summary(paths)
    return 0
