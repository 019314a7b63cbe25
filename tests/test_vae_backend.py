"""VAE backend: IWAE vs ELBO bounds, sampling, input checks, config, generic-trainer training."""

import functools
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from generative_bench.backends.vae import (ConvVAENet, DiscretizedLogisticMixture, MLPVAENet, VAEBackend)
from generative_bench.data.codec import to_model_space
from generative_bench.data.loading import BatchStream
from generative_bench.errors import InputError
from generative_bench.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
SHAPE = (3, 8, 8)


def tiny_image_vae(seed: int = 0, **kw) -> VAEBackend:
    torch.manual_seed(seed)
    net = functools.partial(ConvVAENet, channels=(8, 16), latent_channels=4, stem_stride=2)
    return VAEBackend(SHAPE, image_net=net, image_likelihood=DiscretizedLogisticMixture(2), **kw)


def blob_images(n: int, seed: int = 0, size: int = 8) -> torch.Tensor:
    """Structured uint8 images: smooth colour gradients with a random offset per image."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, size)
    base = ramp.view(1, 1, size, 1) * torch.rand(n, 3, 1, 1, generator=g) + ramp.view(1, 1, 1, size) * 0.5
    noise = 0.05 * torch.randn(n, 3, size, size, generator=g)
    return ((base / 1.5 + noise).clamp(0, 1) * 255).round().to(torch.uint8)


def scrambled(vae: VAEBackend, seed: int = 0) -> VAEBackend:
    """Re-draw every weight at He scale: q(z|x) then differs from the true posterior, so bounds differ."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in vae.parameters():
            p.copy_(torch.randn(p.shape, generator=g) / max(1, p[0].numel()) ** 0.5)
    return vae


def test_iwae_tightens_with_k_and_is_below_elbo():
    vae = scrambled(tiny_image_vae())
    x = to_model_space(blob_images(12))
    res = {k: vae.nll(x, torch.Generator().manual_seed(7), k=k, chunk=96) for k in (1, 8, 64)}
    means = {k: r.bpd.mean().item() for k, r in res.items()}
    assert means[1] > means[8] > means[64], means
    # k=64: per example below the negative ELBO (both upper bounds on the NLL)
    assert (res[64].bpd <= res[64].terms["elbo_bpd"]).all()
    assert "IWAE bound, k=64" in res[64].bound and "upper bound" in res[64].bound
    # bpd is reconstruction + KL
    torch.testing.assert_close(res[8].terms["elbo_bpd"], res[8].terms["recon_bpd"] + res[8].terms["kl_bpd"])
    # same generator seed -> the same numbers
    again = vae.nll(x, torch.Generator().manual_seed(7), k=8, chunk=96)
    assert torch.equal(again.bpd, res[8].bpd)
    # chunking k (memory) does not change the estimate: 1 sample per pass vs 8 per pass
    one_per_pass = vae.nll(x, torch.Generator().manual_seed(7), k=8, chunk=12)
    torch.testing.assert_close(one_per_pass.bpd, res[8].bpd, rtol=0, atol=1e-5)


def test_iwae_k1_equals_elbo_in_expectation():
    vae = scrambled(tiny_image_vae(), seed=1)
    x = to_model_space(blob_images(4, seed=1))
    # 64 independent single-sample bounds per example vs the negative ELBO (recon averaged over 512 z)
    k1 = vae.nll(x.repeat(64, 1, 1, 1), torch.Generator().manual_seed(0), k=1).bpd.view(64, 4)
    elbo = vae.nll(x, torch.Generator().manual_seed(1), k=512).terms["elbo_bpd"]
    se = k1.std(0) / 8
    assert (se > 0).all()
    assert ((k1.mean(0) - elbo).abs() < 4 * se + 1e-3).all(), (k1.mean(0) - elbo, se)


def test_nll_input_checks():
    vae = tiny_image_vae()
    with pytest.raises(InputError, match="to_model_space"):
        vae.nll(blob_images(2))
    with pytest.raises(InputError, match="expected shape"):
        vae.nll(torch.zeros(2, 3, 16, 16))
    with pytest.raises(InputError, match=r"\[-1, 1\]"):
        vae.nll(torch.full((2, *SHAPE), 3.0))
    with pytest.raises(InputError, match="unknown option"):
        vae.nll(torch.zeros(2, *SHAPE), iwae=3)


def test_sampling_deterministic_uint8_and_options():
    vae = tiny_image_vae()
    assert vae.default_sampling() == {"temperature": 1.0, "decode": "mean"}
    a = vae.sample(5, torch.Generator().manual_seed(3), batch_size=2)
    b = vae.sample(5, torch.Generator().manual_seed(3), batch_size=2)
    assert a.dtype == torch.uint8 and a.shape == (5, *SHAPE) and torch.equal(a, b)
    s = vae.sample(5, torch.Generator().manual_seed(3), decode="sample")
    assert not torch.equal(s, a)
    cold = vae.sample(3, torch.Generator().manual_seed(0), temperature=0.0)
    assert torch.equal(cold[0], cold[1]) and torch.equal(cold[1], cold[2])  # z = 0 for every sample
    with pytest.raises(InputError, match="decode"):
        vae.sample(2, decode="mode")
    with pytest.raises(InputError, match="unknown sampling option"):
        vae.sample(2, steps=3)


def _train_cfg(steps: int, **kw):
    return OmegaConf.create({"max_steps": steps, "batch_size": 16, "optim": {"_target_": "torch.optim.Adam", "lr": 3e-3},
                             "grad_clip": 1.0, "ema_decay": 0.99, "log_every": 1, "checkpoint_every": 1000, **kw})


def test_trainer_reduces_loss_and_records_terms(tmp_path):
    import csv

    vae = tiny_image_vae(kl_warmup_steps=10)
    x = blob_images(64)
    Trainer(vae, BatchStream(x, 16, seed=0), _train_cfg(40), tmp_path).fit(progress=False)
    rows = list(csv.DictReader(open(tmp_path / "train_log.csv")))
    first = sum(float(r["elbo_bpd"]) for r in rows[:3]) / 3
    last = sum(float(r["elbo_bpd"]) for r in rows[-3:]) / 3
    assert last < first - 0.5, (first, last)
    assert float(rows[0]["kl_beta"]) == pytest.approx(0.1) and float(rows[-1]["kl_beta"]) == 1.0
    assert vae.describe()["kl_warmup_steps"] == 10


def test_resume_is_bitwise_exact(tmp_path):
    x = blob_images(48, seed=2)
    full = tiny_image_vae(seed=0, free_bits=0.01)
    t_full = Trainer(full, BatchStream(x, 16, seed=1), _train_cfg(8), tmp_path / "full")
    t_full.fit(progress=False)
    half = tiny_image_vae(seed=0, free_bits=0.01)
    Trainer(half, BatchStream(x, 16, seed=1), _train_cfg(4), tmp_path / "split").fit(progress=False)
    resumed = tiny_image_vae(seed=123, free_bits=0.01)  # different init: everything must come from the checkpoint
    t_res = Trainer(resumed, BatchStream(x, 16, seed=1), _train_cfg(8), tmp_path / "split")
    summary = t_res.fit(progress=False)
    assert summary.resumed_from_step == 4 and summary.steps == 8
    for (name, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    for (name, a), (_, b) in zip(t_full.ema.shadow.state_dict().items(), t_res.ema.shadow.state_dict().items()):
        assert torch.equal(a, b), name


def test_config_instantiates_image_and_vector_nets():
    cfg = OmegaConf.load(REPO / "conf" / "model" / "vae.yaml")
    for shape, net_type in (([3, 32, 32], ConvVAENet), ([2], MLPVAENet)):
        c = OmegaConf.merge(cfg, {"data": {"shape": shape}})
        backend = instantiate(c.model.backend)
        assert isinstance(backend, VAEBackend) and isinstance(backend.net, net_type)
        assert backend.kl_warmup_steps == 0 and backend.free_bits == 0.0  # regularisers off by default
        if net_type is ConvVAENet:  # the small preset's flat latent; latent_dim=null gives the spatial map
            assert backend.latent_shape == (64,)
            spatial = instantiate(OmegaConf.merge(c, {"model": {"backend": {"image_net": {"latent_dim": None}}}}).model.backend)
            assert spatial.latent_shape == (16, 8, 8)
            x = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
            for b in (backend, spatial):
                mean, log_var = b.net.encode(x.float() / 127.5 - 1)
                assert mean.shape == log_var.shape == (3, *b.latent_shape)
                assert b.sample(2, generator=torch.Generator().manual_seed(0)).shape == (2, 3, 32, 32)
    per_kind = VAEBackend([2], free_bits=OmegaConf.create({"image": 0.0, "vector": 0.5}))
    assert per_kind.free_bits == 0.5 and per_kind.describe()["free_bits"] == 0.5
    with pytest.raises(InputError, match="keys must be"):
        VAEBackend([2], free_bits={"vectors": 0.5})
    big = OmegaConf.merge(OmegaConf.load(REPO / "conf" / "model" / "vae_cifar10.yaml"), {"data": {"shape": [3, 32, 32]}})
    big_backend = instantiate(big.model.backend)
    assert big_backend.latent_shape == (32, 8, 8) and big_backend.likelihood.num_mixtures == 10
    with pytest.raises(InputError, match="data_shape"):
        VAEBackend([3, 32])


def test_ring_vae_trains_and_bound_stays_above_true_nll(tmp_path):
    from generative_bench.data.toy import RingOfGaussians

    torch.manual_seed(0)
    train = RingOfGaussians(size=8192, split="train")
    test = RingOfGaussians(size=1000, split="test")
    # a collapsed posterior would give the single-Gaussian fit, about 1.55 bits/dim
    vae = VAEBackend([2], vector_net=functools.partial(MLPVAENet, hidden=64, depth=2, latent_dim=2))
    cfg = _train_cfg(600, batch_size=128, log_every=100, ema_decay=0.99)
    trainer = Trainer(vae, BatchStream(train.points, 128, seed=0), cfg, tmp_path)
    trainer.fit(progress=False)
    model = trainer.ema.shadow
    r = model.nll(test.points, torch.Generator().manual_seed(0), k=64)
    floor = test.nll_bits_per_dim(test.points).float()
    assert "can be negative" in r.bound
    # an upper bound on the NLL: above the exact data NLL (on average), yet well below a single Gaussian
    assert r.bpd.mean() > floor.mean()
    assert r.bpd.mean() < 0.0, r.bpd.mean()
    assert r.bpd.mean() <= r.terms["elbo_bpd"].mean()
    s = model.sample(2000, torch.Generator().manual_seed(1))
    assert s.dtype == torch.float32 and s.shape == (2000, 2)
    assert (s.norm(dim=1) - 1).abs().median() < 0.08  # samples sit near the unit circle


@pytest.mark.parametrize("data, net_type", [("ring", MLPVAENet), ("cifar10_jpeg", ConvVAENet)])
def test_hydra_compose_builds_vae(data, net_type):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        cfg = compose("config", overrides=["model=vae", f"data={data}"])
    backend = instantiate(cfg.model.backend)
    assert isinstance(backend.net, net_type)
    assert cfg.train.optim.lr == pytest.approx(3e-3) and cfg.model.nll.k == 64
    assert set(cfg.model.sampling) <= set(backend.default_sampling())
