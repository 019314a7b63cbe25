"""``gbench compare NEW BASELINE [--tolerance ...]``: the regression gate for CI.

The rules and exit codes are documented in :mod:`generative_bench.reporting.compare`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROG = "gbench compare"
USAGE = (f"{PROG} NEW BASELINE [--tolerance REL] [--abs-tolerance ABS] [--tolerance KEY=ABS ...] "
         "[--allow-missing] [--allow-fingerprint-change] [--out FILE.md] [--json FILE.json]")


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr and exit code 2 (bad input)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{PROG}: error: {message} (usage: {USAGE}; see {PROG} --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, usage=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter,
                description="Compare a new benchmark (folder of runs or leaderboard.json) against a baseline "
                            "(usually a committed report folder or its leaderboard.json) and fail on regressions.",
                epilog="exit codes: 0 pass, 1 regression or missing rows, 2 bad input, "
                       "3 protocol fingerprint mismatch")
    p.add_argument("new", type=Path, help="the new results: a sweep/run folder (or any parent) or a leaderboard.json")
    p.add_argument("baseline", type=Path, help="the reference: a report folder or leaderboard.json written by gbench report "
                   "(an older leaderboard.csv is read too), or a folder of runs")
    p.add_argument("--tolerance", action="append", default=[], metavar="REL|KEY=ABS",
                   help="a number: relative tolerance (0.05 = 5%% of |baseline|, default 0); KEY=VALUE: absolute "
                        "tolerance for one metric, e.g. fid=2.0 (repeatable)")
    p.add_argument("--abs-tolerance", type=float, default=None, metavar="ABS",
                   help="absolute tolerance for every metric (default 1e-9)")
    p.add_argument("--allow-missing", action="store_true", help="baseline rows/metrics missing in NEW do not fail")
    p.add_argument("--allow-fingerprint-change", action="store_true",
                   help="compare metrics even where the evaluation protocol changed (no exit 3)")
    p.add_argument("--out", type=Path, default=None, metavar="FILE.md", help="also write the comparison as Markdown")
    p.add_argument("--json", type=Path, default=None, metavar="FILE.json", help="also write it as JSON")
    return p


def compare_main(argv: list[str]) -> int:
    from generative_bench.errors import GBenchError
    from generative_bench.io import atomic_write_json, atomic_write_text
    from generative_bench.reporting import compare as cmp

    args = _parser().parse_args(argv)
    try:
        tolerance = cmp.parse_tolerances(args.tolerance, args.abs_tolerance)
        new = cmp.read_side(args.new, "NEW")
        baseline = cmp.read_side(args.baseline, "BASELINE")
        cmp.check_outputs({"--out": args.out, "--json": args.json}, [args.new, args.baseline, new.path, baseline.path])
        result = cmp.compare_sides(new, baseline, tolerance, allow_missing=args.allow_missing,
                                   allow_fingerprint_change=args.allow_fingerprint_change)
        print(cmp.render_text(result))
        if args.out:
            atomic_write_text(args.out, cmp.render_markdown(result) + "\n")
            print(f"comparison: {args.out}")
        if args.json:
            atomic_write_json(args.json, cmp.to_json(result))
            print(f"comparison JSON: {args.json}")
    except GBenchError as e:
        print(f"{PROG}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return cmp.EXIT_BAD_INPUT
    except OSError as e:
        where = f" {e.filename!r}" if e.filename else ""
        print(f"{PROG}: error: cannot access{where}: {e.strerror or e}; check the path and its permissions",
              file=sys.stderr)
        return cmp.EXIT_BAD_INPUT
    return result.exit_code
