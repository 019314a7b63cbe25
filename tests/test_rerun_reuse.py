"""A rerun of a finished default benchmark reuses its records: no sampling, no evaluation, no NLL.

Every NLL and evaluation entry carries the content key it was made under (trained weights, data,
evaluation settings, seed, resolved sampler settings, code); the rerun finds them all and only
rebuilds the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest




def _gbench(cwd, *args):
    env = {**os.environ, "GBENCH_HOME": str(cwd), "GBENCH_CACHE": str(cwd / "cache")}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "generative_bench", *args], cwd=cwd, capture_output=True, text=True,
                       timeout=900, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r, time.perf_counter() - t0


def _records(runs):
    return {p.parent.name: json.loads(p.read_text()) for p in runs.glob("*/*/results.json")}


@pytest.mark.slow
def test_rerunning_the_finished_default_benchmark_samples_and_scores_nothing(tmp_path):
    first, first_s = _gbench(tmp_path)
    before = _records(tmp_path / "runs")
    assert len(before) == 4 and all(rec["status"] == "completed" for rec in before.values())
    samples = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*/*/samples/*.npz")}
    assert samples and all(e.get("content_key") for rec in before.values() for e in rec["evaluations"])

    second, second_s = _gbench(tmp_path)
    after = _records(tmp_path / "runs")
    log = second.stdout + second.stderr
    assert "evaluation(s) already recorded" in log and "sample+features" not in log
    for name, rec in after.items():
        assert rec["evaluations"] == before[name]["evaluations"], name  # the same entries, not recomputed
        assert rec["nll"] == before[name]["nll"], name
        assert rec["wall_times"].get("evaluate_s") == before[name]["wall_times"].get("evaluate_s")
    assert {p: p.stat().st_mtime_ns for p in samples} == samples  # no sample file written again
    assert "report:" in second.stdout
    assert second_s < 0.10 * first_s, (first_s, second_s)


def test_console_lines_use_the_reports_metric_names_and_say_not_comparable():
    from generative_bench.pipeline import console_line

    entry = {"sampler": {"settings": {"method": "ddim", "steps": 25}}, "comparable": False,
             "protocol": {"features": {"kind": "domain", "name": "cifar10-resnet"}},
             "metrics": {"fid": 790.1234567, "precision": 0.5, "fid_per_class": [1.0, 2.0]}}
    line = console_line("ddpm", entry)
    assert line.startswith("ddpm ")  # the run's name leads the line
    assert "FD_cifar10-resnet" in line and "'fid'" not in line and "precision_cifar10-resnet" in line
    assert line.endswith("[NOT comparable to published figures]")
    inception = {**entry, "comparable": True, "protocol": {"features": {"kind": "inception"}}}
    assert "'FID': 790.1235" in console_line("ddpm", inception) and "NOT comparable" not in console_line("ddpm", inception)


def test_weights_digest_covers_every_kind_of_state():
    """Batch-norm counters are 0-dim integer tensors: the digest reads them like any other."""
    import torch

    from generative_bench.content import weights_digest

    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    first = weights_digest(net)
    assert first == weights_digest(net) and len(first) == 64
    net[1].num_batches_tracked += 1  # a 0-dim long tensor
    assert weights_digest(net) != first
