"""``eval.features.pretrained=auto`` through the real config: without the weights (offline) the
Inception features fall back to a flagged random-init network; ``pretrained=true`` is the clear
error. Both through Hydra instantiation, the path every run takes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from generative_bench.errors import WeightsUnavailableError
from generative_bench.evaluation.harness import build_extractor


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("GBENCH_OFFLINE", "1")
    monkeypatch.setenv("GBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GBENCH_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))


def test_auto_falls_back_to_flagged_random_init_through_the_config(compose, offline):
    cfg = compose(["data=cifar10_jpeg"])
    assert cfg.eval.features.pretrained == "auto"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ext = build_extractor(cfg.eval.features, torch.device("cpu"))
    desc = ext.describe()
    assert desc["pretrained"] is False and desc["comparable"] is False and "random" in desc["weights"]
    assert any("random" in str(w.message).lower() for w in caught)


def test_pretrained_true_without_weights_is_the_clear_error(compose, offline):
    cfg = compose(["data=cifar10_jpeg", "eval.features.pretrained=true"])
    with pytest.raises(WeightsUnavailableError, match="sha256 6726825d0af5f729"):
        build_extractor(cfg.eval.features, torch.device("cpu"))


@pytest.mark.slow
def test_gbench_evaluate_offline_scores_with_the_fallback_and_says_not_comparable(tmp_path, image_folder):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "samples.npz", arr_0=rng.integers(0, 256, (12, 8, 8, 3), dtype=np.uint8))
    env = {**os.environ, "GBENCH_OFFLINE": "1", "GBENCH_CACHE": str(tmp_path / "cache"), "GBENCH_HOME": str(tmp_path),
           "TORCH_HOME": str(tmp_path / "torch")}
    env.pop("GBENCH_INCEPTION_WEIGHTS", None)
    cmd = [sys.executable, "-m", "generative_bench", "evaluate", "sampler=npz", f"sampler.path={tmp_path / 'samples.npz'}",
           "data=folder", f"data.source.root={image_folder}", "data.shape=[3,8,8]", "eval.num_samples=12",
           "eval.metrics=[fid,is,prdc]", "eval.is_splits=2", "eval.features.batch_size=12", f"hydra.run.dir={tmp_path / 'ev'}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    ev = json.loads((tmp_path / "ev" / "results.json").read_text())["evaluations"][0]
    assert ev["comparable"] is False and any("NOT comparable" in w for w in ev["warnings"])
    assert ev["protocol"]["features"]["pretrained"] is False and np.isfinite(ev["metrics"]["fid"])
    r = subprocess.run(cmd[:-1] + ["eval.features.pretrained=true", f"hydra.run.dir={tmp_path / 'ev2'}"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 4 and "gbench: error:" in r.stderr and "Traceback" not in r.stderr
