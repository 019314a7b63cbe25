"""Check a finished `gbench experiment=cifar_smoke` sweep: every backend completed every stage and
the report says what it should. Used by .ci/run; exits non-zero naming what is missing.

    python experiments/check_smoke_report.py runs/ci-smoke
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXPECTED = {"gan", "vae", "ddpm", "iddpm"}


def check(sweep: Path) -> list[str]:
    problems = []
    records = {p.parent.name: json.loads(p.read_text()) for p in sorted(sweep.glob("*/results.json"))}
    names = {r.get("backend", {}).get("name") for r in records.values()}
    if names != EXPECTED:
        problems.append(f"backends {sorted(n for n in names if n)}, expected {sorted(EXPECTED)}")
    for job, r in records.items():
        if r.get("status") != "completed":
            problems.append(f"{job}: status {r.get('status')} ({(r.get('error') or {}).get('message')})")
            continue
        ev = (r.get("evaluations") or [{}])[0]
        if not {"fid", "kid_mean", "precision", "recall"} <= set(ev.get("metrics") or {}):
            problems.append(f"{job}: metrics {sorted(ev.get('metrics') or {})}")
        if ev.get("sampler", {}).get("nfe") is None:
            problems.append(f"{job}: the sampler recorded no NFE")
        nll = r.get("nll") or {}
        if r["backend"]["name"] == "gan":
            if nll.get("defined") is not False:
                problems.append(f"{job}: a GAN must record its NLL as not defined")
        elif not (isinstance(nll.get("bpd"), float) and 0 < nll["bpd"] < 16):
            problems.append(f"{job}: NLL {nll.get('bpd')!r} bits/dim is not a plausible 8-bit figure")
        elif r["backend"]["family"] == "diffusion" and "10-step respaced" not in str(nll.get("bound")):
            problems.append(f"{job}: the respaced bound is not labelled as such ({nll.get('bound')!r})")
        if not (sweep / job / ev.get("grid_file", "missing")).is_file():
            problems.append(f"{job}: no sample grid")
    report = sweep / "report"
    md = (report / "leaderboard.md").read_text() if (report / "leaderboard.md").is_file() else ""
    for needle in ("FD_cifar10-resnet", "NOT comparable", "respaced", "—"):
        if needle not in md:
            problems.append(f"report/leaderboard.md does not mention {needle!r}")
    header = next((ln for ln in md.splitlines() if ln.startswith("| Backend")), "")
    if not header or any(w in header for w in ("FID", "KID", "| IS")):
        problems.append("the results table must name domain metrics FD_/KD_/CS_, never FID/KID/IS")
    for f in ("index.html", "leaderboard.csv", "leaderboard.tex"):
        if not (report / f).is_file():
            problems.append(f"report/{f} is missing")
    if not list((report / "plots").glob("*_samples_*.png")):
        problems.append("report has no sample figures")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep", type=Path)
    problems = check(ap.parse_args().sweep)
    for p in problems:
        print(f"smoke check: {p}", file=sys.stderr)
    print("smoke check: " + ("FAILED" if problems else "ok: 4 backends, every stage, report complete"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
