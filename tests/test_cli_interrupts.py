"""Real `gbench` processes: SIGTERM checkpoints and resumes, SIGKILL leaves checkpoint + record intact."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from generative_bench.training.checkpoint import load_checkpoint

GBENCH = [sys.executable, "-m", "generative_bench"]


def start_training(run_dir: Path, *extra: str) -> subprocess.Popen:
    cmd = GBENCH + ["train", "model=gaussian", "train.max_steps=100000000", "train.log_every=100",
                    f"hydra.run.dir={run_dir}", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.time()
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"process ended early:\n{proc.stdout.read()}")
        if time.time() - t0 > timeout:
            proc.kill()
            raise AssertionError(f"{path} did not appear")
        time.sleep(0.2)


def test_sigterm_saves_a_checkpoint_and_the_same_command_resumes(tmp_path):
    run = tmp_path / "run"
    proc = start_training(run, "train.checkpoint_every=100000000")
    wait_for(run / "train_log.csv", proc)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    rec = json.loads((run / "results.json").read_text())
    assert rec["status"] == "interrupted" and rec["error"]["stage"] == "train", out
    step = load_checkpoint(run / "checkpoints")["step"]
    assert step > 0
    done = subprocess.run(GBENCH + ["train", "model=gaussian", f"train.max_steps={step + 25}", f"hydra.run.dir={run}"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rec = json.loads((run / "results.json").read_text())
    assert rec["status"] == "completed"
    assert rec["train"]["resumed_from_step"] == step and rec["train"]["steps"] == step + 25


def test_sigkill_leaves_the_last_checkpoint_and_the_record_readable(tmp_path):
    run = tmp_path / "run"
    proc = start_training(run, "train.checkpoint_every=200")
    wait_for(run / "checkpoints" / "last.pt", proc)
    time.sleep(1.0)  # keep writing checkpoints for a while, then kill without warning
    proc.kill()
    proc.communicate(timeout=30)
    ckpt = load_checkpoint(run / "checkpoints")
    assert ckpt["step"] >= 200 and ckpt["step"] % 200 == 0
    rec = json.loads((run / "results.json").read_text())
    assert rec["status"] == "running" and rec["backend"]["name"] == "gaussian"
    # a kill in the middle of a write may leave that write's temp file; only temp files may be left
    others = {p.name for p in (run / "checkpoints").iterdir()} - {"last.pt", "run_identity.json"}
    assert all(name.startswith(".") and name.endswith(".tmp") for name in others), others
    (run / "checkpoints" / ".last.pt.killed.tmp").write_bytes(b"half a checkpoint")
    done = subprocess.run(GBENCH + ["train", "model=gaussian", f"train.max_steps={ckpt['step'] + 5}",
                                    f"hydra.run.dir={run}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert not list((run / "checkpoints").glob(".*.tmp"))  # the next run removes what the kill left
    rec = json.loads((run / "results.json").read_text())
    assert rec["status"] == "completed" and rec["train"]["resumed_from_step"] == ckpt["step"]


@pytest.mark.parametrize("override, message", [
    (["model=gaussian", "trian.max_steps=3"], "trian"),
    (["model=gaussian", "data.subset=100000"], "larger than the split"),
    (["model=gaussian", "stage=fly"], "unknown stage='fly'"),
])
def test_bad_input_fails_with_a_clear_message(tmp_path, override, message):
    r = subprocess.run(GBENCH + ["train", f"hydra.run.dir={tmp_path / 'r'}", *override], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode != 0
    assert message in r.stdout + r.stderr


def _workers_in(folder: Path) -> list[int]:
    """PIDs of live sweep worker processes (joblib/loky workers) started in ``folder``."""
    found = []
    for pid_dir in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (pid_dir / "cmdline").read_bytes().decode(errors="replace")
            cwd = os.readlink(pid_dir / "cwd")
            state = (pid_dir / "stat").read_text().split(")")[-1].split()[0]
        except OSError:
            continue
        if cwd == str(folder) and "popen_loky" in cmd and state != "Z":
            found.append(int(pid_dir.name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the worker processes")
def test_killing_a_parallel_sweep_stops_its_workers_with_a_checkpoint(tmp_path):
    """SIGKILL of the `gbench` that runs a parallel sweep: its worker processes notice, checkpoint
    and stop (no unsupervised training left behind), and their records say interrupted."""
    sweep = tmp_path / "sweep"
    with open(tmp_path / "gbench.out", "w") as out:  # a file, not a pipe: the workers inherit it
        proc = subprocess.Popen(
            GBENCH + ["-m", "model=gaussian", "seed=0,1", "train.max_steps=100000000", "train.log_every=100",
                      "train.checkpoint_every=100000000", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}"],
            stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    logs = [sweep / f"{i}_gaussian-ring8-s{i}" / "train_log.csv" for i in (0, 1)]
    t0 = time.time()
    while not all(log.exists() for log in logs):
        assert proc.poll() is None, (tmp_path / "gbench.out").read_text()
        assert time.time() - t0 < 240, "the sweep's training logs did not appear"
        time.sleep(0.2)
    proc.kill()
    proc.wait(timeout=60)
    deadline = time.time() + 90
    while time.time() < deadline:
        records = [log.parent / "results.json" for log in logs]
        done = all(r.exists() and json.loads(r.read_text()).get("status") == "interrupted" for r in records)
        if done and not _workers_in(tmp_path):
            break
        time.sleep(0.5)
    left = _workers_in(tmp_path)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"sweep workers still running after their gbench died: {left}"
    for log in logs:
        rec = json.loads((log.parent / "results.json").read_text())
        assert rec["status"] == "interrupted", rec.get("status")
        assert load_checkpoint(log.parent / "checkpoints")["step"] > 0
