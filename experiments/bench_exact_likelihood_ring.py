"""Exact-likelihood models on the 2-D ring: NLL against the exact data NLL.

Trains the small ``flow`` and ``pixelcnn`` presets (vectors: the coupling flow and the MADE
mixture of Gaussians) on the 8-Gaussian ring with each preset's default budget, through the
ordinary ``gbench run`` pipeline (train -> NLL -> sample -> evaluate, EMA weights), and reports
each model's test NLL in bits/dim beside the exact NLL of the data mixture on the same points
(the ring's closed-form density, ``data.toy.GaussianMixture2D.nll_bits_per_dim``), the gap, and
the toy sample metrics. A third run, the flow with 10 affine couplings instead of the splines,
shows why the vector preset uses splines. Writes reports/exact_likelihood_ring.{md,json}.

    OMP_NUM_THREADS=1 python experiments/bench_exact_likelihood_ring.py
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from generative_bench.io import atomic_write_json, atomic_write_text
from generative_bench.records import cpu_model_name

REPO = Path(__file__).resolve().parents[1]
GOAL_BPD = 0.1
#: label -> (model preset, overrides): the two presets, and the flow with affine couplings for contrast
RUNS = {
    "flow": ("flow", []),
    "pixelcnn": ("pixelcnn", []),
    "flow, affine couplings": ("flow", ["model.backend.vector_net.coupling=affine", "model.backend.vector_net.steps=10",
                                        "model.backend.vector_net.hidden=128"]),
}


def run_model(label: str, model: str, run_dir: Path, seed: int, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "generative_bench", "run", f"model={model}", "data=ring", f"seed={seed}",
           "threads=1", f"hydra.run.dir={run_dir}", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode != 0:
        raise SystemExit(f"{model} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    rec = json.loads((run_dir / "results.json").read_text())
    nll, ev = rec["nll"], rec["evaluations"][0]
    return {"label": label, "model": model, "overrides": extra, "family": rec["backend"]["family"],
            "parameters": rec["backend"]["parameters"],
            "steps": rec["train"]["steps"], "batch_size": rec["train"]["batch_size"],
            "train_wall_s": round(rec["train"]["wall_s"], 1), "total_wall_s": round(time.perf_counter() - t0, 1),
            "nll_bpd": nll["bpd"], "nll_sem": nll["bpd_sem"], "data_floor_bpd": nll["data_floor_bpd"],
            "gap_bpd": nll["bpd"] - nll["data_floor_bpd"], "bound": nll["bound"], "nll_examples": nll["examples"],
            "nfe": ev["sampler"]["nfe"], "sampler": ev["sampler"]["settings"], "toy_metrics": ev["metrics"],
            "run_dir": str(run_dir.relative_to(REPO)) if run_dir.is_relative_to(REPO) else str(run_dir)}


def markdown(rows: list[dict], command: str, meta: dict) -> str:
    lines = ["# Exact-likelihood models on the 2-D ring: NLL vs the exact data NLL", "",
             f"Command: `{command}`", "",
             f"Data: 8 Gaussians on the unit circle, std 0.01 (`data=ring`); NLL on {rows[0]['nll_examples']} test "
             "points (EMA weights), against the exact NLL of the data mixture on the same points. Continuous "
             "densities, so bits/dim are negative. Each preset trains with its default budget "
             f"({rows[0]['steps']} steps of batch {rows[0]['batch_size']}). Goal: within {GOAL_BPD} bits/dim.", "",
             "| run | family | parameters | NLL (bits/dim) | exact data NLL | gap | within goal | NFE | modes | "
             "high quality | train s |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        m = r["toy_metrics"]
        ok = "yes" if r["gap_bpd"] <= GOAL_BPD else "no"
        modes, quality = m.get("toy_modes", float("nan")), m.get("toy_high_quality", float("nan"))
        lines.append(f"| {r['label']} | {r['family']} | {r['parameters']:,} "
                     f"| {r['nll_bpd']:.3f} ± {r['nll_sem']:.3f} "
                     f"| {r['data_floor_bpd']:.3f} | {r['gap_bpd']:.3f} | {ok} | {r['nfe']} "
                     f"| {modes:.0f} | {quality:.3f} | {r['train_wall_s']} |")
    runs = "; ".join(f"{r['label']}: `" + " ".join([f"model={r['model']}", *r["overrides"]]) + "`" for r in rows)
    lines += ["", f"Runs: {runs}.", "", "NLL kinds (as recorded):", ""]
    lines += [f"- {r['label']}: {r['bound']}" for r in rows]
    lines += ["", f"Machine: {meta['cpu']}, OMP_NUM_THREADS=1, shared with other jobs (wall times are indicative). "
              f"Git commit {meta['commit']}.", ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs-only", nargs="+", default=list(RUNS), choices=list(RUNS), help="which runs to make")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", default="runs/bench_exact_likelihood_ring")
    ap.add_argument("--out", default="reports/exact_likelihood_ring")
    ap.add_argument("overrides", nargs="*", help="extra gbench overrides for every run")
    args = ap.parse_args(argv)
    command = "OMP_NUM_THREADS=1 python experiments/bench_exact_likelihood_ring.py" + \
        "".join(f" {shlex.quote(a)}" for a in (argv if argv is not None else sys.argv[1:]))
    rows = []
    for label in args.runs_only:
        model, extra = RUNS[label]
        folder = label.replace(", ", "-").replace(" ", "_")
        rows.append(run_model(label, model, (REPO / args.runs / f"{folder}-s{args.seed}").resolve(), args.seed,
                              [*extra, *args.overrides]))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    meta = {"cpu": cpu_model_name(), "commit": commit or "unknown"}
    out = REPO / args.out
    atomic_write_json(out.with_suffix(".json"), {"command": command, "goal_bpd": GOAL_BPD, "rows": rows, **meta})
    atomic_write_text(out.with_suffix(".md"), markdown(rows, command, meta))
    print(markdown(rows, command, meta))


if __name__ == "__main__":
    main()
