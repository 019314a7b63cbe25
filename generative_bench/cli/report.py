"""``gbench report DIR... [--out OUT] [--formats md,csv,html,tex] [--title T]``."""

from __future__ import annotations

import argparse
from pathlib import Path


def print_summary(paths: dict) -> None:
    """Print the Markdown leaderboard and the path of the HTML report."""
    md = paths.get("md") or paths.get("markdown")
    if md and Path(md).is_file():
        print(Path(md).read_text())
    html = paths.get("html")
    if html:
        print(f"report: {html}")


def report_main(argv: list[str]) -> int:
    from generative_bench.reporting import build_report

    p = argparse.ArgumentParser(prog="gbench report", description="Leaderboard and HTML report over run folders "
                                "(single runs, sweep folders, or any parent folder of them).")
    p.add_argument("inputs", nargs="+", type=Path, help="run folders, sweep folders or parents of them")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: <first input>/report)")
    p.add_argument("--formats", default="md,csv,html,tex", help="comma-separated: md,csv,html,tex")
    p.add_argument("--title", default=None)
    args = p.parse_args(argv)
    missing = [str(i) for i in args.inputs if not i.exists()]
    if missing:
        p.error(f"no such folder(s): {', '.join(missing)}")
    out = args.out or (args.inputs[0] / "report")
    paths = build_report(args.inputs, out, formats=tuple(f.strip() for f in args.formats.split(",") if f.strip()),
                         title=args.title)
    print_summary(paths)
    return 0
