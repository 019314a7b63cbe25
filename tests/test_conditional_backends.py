"""Class-conditional training of every family through the generic Trainer on the labelled ring,
then sampling with given labels and the conditional likelihoods.

The diffusion marginal NLL is -logsumexp_y(log(1/K) - L_y) over the per-class bounds L_y (in
nats; bits/dim after dividing by D ln 2), so for every example
min_y L_y <= marginal <= min_y L_y + log(K) / (D ln 2), and marginal <= mean_y L_y (Jensen).
"""

from __future__ import annotations

import csv
import functools
import math

import pytest
import torch
from omegaconf import OmegaConf

from generative_bench.backends.diffusion import DiffusionBackend
from generative_bench.backends.gan import GANBackend, MLPDiscriminator, MLPGenerator
from generative_bench.backends.nets.classifier import NoisyVectorClassifier
from generative_bench.backends.nets.mlp_denoiser import MLPDenoiser
from generative_bench.backends.vae import VAEBackend
from generative_bench.backends.vae.nets import MLPVAENet
from generative_bench.data.loading import BatchStream
from generative_bench.data.toy import RingOfGaussians
from generative_bench.errors import InputError
from generative_bench.training.trainer import Trainer

K, D = 8, 2
RING = RingOfGaussians(size=2000)
LABELS = torch.as_tensor(RING.labels).long()
GIVEN = torch.tensor([3, 0, 7, 7, 1, 5, 2, 6, 4, 3])


def _cfg(steps: int):
    return OmegaConf.create({"max_steps": steps, "batch_size": 64, "ema_decay": 0.99, "checkpoint_every": 1000,
                             "log_every": 10, "optim": {"_target_": "torch.optim.Adam", "lr": 1e-3}})


def _diffusion(num_classes=K, **kw):
    torch.manual_seed(0)
    kw = {"timesteps": 40, "schedule": "cosine", "label_dropout": 0.2, **kw}
    if num_classes:
        kw.update(classifier=True, vector_classifier=functools.partial(NoisyVectorClassifier, hidden=32,
                                                                       num_blocks=1, time_dim=16, input_features=4))
    return DiffusionBackend([D], vector_net=functools.partial(MLPDenoiser, hidden=32, num_blocks=2, time_dim=16,
                                                              input_features=4), num_classes=num_classes, **kw)


def _gan(num_classes=K):
    torch.manual_seed(0)
    return GANBackend([D], vector_generator=functools.partial(MLPGenerator, z_dim=4, hidden=32, depth=2),
                      vector_discriminator=functools.partial(MLPDiscriminator, hidden=32, depth=2),
                      num_classes=num_classes)


def _vae(num_classes=K):
    torch.manual_seed(0)
    return VAEBackend([D], vector_net=functools.partial(MLPVAENet, hidden=32, depth=2, latent_dim=2),
                      num_classes=num_classes)


FAMILIES = {"diffusion": _diffusion, "gan": _gan, "vae": _vae}


def _train(backend, tmp_path, steps=40, labels=True):
    stream = BatchStream(RING.points, 64, seed=0, labels=RING.labels if labels else None)
    trainer = Trainer(backend, stream, _cfg(steps), tmp_path)
    summary = trainer.fit(progress=False)
    return trainer, summary


def _log_rows(tmp_path):
    with open(tmp_path / "train_log.csv", newline="") as f:
        return list(csv.DictReader(f))


def _check_given_labels(model):
    x, y = model.sample(len(GIVEN), seed=1, labels=GIVEN)
    assert torch.equal(y, GIVEN) and x.shape == (len(GIVEN), D) and torch.isfinite(x).all()
    _, drawn = model.sample(64, seed=1)
    assert drawn.dtype == torch.long and 0 <= int(drawn.min()) and int(drawn.max()) < K
    assert len(set(drawn.tolist())) > 3  # classes drawn uniformly when none are given


def test_conditional_diffusion_trains_model_and_classifier_and_bounds_the_marginal(tmp_path):
    backend = _diffusion()
    before = [p.detach().clone() for p in backend.classifier.parameters()]
    trainer, summary = _train(backend, tmp_path, steps=60)
    assert set(trainer.optimizers) == {"model", "classifier"}
    classifier_params = {id(p) for p in backend.classifier.parameters()}
    assert {id(p) for g in trainer.optimizers["classifier"].param_groups for p in g["params"]} == classifier_params
    assert not classifier_params & {id(p) for g in trainer.optimizers["model"].param_groups for p in g["params"]}
    assert all(not torch.equal(a, b) for a, b in zip(before, backend.classifier.parameters()))
    rows = _log_rows(tmp_path)
    for key in ("loss", "classifier_loss", "classifier_acc"):
        assert all(math.isfinite(float(r[key])) for r in rows), key
        assert math.isfinite(summary.last_losses[key])
    model = trainer.ema.shadow
    assert model.resolve_settings()["clip_denoised"] is True  # the labelled data's range was recorded
    _check_given_labels(model)
    guided, y = model.sample(len(GIVEN), seed=1, labels=GIVEN, cfg_scale=1.0, classifier_scale=1.0, steps=10)
    assert torch.equal(y, GIVEN) and torch.isfinite(guided).all()

    x, yx = RING.points[:32], LABELS[:32]

    def bound(condition, labels=None):
        return model.nll(x, generator=torch.Generator().manual_seed(7), labels=labels, timesteps=10,
                         condition=condition)

    marginal, label, null = bound("marginal"), bound("label", yx), bound("null")
    assert "marginal over 8 classes" in marginal.bound and "true class" in label.bound and "null class" in null.bound
    for res in (marginal, label, null):
        assert res.bpd.shape == (32,) and torch.isfinite(res.bpd).all()
    # every per-class bound, with the same noise as the marginal's
    per_class = torch.stack([bound("label", torch.full((32,), k)).bpd for k in range(K)]).double()  # (K, 32)
    m = marginal.bpd.double()
    slack = math.log(K) / (D * math.log(2.0))
    lowest = per_class.min(0).values
    assert (m <= lowest + slack + 1e-5).all() and (m >= lowest - 1e-5).all()
    assert (m <= per_class.mean(0) + 1e-5).all()
    assert (m <= label.bpd.double() + slack + 1e-5).all()
    assert torch.allclose(label.bpd.double(), per_class.gather(0, yx[None]).squeeze(0), atol=1e-5)
    nats = per_class * (D * math.log(2.0))
    want = -(torch.logsumexp(-nats, 0) - math.log(K)) / (D * math.log(2.0))
    assert torch.allclose(m, want, atol=1e-5)
    with pytest.raises(InputError, match="needs the data's labels"):
        bound("label")
    with pytest.raises(InputError, match="condition must be one of"):
        bound("joint")


def test_conditional_gan_trains_with_labels(tmp_path):
    trainer, summary = _train(_gan(), tmp_path, steps=40)
    assert set(trainer.optimizers) == {"discriminator", "generator"}
    rows = _log_rows(tmp_path)
    for key in ("d_loss", "g_loss"):
        assert all(math.isfinite(float(r[key])) for r in rows), key
    _check_given_labels(trainer.ema.shadow)
    x, y = trainer.ema.shadow.sample(len(GIVEN), seed=1, labels=GIVEN, truncation=0.5)
    assert torch.equal(y, GIVEN) and torch.isfinite(x).all()


def test_conditional_vae_trains_and_scores_marginal_and_label(tmp_path):
    trainer, summary = _train(_vae(), tmp_path, steps=60)
    rows = _log_rows(tmp_path)
    assert all(math.isfinite(float(r["loss"])) and math.isfinite(float(r["elbo_bpd"])) for r in rows)
    model = trainer.ema.shadow
    _check_given_labels(model)
    x, y = RING.points[:32], LABELS[:32]
    marginal = model.nll(x, torch.Generator().manual_seed(0), k=8)
    label = model.nll(x, torch.Generator().manual_seed(0), labels=y, k=8, condition="label")
    assert "marginal over 8 classes" in marginal.bound and "true class" in label.bound
    for res in (marginal, label):
        assert res.bpd.shape == (32,) and torch.isfinite(res.bpd).all()
        assert all(torch.isfinite(v).all() for v in res.terms.values())
    with pytest.raises(InputError, match="needs the data's labels"):
        model.nll(x, condition="label")


@pytest.mark.parametrize("family", list(FAMILIES))
def test_unconditional_backend_given_labels_is_an_input_error(family):
    backend = FAMILIES[family](num_classes=0)
    assert not backend.conditional
    with pytest.raises(InputError, match="unconditional"):
        backend.sample(3, labels=[0, 1, 2])
    with pytest.raises(InputError, match="unconditional"):
        backend.draw(0, 3, 0, backend.resolve_settings(), labels=torch.tensor([0, 1, 2]))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_conditional_backend_trained_without_labels_is_an_input_error(family, tmp_path):
    with pytest.raises(InputError, match="class-conditional .* the data has no labels"):
        _train(FAMILIES[family](), tmp_path, steps=5, labels=False)
