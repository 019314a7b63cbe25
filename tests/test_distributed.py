"""torch.distributed on CPU (Gloo) through torchrun: evaluation equals one process; 2-rank resume is exact."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from generative_bench.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow


def torchrun(nproc: int, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "generative_bench", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def gbench(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "generative_bench", *args], capture_output=True, text=True,
                       timeout=timeout, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def test_two_rank_evaluation_equals_one_process(tmp_path, image_folder):
    """Image path: samples + random-init Inception features sharded over 2 ranks, then gathered."""
    common = ["model=gaussian", "data=folder", f"data.source.root={image_folder}", "data.shape=[3,8,8]",
              "train.max_steps=20", "train.batch_size=8", "eval.num_samples=24", "eval.batch_size=8",
              "eval.features.pretrained=false", "eval.features.batch_size=8", "eval.kid_subset_size=12",
              "eval.kid_subsets=5", "eval.is_splits=2", "eval.nll.examples=6", "eval.nll.batch_size=6",
              f"paths.cache_dir={tmp_path / 'cache'}", "eval.grid_size=0"]
    gbench("train", *common, f"hydra.run.dir={tmp_path / 'trained'}")
    ev = common + [f"checkpoint={tmp_path / 'trained'}"]
    gbench("evaluate", *ev, f"hydra.run.dir={tmp_path / 'one'}", f"paths.cache_dir={tmp_path / 'cache1'}")
    # two ranks and another batch size: the same per-image seeded samples
    torchrun(2, "evaluate", *ev, "eval.batch_size=5", f"hydra.run.dir={tmp_path / 'two'}",
             f"paths.cache_dir={tmp_path / 'cache2'}")
    one = json.loads((tmp_path / "one" / "results.json").read_text())["evaluations"][0]
    two = json.loads((tmp_path / "two" / "results.json").read_text())["evaluations"][0]
    assert two["protocol"]["processes"] == 2 and one["protocol"]["processes"] == 1
    for k, v in one["metrics"].items():
        assert two["metrics"][k] == pytest.approx(v, rel=1e-6, abs=1e-9), k
    assert one["samples_file"] == two["samples_file"]
    a = np.load(tmp_path / "one" / one["samples_file"])["arr_0"]
    b = np.load(tmp_path / "two" / two["samples_file"])["arr_0"]
    assert np.array_equal(a, b)


def test_two_rank_training_resumes_exactly(tmp_path):
    common = ["model=vae", "train.batch_size=64", "train.log_every=5", "train.checkpoint_every=1000"]
    torchrun(2, "train", *common, "train.max_steps=24", f"hydra.run.dir={tmp_path / 'straight'}")
    torchrun(2, "train", *common, "train.max_steps=12", f"hydra.run.dir={tmp_path / 'split'}")
    torchrun(2, "train", *common, "train.max_steps=24", f"hydra.run.dir={tmp_path / 'split'}")
    a = load_checkpoint(tmp_path / "straight" / "checkpoints")
    b = load_checkpoint(tmp_path / "split" / "checkpoints")
    assert a["world_size"] == b["world_size"] == 2 and len(b["rng"]) == 2
    assert a["step"] == b["step"] == 24 and a["images_seen"] == 24 * 64
    for part in ("model",):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), k
    for k in a["ema"]["shadow"]:
        assert torch.equal(a["ema"]["shadow"][k], b["ema"]["shadow"][k]), k
    rec = json.loads((tmp_path / "split" / "results.json").read_text())
    assert rec["train"]["resumed_from_step"] == 12 and rec["distributed"]["world_size"] == 2
    assert not list((tmp_path / "split").glob("rank*"))  # one run folder per job, not per rank
