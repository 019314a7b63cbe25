"""`eval.metrics: default` leaves out what a feature space or reference cannot provide (one note in
the record); a list the user sets is taken as asked; external samples name their run folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from generative_bench.errors import InputError
from generative_bench.evaluation import metric_selection
from generative_bench.validation import validate
from tests.conftest import needs_cifar

ROOT = Path(__file__).resolve().parents[1]


def test_default_list_leaves_out_sfid_without_spatial_features_and_an_explicit_list_errs():
    cfg = OmegaConf.create({"metrics": "default", "default_metrics": ["fid", "sfid", "is", "kid", "prdc"]})
    chosen, notes = metric_selection.select(cfg, {"pool", "logits"}, None, {"name": "cifar10-resnet", "kind": "domain"})
    assert [m.name for m in chosen] == ["fid", "is", "kid", "prdc"]
    assert notes == ["left out of the default metrics: sfid (eval.features (cifar10-resnet) has no 'spatial' features)"]
    cfg.metrics = ["fid", "sfid"]
    with pytest.raises(InputError, match=r"metric 'sfid' cannot be computed.*no 'spatial' features.*remove sfid"):
        metric_selection.select(cfg, {"pool", "logits"}, None, {"name": "cifar10-resnet", "kind": "domain"})
    cfg.metrics = "defualt"
    with pytest.raises(InputError, match="must be 'default' or a list"):
        metric_selection.select(cfg, {"pool"})


def test_config_checks_follow_the_default_list(compose):
    cfg = compose(["stage=evaluate", "sampler=npz", "sampler.path=x.npz", "eval/features=cifar10_resnet"])
    assert cfg.eval.metrics == "default"
    names, default = metric_selection.requested(cfg.eval)
    assert default and "sfid" in names and "memorization" not in names
    cfg = compose(["eval/features=cifar10_resnet", "eval.metrics=[fid,sfid]", "model=gaussian", "data=cifar10_jpeg"])
    with pytest.raises(InputError, match="metric 'sfid' needs 'spatial' features"):
        validate(cfg)


def test_run_names_of_external_samples(compose):
    assert compose(["sampler=npz", "sampler.path=/x/VIRTUAL_imagenet64.npz", "data=cifar10_jpeg"]).run_name == \
        "VIRTUAL_imagenet64-cifar10-jpeg"
    assert compose(["sampler=folder", "sampler.path=/x/my samples/", "data=cifar10_jpeg"]).run_name == \
        "my-samples-cifar10-jpeg"
    assert compose(["sampler=npz", "sampler.path=/x/a.npz", "sampler.name=edm"]).run_name == "edm-ring8"
    assert compose(["model=gan"]).run_name == "gan-ring8-s0"


@needs_cifar
@pytest.mark.slow
def test_readme_example_npz_samples_in_the_cifar10_resnet_space(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "my_samples.npz", arr_0=rng.integers(0, 256, (300, 32, 32, 3), dtype=np.uint8))
    env = {**os.environ, "GBENCH_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "generative_bench", "evaluate", "sampler=npz", f"sampler.path={tmp_path / 'my_samples.npz'}",
           "data=cifar10_jpeg", "eval/features=cifar10_resnet", "eval.num_samples=300", "eval.reference_subset=300",
           "eval.kid_subset_size=100", f"paths.runs_dir={tmp_path / 'runs'}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    (run,) = (tmp_path / "runs").glob("my_samples-cifar10-jpeg_*")
    ev = json.loads((run / "results.json").read_text())["evaluations"][0]
    assert "sfid" not in ev["metrics"] and {"fid", "kid_mean", "precision", "is_mean"} <= set(ev["metrics"])
    assert len(ev["notes"]) == 1 and "sfid" in ev["notes"][0] and "'spatial'" in ev["notes"][0]
