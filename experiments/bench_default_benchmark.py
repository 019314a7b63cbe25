"""Wall time of the default benchmark (`gbench` with no arguments): jobs in parallel vs one at a time.

Runs the default sweep (four backends on the 2-D ring) three times in one session, each in a
fresh GBENCH_HOME, interleaved in this order:

* ``sequential, threads=auto``: ``gbench hydra/launcher=basic`` - the previous default, one job
  at a time with every core;
* ``parallel`` : ``gbench`` - the default now, one job per core, ``threads: auto`` = 1 each;
* ``sequential, threads=1``: ``gbench hydra/launcher=basic threads=1`` - the parallel jobs'
  arithmetic run one at a time, to show that running jobs side by side changes no number.

Then compares the three leaderboards (report/leaderboard.csv) cell by cell: bitwise equality is
expected between ``parallel`` and ``sequential, threads=1`` (same thread count per job); against
``threads=auto`` the BLAS reductions may differ in the last bits, so the largest relative
difference is reported. Where the time goes comes from the run records of the one-thread
sequential variant (no two jobs share the cores there): each backend's training, NLL and
evaluation seconds, the evaluation split into the headline setting and the sampler sweep, and
the most expensive sweep settings. Writes reports/default_benchmark_wall.{md,json}.

    python experiments/bench_default_benchmark.py
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

VARIANTS = {
    "sequential, threads=auto (previous default)": ["hydra/launcher=basic"],
    "parallel (default)": [],
    "sequential, threads=1": ["hydra/launcher=basic", "threads=1"],
}


def run(overrides: list[str], home: Path) -> tuple[float, Path]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["GBENCH_HOME"] = str(home)
    t0 = time.perf_counter()
    subprocess.run(["gbench", *overrides], cwd=home, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
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
    ap.add_argument("--note", default="", help="anything a reader needs to know (machine load, ...)")
    ap.add_argument("--rescore", action="store_true", help="with --keep: compare the kept leaderboards again and "
                    "rewrite the report with the wall times recorded in --out's JSON (no new runs)")
    ap.add_argument("--keep", default=None, help="an empty folder to run in and keep (home0, home1, home2), "
                    "e.g. to publish the parallel sweep with experiments/publish_sweep.py; default: a temporary one")
    args = ap.parse_args()
    load_before = os.getloadavg()
    walls, boards = {}, {}
    names = list(VARIANTS)
    if args.rescore:
        old = json.loads(Path(args.out).with_suffix(".json").read_text())
        walls, load_before, load_after = old["wall_s"], old["loadavg_before"], old["loadavg_after"]
        files = [Path(args.keep) / f"board{i}.csv" for i in range(len(names))]
        same_threads, vs_previous = compare(files[1], files[2]), compare(files[1], files[0])
        where = breakdown(Path(args.keep) / "home2")
    else:
        with tempfile.TemporaryDirectory() as scratch:
            tmp = args.keep or scratch
            Path(tmp).mkdir(parents=True, exist_ok=True)
            for i, (name, overrides) in enumerate(VARIANTS.items()):
                home = Path(tmp) / f"home{i}"
                home.mkdir()
                walls[name], board = run(overrides, home)
                boards[name] = board.read_text()
                (Path(tmp) / f"board{i}.csv").write_text(boards[name])
                print(f"{name}: {walls[name]:.1f} s", flush=True)
            files = [Path(tmp) / f"board{i}.csv" for i in range(len(names))]
            same_threads = compare(files[1], files[2])
            vs_previous = compare(files[1], files[0])
            where = breakdown(Path(tmp) / "home2")
        load_after = os.getloadavg()
    speedup = walls[names[0]] / walls[names[1]]
    record = {"command": "python experiments/bench_default_benchmark.py", "cpu": cpu_model_name(),
              "cores": os.cpu_count(), "wall_s": walls, "speedup_parallel_over_previous": speedup,
              "parallel_vs_sequential_threads1": same_threads, "parallel_vs_previous": vs_previous,
              "loadavg_before": load_before, "loadavg_after": load_after, "breakdown": where}
    out = Path(args.out)
    atomic_write_json(out.with_suffix(".json"), record)
    rows = "\n".join(f"| {n} | `gbench {' '.join(VARIANTS[n])}` | {walls[n]:.1f} |" for n in names)

    def said(c: dict) -> str:
        if not c.get("same_shape"):
            return "different tables"
        if c["bitwise"]:
            return f"bitwise identical ({c['cells']} cells)"
        return f"{c['unequal_cells']} of {c['cells']} cells differ, largest relative difference {c['max_rel_diff']:.1e}"

    md = f"""# The default benchmark: jobs in parallel vs one at a time

Command: `{record['command']}`

{cpu_model_name()}, {os.cpu_count()} cores; each variant in a fresh GBENCH_HOME, one after the other in this
session. Load average (1, 5, 15 min) before {tuple(round(v, 2) for v in load_before)}, after
{tuple(round(v, 2) for v in load_after)} (a shared machine: absolute seconds move with its load).

| variant | command | wall s |
|---|---|---|
{rows}

**Parallel / previous default: {speedup:.2f}x faster.**

Leaderboards (report/leaderboard.csv; wall-time, speed, run-folder and override-label (`config`) columns left out):
- parallel vs sequential with the same threads per job (threads=1): {said(same_threads)};
- parallel vs the previous default (2 threads per job): {said(vs_previous)}.
{chr(10) + args.note + chr(10) if args.note else ""}{breakdown_md(where, os.cpu_count() or 1)}"""
    atomic_write_text(out.with_suffix(".md"), md)
    print(md)


if __name__ == "__main__":
    main()
