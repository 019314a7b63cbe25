"""P/R/D/C with exact decisions against the code before them and the prdc package, in one process.

Loads ``generative_bench/evaluation/metrics/prdc.py`` as it was at git revision ``--previous`` next to
today's, and times both and ``prdc.compute_prdc`` (sklearn distances, one worker) on the same
features, interleaved, one BLAS thread, k = 5 and '<' for all four (the package's rule). Then, on
a set with exact duplicates and near-ties, it shows what the exact decisions are for: the previous
code's fractions move with the block sizes, today's equal a float64 brute force at every block
size. Writes reports/bench_prdc_exact.{json,md}.

    OMP_NUM_THREADS=1 python experiments/bench_prdc_exact.py --previous REV [--n 10000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generative_bench import blas  # noqa: E402
from generative_bench.io import atomic_write_json, atomic_write_text  # noqa: E402
from generative_bench.records import cpu_model_name  # noqa: E402

K = 5


def previous_module(rev: str, folder: Path):
    """prdc.py at ``rev``, loaded as a sibling module of today's (its relative imports resolve)."""
    text = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:generative_bench/evaluation/metrics/prdc.py"],
                          check=True, capture_output=True, text=True).stdout
    path = folder / "_prdc_previous.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("generative_bench.evaluation.metrics._prdc_previous", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def package_prdc():
    import prdc.prdc as pkg
    import sklearn.metrics

    pkg.compute_pairwise_distance = lambda x, y=None: sklearn.metrics.pairwise_distances(
        x, x if y is None else y, metric="euclidean", n_jobs=1)

    def run(real, fake):
        with contextlib.redirect_stdout(io.StringIO()):
            return {k: float(v) for k, v in pkg.compute_prdc(real, fake, nearest_k=K).items()}
    return run


def features(n: int, d: int, seed: int = 0):
    rng = np.random.default_rng([seed, n, d])
    real = np.abs(rng.standard_normal((n, d), dtype=np.float32))
    fake = np.abs(rng.standard_normal((n, d), dtype=np.float32)) * np.float32(1.01) + np.float32(0.005)
    return real, fake


def duplicated(n: int, d: int, seed: int = 1):
    """Reference rows repeated 1-6 times; samples copying them exactly and within 1e-6, plus fresh ones."""
    rng = np.random.default_rng(seed)
    base = np.abs(rng.standard_normal((n // 3, d))).astype(np.float32)
    ref = np.repeat(base, rng.integers(1, 7, size=len(base)), axis=0)[:n]
    near = ref[rng.integers(0, len(ref), n // 3)] + (rng.standard_normal((n // 3, d)) * 1e-6).astype(np.float32)
    samp = np.concatenate([ref[rng.integers(0, len(ref), n // 3)], near,
                           np.abs(rng.standard_normal((n - 2 * (n // 3), d))).astype(np.float32)])
    return ref, samp


def brute_force(ref, samp, k):
    """Dense float64 P/R/D/C with sum((u - v)^2) distances and '<' (the tests' reference)."""
    def sq(u, v):
        out = np.empty((len(u), len(v)))
        for i in range(0, len(u), 256):
            diff = u[i:i + 256, None].astype(np.float64) - v[None].astype(np.float64)
            out[i:i + 256] = np.einsum("ijk,ijk->ij", diff, diff)
        return out
    d_rr, d_ss, d_rs = sq(ref, ref), sq(samp, samp), sq(ref, samp)
    rr, rs = np.sort(d_rr, 1)[:, k], np.sort(d_ss, 1)[:, k]
    return {"precision": float((d_rs < rr[:, None]).any(0).mean()), "recall": float((d_rs < rs[None]).any(1).mean()),
            "density": float((d_rs < rr[:, None]).sum(0).mean() / k), "coverage": float((d_rs.min(1) < rr).mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--previous", required=True, help="git revision of the code before the exact decisions")
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dup-n", type=int, default=1200)
    ap.add_argument("--dup-dim", type=int, default=64)
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench_prdc_exact"))
    args = ap.parse_args()
    today = importlib.import_module("generative_bench.evaluation.metrics.prdc")
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(1):
        before = previous_module(args.previous, Path(tmp))
        pkg = package_prdc()
        real, fake = features(args.n, args.dim)
        cases = {"before (previous code)": lambda: before.prdc(real, fake, pr_k=K, dc_k=K, pr_comparison="<",
                                                               cache_reference=False),
                 "today (exact decisions)": lambda: today.prdc(real, fake, pr_k=K, dc_k=K, pr_comparison="<",
                                                               cache_reference=False),
                 "prdc package": lambda: pkg(real, fake)}
        times = {name: [] for name in cases}
        values = {}
        for r in range(args.repeats):
            for name, fn in cases.items():
                t0 = time.perf_counter()
                values[name] = fn()
                times[name].append(time.perf_counter() - t0)
                print(f"repeat {r}: {name} {times[name][-1]:.2f} s", flush=True)
        med = {name: float(np.median(t)) for name, t in times.items()}
        ref, samp = duplicated(args.dup_n, args.dup_dim)
        truth = brute_force(ref, samp, K)
        blocks = [(5000, 5000), (97, 131), (7, 3)]
        dup = {"float64 brute force": truth}
        for label, module in (("before", before), ("today", today)):
            for rb, cb in blocks:
                dup[f"{label}, blocks {rb}x{cb}"] = module.prdc(ref, samp, pr_k=K, dc_k=K, pr_comparison="<",
                                                                row_batch_size=rb, col_batch_size=cb,
                                                                cache_reference=False)
    record = {"command": "OMP_NUM_THREADS=1 python experiments/bench_prdc_exact.py " + " ".join(sys.argv[1:]),
              "cpu": cpu_model_name(), "blas": blas.describe(),
              "n": args.n, "dim": args.dim, "repeats": args.repeats, "seconds": times, "median_s": med,
              "values": values, "duplicates": {"n": args.dup_n, "dim": args.dup_dim, "fractions": dup}}
    out = Path(args.out)
    atomic_write_json(out.with_suffix(".json"), record)
    lines = ["# P/R/D/C with exact decisions: speed against the previous code and the prdc package",
             "", f"Command: `{record['command']}`", "",
             f"{record['cpu']}; BLAS {record['blas']}; one BLAS thread; N = {args.n:,} x {args.dim} float32 per set (|z| features as in "
             f"bench_metrics), k = {K}, '<' for all four; {args.repeats} interleaved repeats, medians.", "",
             "| code | median s | all repeats (s) | prdc package / this |", "|---|---|---|---|"]
    for name in cases:
        lines.append(f"| {name} | {med[name]:.2f} | {', '.join(f'{t:.2f}' for t in times[name])} | "
                     f"{med['prdc package'] / med[name]:.2f}x |")
    lines += ["", f"Today / before: {med['today (exact decisions)'] / med['before (previous code)']:.3f}x the time. "
              "Fractions on these features: " + ("identical in all three." if len({str(v) for v in values.values()}) == 1
                                                 else "; ".join(f"{k}: {v}" for k, v in values.items())), "",
              f"## What the exact decisions are for: exact duplicates and near-ties ({args.dup_n} x {args.dup_dim})", "",
              "| computation | precision | recall | density | coverage |", "|---|---|---|---|---|"]
    for name, v in dup.items():
        lines.append(f"| {name} | " + " | ".join(f"{v[m]:.6f}" for m in ("precision", "recall", "density", "coverage"))
                     + " |")
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print(out.with_suffix(".md"))


if __name__ == "__main__":
    main()
