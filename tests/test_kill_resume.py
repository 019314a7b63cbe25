"""Kill tests: the exact same command, rerun after SIGKILL (at random points, also in the middle of a
checkpoint write), SIGTERM or SIGINT, resumes the same content-keyed run folder and ends with
weights, EMA and optimizer state bit-identical to an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from generative_bench.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

COMMAND = [sys.executable, "-m", "generative_bench", "train", "model=vae", "train.max_steps=1200",
           "train.batch_size=64", "train.checkpoint_every=100", "train.log_every=50"]


def env(home: Path, slow_write: bool = False) -> dict[str, str]:
    e = {**os.environ, "GBENCH_HOME": str(home), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    e.pop("GBENCH_TEST_SLOW_WRITE", None)
    if slow_write:  # every checkpoint write pauses 0.4 s between the data and the rename
        e["GBENCH_TEST_SLOW_WRITE"] = "last.pt:0.4"
    return e


def start(home: Path, slow_write: bool = True) -> subprocess.Popen:
    return subprocess.Popen(COMMAND, env=env(home, slow_write), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def run_dir(home: Path) -> Path:
    runs = [p for p in (home / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 1, f"the same command must use one run folder, found {runs}"
    return runs[0]


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    t0 = time.time()
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"process ended early ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        if time.time() - t0 > timeout:
            proc.kill()
            raise AssertionError("timed out")
        time.sleep(0.02)


def temp_files(home: Path) -> list[Path]:
    return list((home / "runs").rglob(".last.pt.*.tmp")) if (home / "runs").is_dir() else []


def finish(home: Path) -> dict:
    r = subprocess.run(COMMAND, env=env(home), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads((run_dir(home) / "results.json").read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("uninterrupted")
    rec = finish(home)
    assert rec["train"]["resumed_from_step"] is None and rec["train"]["steps"] == 1200
    return load_checkpoint(run_dir(home) / "checkpoints")


def assert_same_state(a: dict, b: dict) -> None:
    assert a["step"] == b["step"] and a["images_seen"] == b["images_seen"]
    for part in ("model",):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k}"
    for k in a["ema"]["shadow"]:
        assert torch.equal(a["ema"]["shadow"][k], b["ema"]["shadow"][k]), f"ema.{k}"
    for name, opt in a["optimizers"].items():
        for pid, st in opt["state"].items():
            for k, v in st.items():
                other = b["optimizers"][name]["state"][pid][k]
                assert torch.equal(v, other) if torch.is_tensor(v) else v == other, f"{name}.{pid}.{k}"


def test_sigkill_anywhere_then_the_same_command_resumes_bit_exactly(tmp_path, reference):
    home = tmp_path / "home"
    rng = random.Random(0)
    # 1. killed in the middle of the first checkpoint write: a temp file, no last.pt
    proc = start(home)
    wait_for(lambda: bool(temp_files(home)), proc)
    proc.kill()
    proc.wait(30)
    assert temp_files(home) and not (run_dir(home) / "checkpoints" / "last.pt").exists()
    # 2./3. killed at random moments after some checkpoints were written (maybe mid-write again)
    for _ in range(2):
        proc = start(home)
        wait_for(lambda: (run_dir(home) / "checkpoints" / "last.pt").exists() and not temp_files(home), proc)
        time.sleep(rng.uniform(0.3, 1.5))
        proc.kill()
        proc.wait(30)
        state = load_checkpoint(run_dir(home) / "checkpoints")  # whatever was last written is whole
        assert 0 < state["step"] < 1200 and state["step"] % 100 == 0
    # 4. the same command again, to the end
    rec = finish(home)
    assert rec["status"] == "completed" and rec["train"]["resumed_from_step"] and rec["train"]["steps"] == 1200
    assert not temp_files(home), "a killed write's temp file must be removed"
    assert_same_state(load_checkpoint(run_dir(home) / "checkpoints"), reference)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signals_checkpoint_and_the_same_command_resumes_bit_exactly(tmp_path, reference, sig):
    home = tmp_path / "home"
    proc = start(home, slow_write=False)
    wait_for(lambda: (home / "runs").is_dir() and any((home / "runs").rglob("train_log.csv")), proc)
    time.sleep(0.3)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "gbench: error: interrupted" in err and "Traceback" not in err
    rec = json.loads((run_dir(home) / "results.json").read_text())
    assert rec["status"] == "interrupted"
    step = load_checkpoint(run_dir(home) / "checkpoints")["step"]
    assert 0 < step < 1200  # the checkpoint written on the signal, at the step it arrived
    rec = finish(home)
    assert rec["train"]["resumed_from_step"] == step
    assert_same_state(load_checkpoint(run_dir(home) / "checkpoints"), reference)
