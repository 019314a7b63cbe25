"""A sweep composes and validates every job before launching any: a bad value is reported once,
exit 2, and no run folder is written."""

from __future__ import annotations

import os
import subprocess
import sys
import time

GBENCH = [sys.executable, "-m", "generative_bench"]


def _run(tmp_path, *args):
    env = {**os.environ, "GBENCH_HOME": str(tmp_path)}
    t0 = time.perf_counter()
    r = subprocess.run([*GBENCH, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    return r, time.perf_counter() - t0


def test_a_bad_value_of_the_default_sweep_is_one_message_before_any_job(tmp_path):
    r, seconds = _run(tmp_path, "eval.num_samples=0")
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("gbench: error:")]
    assert errors == ["gbench: error: invalid sweep configuration, no job launched: eval.num_samples=0: must be an "
                      "integer >= 1 (every job of the sweep)"]
    assert "Launching jobs" not in r.stdout + r.stderr
    assert not (tmp_path / "runs").exists()  # no run folder, no sweep folder
    assert seconds < 5.0, seconds


def test_problems_of_some_jobs_name_their_job(tmp_path):
    r, _ = _run(tmp_path, "-m", "model=gaussian,vae", "++model.sampling.temperature=inf", "train.max_steps=3")
    assert r.returncode == 2
    assert "model=gaussian: model.sampling: DiagonalGaussian got unknown sampling option(s) ['temperature']" in r.stderr
    assert "model=vae: model.sampling: VAEBackend sampling option temperature=inf must be a finite number" in r.stderr
    assert not (tmp_path / "runs").exists()
