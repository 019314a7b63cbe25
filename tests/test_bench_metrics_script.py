"""experiments/bench_metrics.py end to end on small inputs: every case runs, the peers agree with
ours on the same features, the growth table and the matrix-product floors are written, and the
prdc package (and the --large-skip cases) are left out, with the reason, above their size limits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

import bench_metrics as bench  # noqa: E402


def test_bench_metrics_runs_small_and_agrees_with_the_peers(tmp_path):
    out = tmp_path / "bench"
    cmd = [sys.executable, str(ROOT / "experiments" / "bench_metrics.py"), "--sizes", "120", "300", "--dim", "32",
           "--repeats", "1", "--kid-subsets", "4", "--kid-subset-size", "100", "--prdc-package-max-n", "200",
           "--single-repeat-above", "200", "--large-skip", "cached", "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads(out.with_suffix(".json").read_text())
    small, large = sorted(rec["results"], key=lambda res: res["n"])
    # the same FID from every implementation (statistics given, and from features)
    for res in (small, large):
        assert set(res["fid"]["values"]) >= {"ours sqrtm", "ours eigh (cold)", "pytorch-fid", "torch-fidelity",
                                             "from features: pytorch-fid", "from features: ours (eigh, cold)"}
        assert max(res["fid"]["rel_diff_vs_ours_sqrtm"].values()) < 1e-6
        assert res["kid"]["per_subset_max_abs_diff_vs_torch_fidelity"] < 1e-5
        assert set(res["gemm_floors"]) >= {"prdc/ours (cold)", "kid/ours"}
        assert all(v > 0 for v in res["gemm_gflops"].values())
        assert all(v >= 0 for v in res["peak_rss_bytes"].values())
    # the prdc package ran at N = 120 and gave the same fractions (density: up to the order of its float sum)
    assert small["prdc"]["max_abs_diff"] < 1e-12
    assert "prdc/prdc package" in small["median_s"] and "prdc/prdc package" not in large["median_s"]
    assert "not run above N = 200" in large["skipped"]["prdc/prdc package"]
    assert "prdc/ours (reference radii cached)" in large["skipped"] and "prdc/ours (cold)" in large["median_s"]
    assert "prdc/ours (reference radii cached)" in small["median_s"]
    md = out.with_suffix(".md").read_text()
    assert "## Growth with N" in md and "| N = 120 | N = 300 |" in md
    assert "Matrix-product floor" in md and "fid from features: pytorch-fid / ours" in md
    # the flop-bound ceilings: torch-fidelity's per-subset products are 4 s m^2 d flops, ours 4 n^2 d (once)
    ceilings = bench.floor_ceilings(small)
    kid = small["gemm_floors"]
    assert ceilings["kid: torch-fidelity / ours"][0] == kid["kid/torch-fidelity"]["floor_s"] / kid["kid/ours"]["floor_s"]
    assert "| kid: torch-fidelity / ours |" in md and "(peer floor / our floor)" in md
