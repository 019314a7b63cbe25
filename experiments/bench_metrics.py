"""Metric kernels on the same random features: FID (ours sqrtm / eigh vs pytorch-fid,
torch-fidelity and torchmetrics), KID (ours vs torch-fidelity) and P/R/D/C (ours vs the ``prdc``
package), with the growth in N, peak memory and the matrix-product floor of each k-NN / kernel case.

For every size N (default 2,000, 10,000 and 50,000) two N x D float32 feature sets (D = 2048, fixed
seed, non-negative like Inception pool_3 features: |z| for z ~ N(0, I), the "generated" set
1.01 |z| + 0.005, which puts precision, recall, density and coverage well inside (0, 1)) are scored in one process, on ``--threads`` threads
(numpy/BLAS through threadpoolctl, torch through ``torch.set_num_threads``), with repeats
interleaved (every case once per round) and medians reported. Our caches are emptied before
each "cold" case; the "cached" cases are the next evaluation of a sweep: another generated set
of the same size against the same reference, whose covariance factor (FID) or k-NN radii (PRDC)
the cold case has just cached.

* FID from statistics: the statistics (mean, covariance) are computed once and given to every
  method: ours with ``method="sqrtm"`` (guided-diffusion / pytorch-fid rule), ours with
  ``method="eigh"`` (cold, and with the reference factor cached), pytorch-fid's
  ``calculate_frechet_distance`` (scipy ``sqrtm`` of sigma1 @ sigma2), torch-fidelity's
  ``fid_statistics_to_metric`` (0.4: ``np.linalg.eigvals`` of the non-symmetric product) and
  torchmetrics' ``_compute_fid`` (eigenvalues of sigma1 @ sigma2 in torch float64).
* FID from features (what a user runs: two feature sets in, one number out): ours
  (``gaussian_stats`` of both sets + cold ``eigh``) vs pytorch-fid (``np.mean`` / ``np.cov`` as in
  its ``calculate_activation_statistics`` + ``calculate_frechet_distance``) and torch-fidelity
  (``fid_features_to_statistics`` + ``fid_statistics_to_metric``).
* KID: ``--kid-subsets`` subsets of ``--kid-subset-size`` (seed 2020, torch-fidelity's draw);
  ours ``kernel_inception_distance`` vs torch-fidelity's ``kid_features_to_metric``. Agreement:
  mean/std, and per-subset values on the first subsets (torch-fidelity's ``kernel_mmd`` on the
  same index sets, and float64 kernels).
* PRDC: k = 5 for all four with "<" (``prdc.compute_prdc(real, fake, nearest_k=5)``); the
  package's ``sklearn`` distances are run with ``n_jobs=1`` (it asks for 8 worker threads) so
  both sides use the same thread count. The package holds full N x N float32 distance matrices
  (three of them, and boolean copies for the comparisons), so above ``--prdc-package-max-n``
  (default 20,000) it is not run: at 50,000 that is over 20 GB; ours works in blocks.

Every case's peak resident memory above the process's resident size before the case is
sampled from /proc/self/statm (every 5 ms); sizes above ``--single-repeat-above`` run once, and
without the cases named by ``--large-skip`` (e.g. those whose cost does not grow with N).

    OMP_NUM_THREADS=1 python experiments/bench_metrics.py [--sizes 2000 10000 50000] [--dim 2048] [--repeats 3]
    python experiments/bench_metrics.py --render reports/bench_metrics.json   # re-write the .md from a record
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata as md
import io
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generative_bench import blas  # noqa: E402
from generative_bench.evaluation.metrics import fid as fid_module  # noqa: E402
from generative_bench.evaluation.metrics import kid as kid_module  # noqa: E402
from generative_bench.io import atomic_write_json, atomic_write_text  # noqa: E402
from generative_bench.records import cpu_model_name  # noqa: E402

prdc_module = importlib.import_module("generative_bench.evaluation.metrics.prdc")
SEED = 0
PRDC_K = 5


def make_features(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference, generated and a second generated set (n x d float32, non-negative)."""
    rng = np.random.default_rng([seed, n, d])
    real = np.abs(rng.standard_normal((n, d), dtype=np.float32))
    fake = np.abs(rng.standard_normal((n, d), dtype=np.float32)) * np.float32(1.01) + np.float32(0.005)
    fake2 = np.abs(rng.standard_normal((n, d), dtype=np.float32)) * np.float32(1.01) + np.float32(0.005)
    return real, fake, fake2


class PeakRSS:
    """Peak resident set size (bytes) above the size at entry, polled from /proc/self/statm."""

    PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def __init__(self, every_s: float = 0.005):
        self.every_s, self.peak, self._stop = every_s, 0, threading.Event()

    @classmethod
    def rss(cls) -> int:
        try:
            return int(Path("/proc/self/statm").read_text().split()[1]) * cls.PAGE
        except OSError:  # not Linux: no memory figures
            return 0

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            self._stop.wait(self.every_s)

    def __enter__(self):
        self.start = self.rss()
        self.peak = self.start
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())
        self.above_start = self.peak - self.start


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def prdc_package_single_thread():
    """prdc.compute_prdc with sklearn's pairwise distances on one worker (the package asks for 8)."""
    import prdc.prdc as pkg
    import sklearn.metrics

    def pairwise(data_x, data_y=None):
        return sklearn.metrics.pairwise_distances(data_x, data_x if data_y is None else data_y,
                                                  metric="euclidean", n_jobs=1)

    pkg.compute_pairwise_distance = pairwise

    def run(real, fake, k):
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints the set sizes
            return {name: float(v) for name, v in pkg.compute_prdc(real, fake, nearest_k=k).items()}

    return run


def cases_for(n: int, d: int, args) -> tuple[dict, dict]:
    """The timed cases of one size (name -> callable returning a value) and fixed inputs."""
    from pytorch_fid.fid_score import calculate_frechet_distance
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric
    from torchmetrics.image.fid import _compute_fid

    real, fake, fake2 = make_features(n, d, SEED)
    s_real, s_fake, s_fake2 = (fid_module.gaussian_stats(x, "features") for x in (real, fake, fake2))
    t_real = [torch.from_numpy(v) for v in s_real]
    t_fake = [torch.from_numpy(v) for v in s_fake]
    real_t, fake_t = torch.from_numpy(real), torch.from_numpy(fake)
    prdc_pkg = prdc_package_single_thread()
    kid_kw = dict(subsets=args.kid_subsets, subset_size=min(args.kid_subset_size, n), seed=2020)

    def fid_ours(method, cached=False):
        def run():
            if not cached:
                fid_module.clear_cache()
                return fid_module.frechet_distance(*s_fake, *s_real, method=method)
            # the next evaluation of a sweep: the reference factor is cached by the previous case
            return fid_module.frechet_distance(*s_fake2, *s_real, method=method)
        return run

    def prdc_ours(cached=False):
        def run():
            if not cached:
                prdc_module.clear_cache()
                return prdc_module.prdc(real, fake, pr_k=PRDC_K, dc_k=PRDC_K, pr_comparison="<", dc_comparison="<")
            return prdc_module.prdc(real, fake2, pr_k=PRDC_K, dc_k=PRDC_K, pr_comparison="<", dc_comparison="<")
        return run

    def fid_features_ours():
        fid_module.clear_cache()
        return fid_module.frechet_distance(*fid_module.gaussian_stats(fake, "features"),
                                           *fid_module.gaussian_stats(real, "features"), method="eigh")

    def fid_features_pytorch_fid():
        mu1, mu2 = np.mean(fake, axis=0), np.mean(real, axis=0)
        s1, s2 = np.cov(fake, rowvar=False), np.cov(real, rowvar=False)
        return float(calculate_frechet_distance(mu1, s1, mu2, s2))

    def fid_features_torch_fidelity():
        return float(fid_statistics_to_metric(fid_features_to_statistics(fake_t), fid_features_to_statistics(real_t),
                                              False)["frechet_inception_distance"])

    cases = {
        "fid/ours sqrtm": fid_ours("sqrtm"),
        "fid/ours eigh (cold)": fid_ours("eigh"),
        "fid/ours eigh (reference factor cached)": fid_ours("eigh", cached=True),
        "fid/torch-fidelity": lambda: float(fid_statistics_to_metric({"mu": s_fake.mu, "sigma": s_fake.sigma},
                                                                     {"mu": s_real.mu, "sigma": s_real.sigma},
                                                                     False)["frechet_inception_distance"]),
        "fid/torchmetrics": lambda: float(_compute_fid(t_fake[0], t_fake[1], t_real[0], t_real[1])),
        "fid/pytorch-fid": lambda: float(calculate_frechet_distance(s_fake.mu, s_fake.sigma, s_real.mu, s_real.sigma)),
        "fid-from-features/ours (eigh, cold)": fid_features_ours,
        "fid-from-features/pytorch-fid": fid_features_pytorch_fid,
        "fid-from-features/torch-fidelity": fid_features_torch_fidelity,
        "kid/ours": lambda: kid_module.kernel_inception_distance(fake, real, **kid_kw),
        "kid/torch-fidelity": lambda: kid_features_to_metric(fake_t, real_t, kid_subsets=kid_kw["subsets"],
                                                             kid_subset_size=kid_kw["subset_size"], rng_seed=2020,
                                                             verbose=False),
        "prdc/ours (cold)": prdc_ours(),
        "prdc/ours (reference radii cached)": prdc_ours(cached=True),
        "prdc/prdc package": lambda: prdc_pkg(real, fake, PRDC_K),
    }
    skipped = {}
    if n > args.prdc_package_max_n:
        cases.pop("prdc/prdc package")
        skipped["prdc/prdc package"] = (f"not run above N = {args.prdc_package_max_n:,}: its three dense N x N float32 "
                                        f"distance matrices alone are {3 * n * n * 4 / 2**30:.0f} GiB at N = {n:,}")
    skip = [(s, "skipped (--skip)") for s in args.skip]
    if n > args.single_repeat_above:
        skip += [(s, f"skipped above N = {args.single_repeat_above:,} (--large-skip)") for s in args.large_skip]
    for pattern, why in skip:
        skipped.update({k: why for k in cases if pattern in k})
        cases = {k: v for k, v in cases.items() if pattern not in k}
    inputs = {"real": real, "fake": fake, "s_real": s_real, "s_fake": s_fake, "kid_kw": kid_kw, "skipped": skipped}
    return cases, inputs


def kid_agreement(inputs: dict, values: dict, subsets_checked: int) -> dict:
    from torch_fidelity.metric_kid import kernel_mmd

    real, fake, kw = inputs["real"], inputs["fake"], inputs["kid_kw"]
    out = {}
    if "kid/ours" in values and "kid/torch-fidelity" in values:
        ours, tf = values["kid/ours"], values["kid/torch-fidelity"]
        out["mean_abs_diff"] = abs(ours.mean - tf["kernel_inception_distance_mean"])
        out["mean_rel_diff"] = rel(ours.mean, tf["kernel_inception_distance_mean"])
        out["std_abs_diff"] = abs(ours.std - tf["kernel_inception_distance_std"])
    idx1, idx2 = kid_module.kid_subset_indices(len(fake), len(real), kw["subsets"], kw["subset_size"], kw["seed"])
    idx1, idx2 = idx1[:subsets_checked], idx2[:subsets_checked]
    ours = kid_module.mmd2_subsets(fake, real, idx1, idx2)
    tf = np.array([kernel_mmd(fake[i], real[j], kid_kernel="poly", kid_kernel_poly_degree=3,
                              kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1) for i, j in zip(idx1, idx2)])
    exact = []
    for i, j in zip(idx1, idx2):
        x, y = fake[i].astype(np.float64), real[j].astype(np.float64)
        k = kid_module.polynomial_kernel
        exact.append(kid_module.mmd2_unbiased(k(x, x), k(x, y), k(y, y)))
    exact = np.array(exact)
    out.update({"subsets_checked": int(len(idx1)),
                "per_subset_max_abs_diff_vs_torch_fidelity": float(np.abs(ours - tf).max()),
                "per_subset_max_rel_diff_vs_torch_fidelity": float((np.abs(ours - tf) / np.abs(tf)).max()),
                "per_subset_max_abs_diff_vs_float64": float(np.abs(ours - exact).max()),
                "torch_fidelity_max_abs_diff_vs_float64": float(np.abs(tf - exact).max()),
                "per_subset_values_ours": ours.tolist(), "per_subset_values_torch_fidelity": tf.tolist()})
    return out


def gemm_rates(d: int, rows: int = 4096, repeats: int = 3) -> dict[str, float]:
    """Best-of-``repeats`` GFLOP/s of ``a @ b.T`` ((rows, d) x (d, rows)) in float32 and float64:
    the BLAS rate that bounds every distance and kernel matrix below (call inside the thread limit)."""
    rng = np.random.default_rng(1)
    out = {}
    for dt in (np.float32, np.float64):
        a, b = rng.standard_normal((rows, d)).astype(dt), rng.standard_normal((rows, d)).astype(dt)
        best = min(_timed(lambda: a @ b.T) for _ in range(repeats))
        out[np.dtype(dt).name] = 2.0 * rows * rows * d / best / 1e9
    return out


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def gemm_floors(n: int, d: int, kid_kw: dict, kid_strategy: str, rates: dict[str, float]) -> dict[str, dict]:
    """Matrix-product flops each k-NN / kernel case cannot avoid, and the seconds they take at the
    measured BLAS rate (a symmetric product counts half: BLAS syrk)."""
    s, m = kid_kw["subsets"], kid_kw["subset_size"]
    per_subset = 4.0 * s * m * m * d  # syrk x.x^T, syrk y.y^T (m^2 d each), x.y^T (2 m^2 d)
    flops = {
        "prdc/ours (cold)": (4.0 * n * n * d, "float32"),  # two triangles (n^2 d each) + the cross (2 n^2 d)
        "prdc/ours (reference radii cached)": (3.0 * n * n * d, "float32"),
        "prdc/prdc package": (6.0 * n * n * d, "float64"),  # three full matrices, sklearn upcasts float32 to float64
        "kid/ours": (4.0 * n * n * d if kid_strategy == "once" else per_subset, "float32"),
        "kid/torch-fidelity": (per_subset, "float32"),
    }
    return {k: {"gflop": f / 1e9, "dtype": dt, "floor_s": f / 1e9 / rates[dt]} for k, (f, dt) in flops.items()}


FLOOR_PAIRS = {"kid: torch-fidelity / ours": ("kid/torch-fidelity", "kid/ours"),
               "prdc: prdc package / ours (cold)": ("prdc/prdc package", "prdc/ours (cold)"),
               "prdc: prdc package / ours (cached radii)": ("prdc/prdc package", "prdc/ours (reference radii cached)")}


def floor_ceilings(res: dict) -> dict[str, tuple[float, float | None]]:
    """Per peer pair: (peer floor / our floor, measured peer median / our median)."""
    floors, med = res.get("gemm_floors", {}), res["median_s"]
    out = {}
    for label, (peer, ours) in FLOOR_PAIRS.items():
        if peer in floors and ours in floors and peer in med:
            measured = med[peer] / med[ours] if med.get(ours) else None
            out[label] = (floors[peer]["floor_s"] / floors[ours]["floor_s"], measured)
    return out


def bench_size(n: int, d: int, args) -> dict:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=args.threads):
        cases, inputs = cases_for(n, d, args)
        times: dict[str, list[float]] = {k: [] for k in cases}
        peak: dict[str, int] = {k: 0 for k in cases}
        values: dict[str, object] = {}
        repeats = 1 if n > args.single_repeat_above else args.repeats
        for r in range(repeats):
            for name, fn in cases.items():
                with PeakRSS() as mem:
                    t0 = time.perf_counter()
                    values[name] = fn()
                    times[name].append(time.perf_counter() - t0)
                peak[name] = max(peak[name], mem.above_start)
                print(f"n={n} repeat {r}: {name} {times[name][-1]:.2f} s, peak +{mem.above_start / 2**20:.0f} MiB",
                      flush=True)
        kid = kid_agreement(inputs, values, args.kid_check_subsets)
        rates = gemm_rates(d)
    med = {k: statistics.median(v) for k, v in times.items()}
    fid_vals = {k.split("/", 1)[1]: float(v) for k, v in values.items() if k.startswith("fid/") and "cached" not in k}
    fid_vals.update({"from features: " + k.split("/", 1)[1]: float(v) for k, v in values.items()
                     if k.startswith("fid-from-features/")})
    fid_ref = fid_vals.get("ours sqrtm")
    fid = {"values": fid_vals}
    if fid_ref is not None:
        fid["rel_diff_vs_ours_sqrtm"] = {k: rel(v, fid_ref) for k, v in fid_vals.items()}
        fid["abs_diff_vs_ours_sqrtm"] = {k: abs(v - fid_ref) for k, v in fid_vals.items()}
    prdc_vals = {k.split("/", 1)[1]: v for k, v in values.items() if k.startswith("prdc/") and "cached" not in k}
    prdc = {"values": prdc_vals}
    if "ours (cold)" in prdc_vals and "prdc package" in prdc_vals:
        a, b = prdc_vals["ours (cold)"], prdc_vals["prdc package"]
        prdc["equal"] = a == b
        prdc["max_abs_diff"] = max(abs(a[k] - b[k]) for k in a)

    def ratio(slow: str, fast: str) -> float | None:
        return med[slow] / med[fast] if slow in med and fast in med else None

    ratios = {
        "fid: ours sqrtm / ours eigh (cold)": ratio("fid/ours sqrtm", "fid/ours eigh (cold)"),
        "fid: ours sqrtm / ours eigh (cached factor)": ratio("fid/ours sqrtm", "fid/ours eigh (reference factor cached)"),
        "fid: torch-fidelity / ours eigh (cold)": ratio("fid/torch-fidelity", "fid/ours eigh (cold)"),
        "fid: torchmetrics / ours eigh (cold)": ratio("fid/torchmetrics", "fid/ours eigh (cold)"),
        "fid: pytorch-fid / ours eigh (cold)": ratio("fid/pytorch-fid", "fid/ours eigh (cold)"),
        "fid from features: pytorch-fid / ours": ratio("fid-from-features/pytorch-fid",
                                                       "fid-from-features/ours (eigh, cold)"),
        "fid from features: torch-fidelity / ours": ratio("fid-from-features/torch-fidelity",
                                                          "fid-from-features/ours (eigh, cold)"),
        "kid: torch-fidelity / ours": ratio("kid/torch-fidelity", "kid/ours"),
        "prdc: prdc package / ours (cold)": ratio("prdc/prdc package", "prdc/ours (cold)"),
        "prdc: prdc package / ours (cached radii)": ratio("prdc/prdc package", "prdc/ours (reference radii cached)"),
    }
    return {"n": n, "dim": d, "repeats": repeats, "seconds": times, "median_s": med, "peak_rss_bytes": peak,
            "skipped": inputs["skipped"], "ratios": {k: v for k, v in ratios.items() if v},
            "fid": fid, "kid": kid, "kid_settings": inputs["kid_kw"],
            "kid_strategy": kid_module._strategy("auto", n, n, inputs["kid_kw"]["subsets"],
                                                 inputs["kid_kw"]["subset_size"], d),
            "prdc": prdc, "rank_deficient": n <= d, "gemm_gflops": rates,
            "gemm_floors": gemm_floors(n, d, inputs["kid_kw"], kid_module._strategy(
                "auto", n, n, inputs["kid_kw"]["subsets"], inputs["kid_kw"]["subset_size"], d), rates)}


def versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("numpy", "scipy", "torch", "torchmetrics", "torch-fidelity", "pytorch-fid", "prdc", "scikit-learn",
                "threadpoolctl"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    out["blas"] = blas.describe()
    return out


def fmt(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


GROWTH_RATIOS = ("fid from features: pytorch-fid / ours", "fid: pytorch-fid / ours eigh (cold)",
                 "fid: torch-fidelity / ours eigh (cold)", "kid: torch-fidelity / ours",
                 "prdc: prdc package / ours (cold)", "prdc: prdc package / ours (cached radii)")


def growth_tables(results: list[dict]) -> list[str]:
    """Seconds per case and speed-ups per size, side by side (the growth with N)."""
    if len(results) < 2:
        return []
    results = sorted(results, key=lambda r: r["n"])
    head = "| case | " + " | ".join(f"N = {r['n']:,}" for r in results) + " |"
    rule = "|---|" + "---|" * len(results)
    names = list(dict.fromkeys(k for r in results for k in list(r["seconds"]) + list(r.get("skipped", {}))))
    lines = ["## Growth with N (median seconds; '-': not run, see the size's section)", "", head, rule]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(fmt(r["median_s"].get(name)) for r in results) + " |")
    lines += ["", "| speed-up | " + " | ".join(f"N = {r['n']:,}" for r in results) + " |", rule]
    for name in GROWTH_RATIOS:
        lines.append(f"| {name} | " + " | ".join(
            fmt(r["ratios"].get(name)) + ("x" if r["ratios"].get(name) else "") for r in results) + " |")
    return lines + [""]


def markdown(record: dict) -> str:
    lines = [f"# Metric kernels: ours vs pytorch-fid, torch-fidelity, torchmetrics and prdc (CPU, {record['threads']} "
             "thread)", "",
             f"Command: `{record['command']}`", "",
             f"{record['cpu']}; {record['threads']} thread (BLAS via threadpoolctl, torch.set_num_threads; "
             f"OMP_NUM_THREADS={record['omp_num_threads']}); "
             + ", ".join(f"{k} {v}" for k, v in record["versions"].items() if k != "blas" and v) + "; BLAS "
             + record["versions"]["blas"] + ".", "",
             f"Features: two (N, {record['dim']}) float32 sets per size, |z| with z ~ N(0, I) (reference) and "
             "1.01 |z| + 0.005 (generated), seed 0; a second generated set for the cached cases (the next evaluation "
             f"of a sweep against the same reference). {record['repeats']} interleaved repeats, medians"
             + (f" (one run above N = {record['single_repeat_above']:,})" if record.get("single_repeat_above") else "")
             + "; peak memory is the largest resident size during a case above the size before it. "
             f"KID: {record['kid_subsets']} subsets of min({record['kid_subset_size']}, N), seed 2020 (torch-fidelity's "
             f"draw). P/R/D/C: k = {PRDC_K}, '<' for all four (the prdc package's rule), the package's sklearn "
             "distances run with n_jobs=1.", ""]
    lines += growth_tables(record["results"])
    for res in record["results"]:
        n = res["n"]
        lines += [f"## N = {n:,} x {res['dim']}" + (" (rank-deficient covariances: N <= D)" if res["rank_deficient"]
                                                     else " (full-rank covariances)"), "",
                  "| case | median s | all repeats (s) | peak memory (MiB) |", "|---|---|---|---|"]
        for name, ts in res["seconds"].items():
            mib = res.get("peak_rss_bytes", {}).get(name)
            lines.append(f"| {name} | {res['median_s'][name]:.2f} | {', '.join(f'{t:.2f}' for t in ts)} | "
                         f"{'-' if mib is None else f'{mib / 2**20:,.0f}'} |")
        for name, why in res.get("skipped", {}).items():
            lines.append(f"| {name} | - | {why} | - |")
        if res.get("gemm_floors"):
            r = res["gemm_gflops"]
            lines += ["", f"Matrix-product floor at the measured BLAS rate (float32 {r['float32']:.1f} GFLOP/s, float64 "
                      f"{r['float64']:.1f} GFLOP/s, (4096 x {res['dim']}) @ ({res['dim']} x 4096), best of 3): the flops "
                      "each case cannot avoid, and the share of its median time they explain (on a loaded machine the rate "
                      "measured at that moment can be below the rate a case saw, and a share above 100% is that noise).",
                      "",
                      "| case | GFLOP | dtype | floor s | floor / median |", "|---|---|---|---|---|"]
            for name, f in res["gemm_floors"].items():
                med = res["median_s"].get(name)
                share = "-" if not med else format(f["floor_s"] / med, ".0%")
                lines.append(f"| {name} | {f['gflop']:,.0f} | {f['dtype']} | {f['floor_s']:.2f} | {share} |")
            ceilings = floor_ceilings(res)
            if ceilings:
                lines += ["", "The speed-up each pair could reach if both sides ran their matrix products at the "
                          "measured rate and did nothing else (peer floor / our floor), against the measured one:", "",
                          "| pair | ceiling | measured |", "|---|---|---|"]
                lines += [f"| {k} | {c:.2f}x | {fmt(m, '.2f')}x |" for k, (c, m) in ceilings.items()]
        lines += ["", "| ratio (speed-up) | value |", "|---|---|"]
        lines += [f"| {k} | {v:.2f}x |" for k, v in res["ratios"].items()]
        fid = res["fid"]
        lines += ["", "FID values and agreement with ours (sqrtm rule):", "",
                  "| method | FID | abs diff | rel diff |", "|---|---|---|---|"]
        for k, v in fid["values"].items():
            lines.append(f"| {k} | {v:.9g} | {fid.get('abs_diff_vs_ours_sqrtm', {}).get(k, float('nan')):.2e} | "
                         f"{fid.get('rel_diff_vs_ours_sqrtm', {}).get(k, float('nan')):.2e} |")
        kid = res["kid"]
        lines += ["", f"KID (strategy {res['kid_strategy']}): mean |ours - torch-fidelity| "
                  f"{fmt(kid.get('mean_abs_diff'), '.2e')} (relative {fmt(kid.get('mean_rel_diff'), '.2e')}), std "
                  f"{fmt(kid.get('std_abs_diff'), '.2e')}; on the first {kid['subsets_checked']} subsets, same index "
                  f"sets: max |ours - torch-fidelity| {kid['per_subset_max_abs_diff_vs_torch_fidelity']:.2e} "
                  f"(relative {kid['per_subset_max_rel_diff_vs_torch_fidelity']:.2e}); against float64 kernels and "
                  f"sums ours {kid['per_subset_max_abs_diff_vs_float64']:.2e}, torch-fidelity (float32 kernels and sums) "
                  f"{kid['torch_fidelity_max_abs_diff_vs_float64']:.2e}."]
        prdc = res["prdc"]
        if "equal" in prdc:
            ours, pkg = prdc["values"]["ours (cold)"], prdc["values"]["prdc package"]
            lines += ["", f"P/R/D/C: ours {', '.join(f'{k} {v:.6g}' for k, v in ours.items())}; prdc package "
                      f"{', '.join(f'{k} {v:.6g}' for k, v in pkg.items())}: "
                      + ("identical." if prdc["equal"] else
                         f"the same fractions up to float rounding (largest difference {prdc['max_abs_diff']:.1e})."
                         if prdc["max_abs_diff"] < 1e-12 else f"max |difference| {prdc['max_abs_diff']:.2e}.")]
        lines.append("")
    lines += ["What is compared: FID `eigh` is the exact trace of (S1 S2)^(1/2) from symmetric eigendecompositions "
              "(the reference covariance factor once, cached, then one `eigvalsh` per evaluation); `sqrtm` is "
              "scipy.linalg.sqrtm of the product (the guided-diffusion / pytorch-fid rule); torch-fidelity 0.4 "
              "(`np.linalg.eigvals`) and torchmetrics (`torch.linalg.eigvals`) take the eigenvalues of the "
              "non-symmetric product. pytorch-fid's `calculate_frechet_distance` is that sqrtm rule too. KID evaluates each kernel entry "
              "once per evaluation when that needs fewer flops than per-subset blocks (break-even near N = 10,000 for 100 subsets of 1,000), in float32 "
              "products with float64 sums. P/R/D/C computes one triangle of each symmetric distance matrix and "
              "caches the reference radii.", "",
              f"Machine load average (1, 5, 15 min) before {tuple(record['loadavg_before'])}, after {tuple(record['loadavg_after'])}: "
              "the machine is shared, so the interleaved ratios are the meaningful numbers.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2_000, 10_000, 50_000])
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--kid-subsets", type=int, default=100)
    ap.add_argument("--kid-subset-size", type=int, default=1000)
    ap.add_argument("--kid-check-subsets", type=int, default=5, help="subsets compared value by value")
    ap.add_argument("--single-repeat-above", type=int, default=20_000, help="sizes above this run each case once")
    ap.add_argument("--prdc-package-max-n", type=int, default=20_000,
                    help="largest N at which the prdc package (dense N x N matrices) is run")
    ap.add_argument("--skip", nargs="*", default=[], help="skip cases whose name contains one of these strings")
    ap.add_argument("--large-skip", nargs="*", default=[],
                    help="above --single-repeat-above, also skip cases whose name contains one of these strings")
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench_metrics"))
    ap.add_argument("--render", help="only re-write the markdown of this saved .json record")
    args = ap.parse_args()
    if args.render:
        import json

        path = Path(args.render)
        atomic_write_text(path.with_suffix(".md"), markdown(json.loads(path.read_text())))
        return
    torch.set_num_threads(args.threads)
    load_before = tuple(round(v, 2) for v in os.getloadavg())
    results = [bench_size(n, args.dim, args) for n in args.sizes]
    env = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if os.environ.get("OMP_NUM_THREADS") else ""
    record = {"command": (env + "python experiments/bench_metrics.py " + " ".join(sys.argv[1:])).strip(),
              "cpu": cpu_model_name(), "threads": args.threads, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
              "versions": versions(), "dim": args.dim, "repeats": args.repeats, "seed": SEED,
              "kid_subsets": args.kid_subsets, "kid_subset_size": args.kid_subset_size, "results": results,
              "single_repeat_above": args.single_repeat_above,
              "loadavg_before": load_before, "loadavg_after": tuple(round(v, 2) for v in os.getloadavg())}
    out = Path(args.out)
    atomic_write_json(out.with_suffix(".json"), record)
    text = markdown(record)
    atomic_write_text(out.with_suffix(".md"), text)
    print(text)


if __name__ == "__main__":
    main()
