"""The diffusion backend: published network sizes, presets, sampling determinism, losses and
exact resume through the generic Trainer."""

from __future__ import annotations

import functools

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from generative_bench.backends.diffusion import DiffusionBackend
from generative_bench.backends.diffusion.losses import HybridLoss
from generative_bench.backends.diffusion.timestep_distribution import LossSecondMomentTimesteps
from generative_bench.backends.nets.mlp_denoiser import MLPDenoiser
from generative_bench.backends.nets.unet import UNet
from generative_bench.data.loading import BatchStream
from generative_bench.errors import InputError
from generative_bench.training.trainer import Trainer

TINY_UNET = functools.partial(UNet, ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), num_heads=2,
                              dropout=0.1)
TINY_MLP = functools.partial(MLPDenoiser, hidden=32, num_blocks=2, time_dim=16)


def _image_backend(**kw):
    torch.manual_seed(0)
    kw = {"timesteps": 25, **kw}
    return DiffusionBackend([3, 8, 8], image_net=functools.partial(TINY_UNET, scale_shift_norm=True), **kw)


def _vector_backend(**kw):
    torch.manual_seed(0)
    kw = {"timesteps": 30, **kw}
    return DiffusionBackend([2], vector_net=TINY_MLP, **kw)


# ------------------------------------------------------------------ published configs
def test_ddpm_cifar10_unet_has_35_7m_parameters(compose):
    cfg = compose(["model=ddpm_cifar10", "data=cifar10"])
    OmegaConf.resolve(cfg)
    backend = instantiate(cfg.model.backend)
    assert isinstance(backend.net, UNet)
    n = sum(p.numel() for p in backend.parameters())
    assert abs(n - 35.7e6) / 35.7e6 < 0.01, n
    assert backend.process.num_timesteps == 1000 and backend.process.variance == "fixed_large"
    assert cfg.train.optim.lr == pytest.approx(2e-4) and cfg.train.ema_decay == pytest.approx(0.9999)
    assert cfg.model.sampling.steps is None  # the published 1000-step sampler


def test_iddpm_cifar10_preset(compose):
    cfg = compose(["model=iddpm_cifar10", "data=cifar10"])
    OmegaConf.resolve(cfg)
    net_cfg = cfg.model.backend.image_net
    assert net_cfg.num_res_blocks == 3 and list(net_cfg.attn_resolutions) == [16, 8] and net_cfg.num_heads == 4
    assert net_cfg.scale_shift_norm and net_cfg.dropout == pytest.approx(0.3)
    assert cfg.model.backend.timesteps == 4000 and cfg.model.backend.schedule == "cosine"
    assert cfg.train.optim.lr == pytest.approx(1e-4) and cfg.train.ema_decay == pytest.approx(0.9999)
    net = instantiate(net_cfg)(in_channels=3, out_channels=6, image_size=32)
    assert net(torch.zeros(1, 3, 32, 32), torch.tensor([3999.0])).shape == (1, 6, 32, 32)


@pytest.mark.parametrize("model", ["ddpm", "iddpm", "ddpm_cifar10", "iddpm_cifar10"])
def test_presets_pick_the_net_by_data_shape(compose, model):
    cfg = compose([f"model={model}", "data=ring"])
    OmegaConf.resolve(cfg)
    backend = instantiate(cfg.model.backend)
    assert isinstance(backend.net, MLPDenoiser)
    settings = backend.resolve_settings(**OmegaConf.to_container(cfg.model.sampling))
    assert settings["clip_denoised"] is False  # vectors are not clipped to [-1, 1]
    steps = [s.get("steps") for s in OmegaConf.to_container(cfg.model.sampling_sweep)]
    assert {10, 25, 50, 250}.issubset(steps)


def test_bad_settings_are_clear_errors():
    with pytest.raises(InputError, match="learned_range"):
        _vector_backend(loss="hybrid", variance="fixed_small")
    with pytest.raises(InputError, match="does not train a learned variance"):
        _vector_backend(loss="simple", variance="learned_range")
    with pytest.raises(InputError, match="unknown variance"):
        _vector_backend(variance="fixed")
    with pytest.raises(InputError, match="timestep distribution"):
        _vector_backend(timestep_distribution="importance")
    with pytest.raises(InputError, match="image_net"):
        DiffusionBackend([3, 8, 8], vector_net=TINY_MLP)
    b = _vector_backend()
    with pytest.raises(InputError, match="unknown diffusion sampling method"):
        b.sample(2, method="plms")
    with pytest.raises(InputError, match="unknown sampling option"):
        b.sample(2, temperature=1.0)
    with pytest.raises(InputError, match="use fewer steps"):
        b.sample(2, steps=50)


# ------------------------------------------------------------------ sampling
@pytest.mark.parametrize("settings", [{}, {"steps": 5}, {"method": "ddim", "steps": "ddim4", "eta": 0.5},
                                      {"method": "ddim", "steps": "2,3"}])
def test_sampling_is_deterministic_for_a_seed(settings):
    b = _image_backend(variance="learned_range", loss="hybrid", schedule="cosine")
    x1 = b.sample(3, generator=torch.Generator().manual_seed(7), **settings)
    x2 = b.sample(3, generator=torch.Generator().manual_seed(7), **settings)
    x3 = b.sample(3, generator=torch.Generator().manual_seed(8), **settings)
    assert x1.dtype == torch.uint8 and x1.shape == (3, 3, 8, 8)
    assert torch.equal(x1, x2) and not torch.equal(x1, x3)


def test_vector_sampling_and_batches():
    b = _vector_backend()

    def g():
        return torch.Generator().manual_seed(3)

    x = b.sample(10, generator=g(), batch_size=4, method="ddim", steps=10)
    assert x.dtype == torch.float32 and x.shape == (10, 2) and torch.isfinite(x).all()
    assert torch.equal(x, b.sample(10, generator=g(), batch_size=4, method="ddim", steps=10))
    assert b.resolve_settings(steps=10)["clip_denoised"] is False  # untrained: the data range is unknown
    with pytest.raises(InputError, match="training data's range"):
        b.sample(2, clip_denoised=True)


def test_vector_backend_clips_to_the_training_range(tmp_path):
    x = torch.randn(64, 2) * torch.tensor([0.5, 2.0])
    trainer = Trainer(_vector_backend(schedule="cosine", variance="learned_range", loss="hybrid"),
                      BatchStream(x, 16, seed=0), _train_cfg(4), tmp_path)
    trainer.fit(progress=False)
    b = trainer.ema.shadow  # buffers travel with the EMA copy
    seen = x[:64]  # 4 steps x 16 = one epoch: every point was seen
    assert torch.equal(b.data_min, seen.amin(0)) and torch.equal(b.data_max, seen.amax(0))
    assert b.resolve_settings()["clip_denoised"] is True
    s = b.sample(200, generator=torch.Generator().manual_seed(0), steps=5)
    # the last step returns the (clipped) x0 prediction itself, so every sample lies in the range
    assert (s >= b.data_min - 1e-6).all() and (s <= b.data_max + 1e-6).all()
    free = b.sample(200, generator=torch.Generator().manual_seed(0), steps=5, clip_denoised=False)
    assert not torch.equal(s, free)
    res = b.nll(x[:8], generator=torch.Generator().manual_seed(0))
    assert res.bound.endswith("T=30, x0 predictions clipped to the training data range")
    assert torch.isfinite(res.bpd).all()


# ------------------------------------------------------------------ losses and timestep sampling
def test_hybrid_loss_stops_the_gradient_of_the_vlb_term_at_the_mean():
    b = _image_backend(variance="learned_range", loss="hybrid")
    x0 = torch.rand(4, 3, 8, 8) * 2 - 1
    out = torch.randn(4, 6, 8, 8, requires_grad=True)
    terms = HybridLoss()(b.process, lambda x, t: out, x0, torch.tensor([0, 3, 10, 19]), torch.randn_like(x0))
    terms["vb"].sum().backward()
    assert out.grad[:, :3].abs().max() == 0 and out.grad[:, 3:].abs().max() > 0


def test_loss_second_moment_sampler():
    s = LossSecondMomentTimesteps(3, history_per_term=2, uniform_prob=0.1)
    assert torch.allclose(s.probabilities(), torch.full((3,), 1 / 3, dtype=torch.float64))
    s.update(torch.tensor([0, 0, 0, 1, 1, 2]), torch.tensor([1.0, 2.0, 3.0, 4.0, 4.0, 9.0]))
    assert s.loss_history[0].tolist() == [2.0, 3.0] and s.loss_counts.tolist() == [2, 2, 1]
    assert not s.warmed_up
    s.update(torch.tensor([2]), torch.tensor([9.0]))
    rms = torch.tensor([(6.5) ** 0.5, 4.0, 9.0], dtype=torch.float64)
    want = rms / rms.sum() * 0.9 + 0.1 / 3
    assert s.warmed_up and torch.allclose(s.probabilities(), want)
    torch.manual_seed(0)
    t, w = s.sample(20000, "cpu")
    freq = torch.bincount(t, minlength=3).double() / len(t)
    assert torch.allclose(freq, want, atol=0.01)
    assert torch.allclose(w, (1 / (3 * want[t])).float())  # E[w L_t] = mean_t L_t
    assert {"loss_history", "loss_counts"} <= set(s.state_dict())


# ------------------------------------------------------------------ training and resume
def _train_cfg(steps):
    return OmegaConf.create({"max_steps": steps, "batch_size": 16, "grad_clip": 1.0, "ema_decay": 0.99,
                             "log_every": 2, "checkpoint_every": 100,
                             "optim": {"_target_": "torch.optim.Adam", "lr": 1e-3}})


def test_trainer_resume_reproduces_the_uninterrupted_run(tmp_path):
    x = torch.randn(64, 2) * 0.5

    def make():
        return _vector_backend(timesteps=4, schedule="cosine", loss="vlb", variance="learned_range", timestep_distribution="loss-second-moment")

    torch.manual_seed(123)
    full = Trainer(make(), BatchStream(x, 16, seed=0), _train_cfg(8), tmp_path / "a")
    full.fit(progress=False)
    torch.manual_seed(123)
    Trainer(make(), BatchStream(x, 16, seed=0), _train_cfg(3), tmp_path / "b").fit(progress=False)
    torch.manual_seed(999)  # a different global RNG state: resume must restore it
    resumed = Trainer(make(), BatchStream(x, 16, seed=0), _train_cfg(8), tmp_path / "b")
    summary = resumed.fit(progress=False)
    assert summary.resumed_from_step == 3 and summary.steps == 8
    a, b = full.backend.state_dict(), resumed.backend.state_dict()
    assert resumed.backend.timestep_distribution.warmed_up  # importance sampling was active after the resume
    for k in a:
        assert torch.equal(a[k], b[k]), k
    for k, v in full.ema.shadow.state_dict().items():
        assert torch.equal(v, resumed.ema.shadow.state_dict()[k]), k


def test_image_training_steps_and_nll(tmp_path):
    b = _image_backend(variance="learned_range", loss="hybrid", schedule="cosine")
    x = torch.randint(0, 256, (32, 3, 8, 8), dtype=torch.uint8)
    trainer = Trainer(b, BatchStream(x, 16, seed=0), _train_cfg(2), tmp_path)
    summary = trainer.fit(progress=False)
    assert {"loss", "mse", "vb"} <= set(summary.last_losses)
    xm = x[:4].float() / 127.5 - 1
    res = trainer.ema.shadow.nll(xm, generator=torch.Generator().manual_seed(0))
    assert res.bound == ("full variational bound (prior + 24 KL terms + discretized Gaussian decoder), T=25, "
                         "x0 predictions clipped to [-1, 1]")
    assert res.bpd.shape == (4,) and torch.isfinite(res.bpd).all() and (res.bpd > 0).all()
    assert torch.allclose(res.bpd, sum(res.terms.values()), atol=1e-5)
    assert (res.terms["decoder"] > 0).all()  # a probability of a discrete value: -log2 P >= 0
    again = trainer.ema.shadow.nll(xm, generator=torch.Generator().manual_seed(0))
    assert torch.equal(res.bpd, again.bpd)
    with pytest.raises(InputError, match="model space"):
        trainer.ema.shadow.nll(xm * 2)
