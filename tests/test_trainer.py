"""The generic trainer: exact resume, budgets, NaN guard, warmup, checkpoints, logs."""

from __future__ import annotations

import csv

import pytest
import torch
from omegaconf import OmegaConf

from generative_bench.backends.gaussian import DiagonalGaussian
from generative_bench.data.loading import BatchStream
from generative_bench.data.toy import RingOfGaussians
from generative_bench.errors import InputError, NonFiniteLossError
from generative_bench.training.checkpoint import load_checkpoint
from generative_bench.training.trainer import Trainer, lr_factor


def train_cfg(**kw):
    base = {"max_steps": 30, "batch_size": 32, "optim": {"_target_": "torch.optim.Adam", "lr": 1e-2,
            "betas": [0.9, 0.999]}, "grad_clip": 1.0, "ema_decay": 0.99, "log_every": 5, "checkpoint_every": 10}
    base.update(kw)
    return OmegaConf.create(base)


@pytest.fixture(scope="module")
def ring():
    return RingOfGaussians(size=512, seed=0).points


def make(ring, run_dir, **kw):
    torch.manual_seed(0)
    backend = DiagonalGaussian([2])
    return Trainer(backend, BatchStream(ring, 32, seed=1), train_cfg(**kw), run_dir)


def all_state(trainer):
    s = trainer.state_dict()
    return {**{f"model.{k}": v for k, v in s["model"].items()},
            **{f"ema.{k}": v for k, v in s["ema"]["shadow"].items()}}


def test_resume_reproduces_uninterrupted_run_exactly(ring, tmp_path):
    straight = make(ring, tmp_path / "a", max_steps=30)
    straight.fit(progress=False)
    first = make(ring, tmp_path / "b", max_steps=17)
    first.fit(progress=False)
    resumed = make(ring, tmp_path / "b", max_steps=30)
    summary = resumed.fit(progress=False)
    assert summary.resumed_from_step == 17 and summary.steps == 30
    a, b = all_state(straight), all_state(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    opt_a = straight.optimizers["model"].state_dict()["state"]
    opt_b = resumed.optimizers["model"].state_dict()["state"]
    assert all(torch.equal(opt_a[i]["exp_avg"], opt_b[i]["exp_avg"]) for i in opt_a)
    # the CSV log of the resumed run equals the uninterrupted one (modulo timings)
    rows = lambda p: [(r["step"], r["loss"]) for r in csv.DictReader(open(p / "train_log.csv"))]  # noqa: E731
    assert rows(tmp_path / "a") == rows(tmp_path / "b")


def test_training_reduces_the_loss_and_ema_follows(ring, tmp_path):
    t = make(ring, tmp_path, max_steps=150, lr_decay="constant")
    before = -t.backend.log_prob(ring).mean().item()
    t.fit(progress=False)
    after = -t.backend.log_prob(ring).mean().item()
    var = ring.double().var(0, unbiased=False)
    optimum = (0.5 * torch.log(2 * torch.pi * torch.e * var)).sum().item()  # ML fit of a diagonal Gaussian
    assert before - after > 0.15 and after == pytest.approx(optimum, abs=0.02)
    ema_mean = t.ema.shadow.mean.detach()
    assert torch.allclose(ema_mean, t.backend.mean.detach(), atol=0.2)


def test_budgets_images_and_minutes(ring, tmp_path):
    s = make(ring, tmp_path / "img", max_steps=None, max_images=320).fit(progress=False)
    assert (s.steps, s.images_seen, s.stopped_by) == (10, 320, "max_images")
    s = make(ring, tmp_path / "min", max_steps=None, max_minutes=1e-9).fit(progress=False)
    assert s.stopped_by == "max_minutes" and s.steps == 1
    with pytest.raises(ValueError, match="training budget"):
        make(ring, tmp_path / "none", max_steps=None)


def test_nan_guard_stops_and_keeps_last_good_checkpoint(ring, tmp_path):
    t = make(ring, tmp_path, max_steps=20, checkpoint_every=5)
    t.fit(progress=False)
    good = load_checkpoint(tmp_path / "checkpoints")
    assert good["step"] == 20
    bad = ring.clone()
    bad[:] = float("nan")
    t2 = Trainer(t.backend, BatchStream(bad, 32, seed=1), train_cfg(max_steps=40), tmp_path)
    with pytest.raises(NonFiniteLossError, match="last good checkpoint is kept"):
        t2.fit(progress=False)
    kept = load_checkpoint(tmp_path / "checkpoints")
    assert kept["step"] == 20
    assert all(torch.isfinite(v).all() for v in kept["model"].values())


def test_warmup_and_linear_decay():
    assert lr_factor(0, 10, "constant", 100) == pytest.approx(0.1)
    assert lr_factor(9, 10, "constant", 100) == pytest.approx(1.0)
    assert lr_factor(50, 0, "linear", 100) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="lr_decay"):
        lr_factor(0, 0, "cosine", 10)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "last.pt").write_bytes(b"garbage")
    with pytest.raises(InputError, match="corrupt"):
        load_checkpoint(tmp_path / "last.pt")


def test_batch_larger_than_dataset_is_a_clear_error(ring):
    with pytest.raises(InputError, match="train.batch_size"):
        BatchStream(ring[:10], 32)
