"""The catalogue of bad inputs as a report: rows per group, pass rate and the table.

Runs ``tests/test_bad_inputs.py`` with pytest (JUnit XML into a temporary folder), reads each
row's outcome, and writes ``reports/bad_inputs_catalogue.md`` with the command that made it:
the number of rows per group, how many pass / are expected failures (documented gaps) / fail,
and one table line per row (group, id, expected exit code or exception, message regex, outcome).

    python experiments/bad_inputs_catalogue.py            # writes reports/bad_inputs_catalogue.md
    python experiments/bad_inputs_catalogue.py --out FILE.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generative_bench.io import atomic_write_text  # noqa: E402
from tests.test_bad_inputs import GROUPS, catalogue, catalogue_counts  # noqa: E402

TEST_FILE = "tests/test_bad_inputs.py"


def run_pytest(junit: Path) -> tuple[list[str], int, float]:
    """Run the test module; returns (the command, pytest's exit status, wall seconds)."""
    cmd = [sys.executable, "-m", "pytest", TEST_FILE, "-q", "-rA", "-p", "no:cacheprovider", f"--junitxml={junit}"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT)
    return cmd, proc.returncode, time.perf_counter() - t0


def outcomes(junit: Path) -> dict[str, str]:
    """``<group>-<id>`` -> passed | xfailed | xpassed | failed | error | skipped, from the JUnit XML."""
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = case.get("name", "")
        if not name.startswith("test_bad_input["):
            continue
        key = name[len("test_bad_input["):-1]
        children = {child.tag: child for child in case}
        if "failure" in children:
            out[key] = "xpassed" if "XPASS" in (children["failure"].get("message") or "") else "failed"
        elif "error" in children:
            out[key] = "error"
        elif "skipped" in children:
            out[key] = "xfailed" if children["skipped"].get("type") == "pytest.xfail" else "skipped"
        else:
            out[key] = "passed"
    return out


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(rows: list[dict[str, str]], results: dict[str, str], command: str, status: int, wall_s: float) -> str:
    counts = catalogue_counts()
    total = len(rows)
    tally = {k: sum(results.get(f"{r['group']}-{r['id']}") == k for r in rows)
             for k in ("passed", "xfailed", "failed", "xpassed", "error", "skipped")}
    missing = total - sum(tally.values())
    lines = [
        "# Catalogue of bad inputs",
        "",
        "Every row is one bad input (a real `gbench` process or one API call) and the error it must give: "
        "the exit code or exception type, a message that names the problem and the fix (the regex below), "
        "no traceback and at most 3 lines of error on stderr, and no file that existed before the command "
        "changed or vanished. Expected failures (`xfail`) are documented gaps: the project does not yet "
        "behave as the row asks; the reason says what would change.",
        "",
        f"- command: `{command}` (via `python experiments/bad_inputs_catalogue.py`)",
        f"- when: {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}, on {platform.node() or 'this machine'}"
        f" ({os.cpu_count()} CPU cores, load {', '.join(f'{v:.1f}' for v in os.getloadavg())}); "
        f"pytest exit status {status}, {wall_s:.0f} s",
        f"- rows: {total} ({', '.join(f'{g} {counts[g]}' for g in GROUPS)})",
        f"- outcome: {tally['passed']} passed, {tally['xfailed']} expected failures (documented gaps), "
        f"{tally['failed']} failed, {tally['xpassed']} unexpectedly passed, {tally['error']} errors"
        + (f", {missing} not run" if missing else ""),
        f"- pass rate: {tally['passed']}/{total} = {100.0 * tally['passed'] / max(total, 1):.1f}% "
        f"(of the rows that are not documented gaps: {tally['passed']}/{total - tally['xfailed']})",
        "",
        "| group | id | expected | message must match | outcome |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        outcome = results.get(f"{r['group']}-{r['id']}", "not run")
        lines.append(f"| {r['group']} | `{r['id']}` | {r['expected']} | `{cell(r['message'])}` | {outcome} |")
    gaps = [r for r in rows if r["xfail"]]
    if gaps:
        lines += ["", "## Documented gaps", ""]
        lines += [f"- `{r['group']}-{r['id']}`: {r['xfail']}" for r in gaps]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "bad_inputs_catalogue.md")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "bad_inputs.xml"
        cmd, status, wall = run_pytest(junit)
        results = outcomes(junit) if junit.is_file() else {}
    shown = " ".join(["python" if c == sys.executable else c for c in cmd if not c.startswith("--junitxml")])
    shown += " --junitxml=..."
    text = render(catalogue(), results, shown, status, wall)
    atomic_write_text(args.out, text)
    print(f"catalogue: {args.out}")
    return 0 if status == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
