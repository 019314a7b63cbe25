"""Long passes show themselves: log lines with a rate and an ETA off a terminal, one warning with
the expected duration and the faster options when a pass will take minutes (progress.Progress),
and a real reference pass through `gbench evaluate` that prints them within its first seconds."""

from __future__ import annotations

import logging
import subprocess
import sys
import time

import numpy as np

from generative_bench.progress import Progress, duration


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_log_lines_carry_count_rate_and_eta_and_a_long_pass_is_announced(caplog):
    clock = Clock()
    caplog.set_level(logging.INFO, logger="generative_bench")
    bar = Progress(50_000, "reference features (inception)", interval=5.0, bar=False, clock=clock,
                   advice="eval.reference_subset=10000 is faster", long_after=120.0)
    for _ in range(3):
        clock.t += 4.0
        bar.update(100)  # 25 images/s
    lines = [r.getMessage() for r in caplog.records]
    assert any("about 33 min for 50,000 images at 25.0 images/s; eval.reference_subset=10000" in ln for ln in lines)
    progress = [ln for ln in lines if ln.startswith("reference features (inception): ") and "ETA" in ln]
    assert progress == ["reference features (inception): 200/50,000 images (0%), 25.0 images/s, ETA 33 min"]
    quick = Progress(10, "sample", interval=5.0, bar=False, clock=clock)
    caplog.clear()
    quick.update(10)
    assert not caplog.records  # a pass shorter than one interval says nothing
    assert duration(45) == "45 s" and duration(3 * 3600 + 120) == "3 h 2 min"


def test_a_reference_pass_reports_progress_within_its_first_seconds(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", arr_0=rng.integers(0, 256, (400, 8, 8, 3), dtype=np.uint8))
    np.savez(tmp_path / "samples.npz", arr_0=rng.integers(0, 256, (10, 8, 8, 3), dtype=np.uint8))
    cmd = [sys.executable, "-m", "generative_bench", "evaluate", "sampler=npz", f"sampler.path={tmp_path}/samples.npz",
           "data=npz", f"data.source.path={tmp_path}/data.npz", "data.shape=[3,8,8]", "eval.num_samples=10",
           "eval.metrics=[fid]", "eval.features.batch_size=10", f"paths.cache_dir={tmp_path}/cache",
           f"hydra.run.dir={tmp_path}/run"]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = None
    try:
        for line in proc.stdout:
            if "reference data train features" in line and "images/s" in line:
                first = (time.monotonic() - t0, line)
                break
    finally:
        proc.kill()
        proc.wait()
    assert first is not None, "no progress line"
    startup = 15.0  # interpreter, torch and Hydra start before the pass does (seconds, on a busy 2-core CPU)
    assert first[0] < startup + 10.0, first
    assert "ETA" in first[1] and "/400 images" in first[1]
    assert "gbench: warning: the FID Inception weights" not in first[1]
