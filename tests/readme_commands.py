"""The ``gbench`` commands the README gives, as a user would copy them.

``commands()`` lists every command of the README's shell blocks and of its inline code spans
that start with ``gbench`` (placeholders such as ``...`` and ``[more folders]`` skipped);
``block(heading)`` is the shell block under a heading, verbatim, for ``.ci/run`` to execute:

    bash -euo pipefail -c "$(python -m tests.readme_commands --block 'CI smoke runs')"
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
SHELL = ("", "bash", "sh", "console")
PLACEHOLDERS = ("...", "[", "NEW", "BASELINE", "\\|", "<")


def fenced(text: str) -> list[tuple[str, str, int]]:
    """Every fenced block as (language, body, offset of its opening fence), fences paired in order."""
    out, lang, start, body = [], None, 0, []
    offset = 0
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            if lang is None:
                lang, start, body = line[3:].strip(), offset, []
            else:
                out.append((lang, "".join(body), start))
                lang = None
        elif lang is not None:
            body.append(line)
        offset += len(line)
    return out


def _lines(text: str) -> list[str]:
    """Shell lines with continuations joined and comments removed."""
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def commands(readme: Path = README) -> list[list[str]]:
    """Every concrete ``gbench`` command of the README, as argv lists (without ``gbench``)."""
    text = readme.read_text(encoding="utf-8")
    found: list[str] = []
    for lang, body, _ in fenced(text):
        if lang not in SHELL:
            continue
        for line in _lines(body):
            for part in line.split("&&"):
                part = part.strip()
                if part.startswith("gbench"):
                    found.append(part)
    for span in re.findall(r"`(gbench(?: [^`]*)?)`", text):
        found.append(span)
    out, seen = [], set()
    for cmd in found:
        if any(p in cmd for p in PLACEHOLDERS):
            continue
        argv = shlex.split(cmd)[1:]
        if len(argv) == 1 and not argv[0].count("="):  # a verb named in prose (`gbench sample`), not a command
            continue
        key = tuple(argv)
        if key not in seen:
            seen.add(key)
            out.append(argv)
    return out


def block(heading: str, readme: Path = README) -> str:
    """The first shell block after the heading ``heading`` (any level), verbatim."""
    text = readme.read_text(encoding="utf-8")
    at = re.search(rf"^#+ {re.escape(heading)}\s*$", text, re.M)
    if at is None:
        raise SystemExit(f"README has no heading {heading!r}")
    found = next((body for lang, body, start in fenced(text) if lang in SHELL and start > at.end()), None)
    if found is None:
        raise SystemExit(f"README has no shell block after {heading!r}")
    return found


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--block", required=True, help="the heading whose shell block to print")
    print(block(parser.parse_args().block), end="")
