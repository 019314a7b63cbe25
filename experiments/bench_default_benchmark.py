"""Wall time of the default benchmark (`gbench` with no arguments) against the previous code
and against its jobs run one at a time.

Runs the default sweep (four backends on the 2-D ring) in one session, each variant in a fresh
GBENCH_HOME, one after the other:

* ``previous code (REV), parallel`` (with ``--previous REV``): plain ``gbench`` from the project
  as it was at git revision REV (``git archive`` into a temporary folder, put first on
  PYTHONPATH), the same machine and session;
* ``parallel (default)``: ``gbench`` - one job per core, ``threads: auto`` = 1 each;
* ``sequential, threads=1``: ``gbench hydra/launcher=basic threads=1`` - the parallel jobs'
  arithmetic one at a time, to show that running jobs side by side changes no number, and to
  time each job alone;
* ``sequential, threads=auto`` (with ``--with-threads-auto``): ``gbench hydra/launcher=basic``,
  one job at a time with every core.

Then compares the leaderboards (report/leaderboard.csv) with the default's cell by cell (bitwise
equality is expected against the previous code and against ``threads=1``; otherwise the largest
relative difference is reported). Where the time goes comes from the run records of the
one-thread sequential variant: each backend's training, NLL and evaluation seconds, the
evaluation split into the headline setting and the sampler sweep, and the most expensive sweep
settings. Writes reports/default_benchmark_wall.{md,json}.

    python experiments/bench_default_benchmark.py --previous REV [--with-threads-auto]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generative_bench.io import atomic_write_json, atomic_write_text  # noqa: E402
from generative_bench.records import cpu_model_name  # noqa: E402

DEFAULT = "parallel (default)"
SEQUENTIAL_1 = "sequential, threads=1"
VARIANTS = {
    DEFAULT: [],
    SEQUENTIAL_1: ["hydra/launcher=basic", "threads=1"],
    "sequential, threads=auto": ["hydra/launcher=basic"],
}


def export_revision(rev: str, dest: Path) -> Path:
    """The project's files at git revision ``rev`` under ``dest`` (package, conf)."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def run(overrides: list[str], home: Path, code: Path | None = None) -> tuple[float, Path]:
    """Wall seconds of ``gbench *overrides`` in ``home`` (with the project at ``code`` first on the
    path, when given), and the sweep's leaderboard."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["GBENCH_HOME"] = str(home)
    if code is not None:
        env["PYTHONPATH"] = str(code) + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "generative_bench", *overrides], cwd=home, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    boards = sorted((home / "runs").glob("*/report/leaderboard.csv"))
    if len(boards) != 1:
        raise SystemExit(f"expected one sweep report under {home / 'runs'}, found {boards}")
    return wall, boards[0]


def compare(a: Path, b: Path) -> dict:
    """Cell-by-cell comparison of two leaderboards: equal strings, and the largest relative numeric difference."""
    ta, tb = pd.read_csv(a, dtype=str, skiprows=1), pd.read_csv(b, dtype=str, skiprows=1)
    # left out: timings, run folders, and `config` (the command-line overrides, e.g. "threads=1")
    skip = [c for c in ta.columns if any(w in c for w in ("wall", "images_per_s", "run_dir")) or c == "config"]
    ta, tb = ta.drop(columns=skip, errors="ignore"), tb.drop(columns=skip, errors="ignore")
    if ta.shape != tb.shape or list(ta.columns) != list(tb.columns):
        return {"same_shape": False, "bitwise": False}
    unequal, worst = 0, 0.0
    for col in ta.columns:
        for x, y in zip(ta[col].fillna(""), tb[col].fillna("")):
            if x == y:
                continue
            unequal += 1
            try:
                fx, fy = float(x), float(y)
                worst = max(worst, abs(fx - fy) / max(abs(fx), abs(fy), 1e-12))
            except ValueError:
                worst = np.inf
    return {"same_shape": True, "bitwise": unequal == 0, "cells": int(ta.size), "unequal_cells": unequal,
            "max_rel_diff": worst}


def breakdown(home: Path) -> dict:
    """Seconds per stage and per sampler setting from the run records of one variant's sweep."""
    jobs, settings = [], []
    for rec_path in sorted((home / "runs").glob("*/*/results.json")):
        rec = json.loads(rec_path.read_text())
        wt = rec.get("wall_times", {})
        evals = rec.get("evaluations", [])
        per_eval = [sum(e.get("timings", {}).get(k, 0.0) for k in ("sample_s", "features_s", "metrics_s"))
                    for e in evals]
        jobs.append({"run": rec_path.parent.name, "train_s": wt.get("train_s", 0.0), "nll_s": wt.get("nll_s", 0.0),
                     "evaluate_s": wt.get("evaluate_s", 0.0), "total_s": wt.get("total_s", 0.0),
                     "headline_eval_s": per_eval[0] if per_eval else 0.0, "sweep_eval_s": sum(per_eval[1:]),
                     "evaluations": len(evals)})
        for e, sec in zip(evals, per_eval):
            sampler = e.get("sampler", {})
            settings.append({"run": rec_path.parent.name, "settings": sampler.get("settings", {}),
                             "nfe": sampler.get("nfe"), "seconds": sec})
    settings.sort(key=lambda r: -r["seconds"])
    total = sum(j["total_s"] for j in jobs)
    return {"jobs": jobs, "job_seconds": total, "top_settings": settings[:6]}


def breakdown_md(b: dict, cores: int) -> str:
    rows = "\n".join(f"| {j['run']} | {j['train_s']:.1f} | {j['nll_s']:.1f} | {j['headline_eval_s']:.1f} | "
                     f"{j['sweep_eval_s']:.1f} ({j['evaluations'] - 1} settings) | {j['total_s']:.1f} |" for j in b["jobs"])
    top = "\n".join(f"| {t['run']} | `{t['settings']}` | {t['nfe']} | {t['seconds']:.1f} |" for t in b["top_settings"])
    return f"""
## Where the time goes (sequential, threads=1: one job on one core at a time)

| job | train s | NLL s | headline setting s | sampler sweep s | job total s |
|---|---|---|---|---|---|
{rows}

The jobs add up to {b['job_seconds']:.0f} core-seconds: on {cores} cores no schedule of these four
jobs ends before {b['job_seconds'] / cores:.0f} s, plus start-up and the report. The most expensive sampler settings:

| job | setting | NFE | seconds |
|---|---|---|---|
{top}
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "reports" / "default_benchmark_wall"))
    ap.add_argument("--previous", default=None, help="git revision of the previous code to time and compare with")
    ap.add_argument("--with-threads-auto", action="store_true", help="also run the jobs one at a time with every core")
    ap.add_argument("--note", default="", help="anything a reader needs to know (machine load, ...)")
    ap.add_argument("--keep", default=None, help="an empty folder to run in and keep (one home per variant), "
                    "e.g. to publish the parallel sweep with experiments/publish_sweep.py; default: a temporary one")
    args = ap.parse_args()
    variants: dict[str, tuple[list[str], str | None]] = {}
    if args.previous:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.previous], check=True,
                             capture_output=True, text=True).stdout.strip()
        previous = f"previous code ({rev}), parallel"
        variants[previous] = ([], rev)
    variants[DEFAULT] = (VARIANTS[DEFAULT], None)
    variants[SEQUENTIAL_1] = (VARIANTS[SEQUENTIAL_1], None)
    if args.with_threads_auto:
        variants["sequential, threads=auto"] = (VARIANTS["sequential, threads=auto"], None)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()
    load_before = os.getloadavg()
    walls, same = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(args.keep or scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        boards = {}
        for i, (name, (overrides, rev)) in enumerate(variants.items()):
            home = tmp / f"home{i}"
            home.mkdir()
            code = export_revision(rev, Path(scratch) / f"code-{rev}") if rev else None
            walls[name], boards[name] = run(overrides, home, code)
            (tmp / f"board{i}.csv").write_text(boards[name].read_text())
            print(f"{name}: {walls[name]:.1f} s", flush=True)
        for name in variants:
            if name != DEFAULT:
                same[name] = compare(boards[DEFAULT], boards[name])
        where = breakdown(tmp / f"home{list(variants).index(SEQUENTIAL_1)}")
    load_after = os.getloadavg()
    command = "python experiments/bench_default_benchmark.py" + (f" --previous {args.previous}" if args.previous else "") + \
        (" --with-threads-auto" if args.with_threads_auto else "")
    record = {"command": command, "cpu": cpu_model_name(), "cores": os.cpu_count(), "code": head,
              "variants": {n: {"overrides": o, "revision": r or head} for n, (o, r) in variants.items()},
              "wall_s": walls, "leaderboard_vs_default": same,
              "loadavg_before": load_before, "loadavg_after": load_after, "breakdown": where}
    out = Path(args.out)
    atomic_write_json(out.with_suffix(".json"), record)
    rows = "\n".join(f"| {n} | `gbench {' '.join(o)}` | {r or head} | {walls[n]:.1f} |" for n, (o, r) in variants.items())

    def said(c: dict) -> str:
        if not c.get("same_shape"):
            return "different tables"
        if c["bitwise"]:
            return f"bitwise identical ({c['cells']} cells)"
        return f"{c['unequal_cells']} of {c['cells']} cells differ, largest relative difference {c['max_rel_diff']:.1e}"

    ratio = ""
    if args.previous:
        ratio = f"\n**Default now / previous code: {walls[previous] / walls[DEFAULT]:.2f}x faster** " \
                f"({walls[previous]:.1f} s -> {walls[DEFAULT]:.1f} s).\n"
    compared = "\n".join(f"- {DEFAULT} vs {n}: {said(c)};" for n, c in same.items())
    md = f"""# The default benchmark: wall time against the previous code and with jobs one at a time

Command: `{command}`

{cpu_model_name()}, {os.cpu_count()} cores; each variant in a fresh GBENCH_HOME, one after the other in this
session. Load average (1, 5, 15 min) before {tuple(round(v, 2) for v in load_before)}, after
{tuple(round(v, 2) for v in load_after)} (a shared machine: absolute seconds move with its load).

| variant | command | code | wall s |
|---|---|---|---|
{rows}
{ratio}
Leaderboards (report/leaderboard.csv; wall-time, speed, run-folder and override-label (`config`) columns left out):
{compared}
{chr(10) + args.note + chr(10) if args.note else ""}{breakdown_md(where, os.cpu_count() or 1)}"""
    atomic_write_text(out.with_suffix(".md"), md)
    print(md)


if __name__ == "__main__":
    main()
