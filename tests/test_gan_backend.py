"""GAN backend: construction by data shape, training step, sampling, EMA, exact resume, configs."""

from functools import partial
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from generative_bench.backends.base import StepContext
from generative_bench.backends.gan import (
    DCGANDiscriminator, DCGANGenerator, GANBackend, MLPDiscriminator, MLPGenerator, SNGANDiscriminator, SNGANGenerator,
)
from generative_bench.data.loading import BatchStream
from generative_bench.errors import InputError, NLLNotDefined
from generative_bench.training.ema import EMA
from generative_bench.training.trainer import Trainer

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"
SHAPE = [3, 16, 16]



def tiny_backend(shape=SHAPE, **kw):
    kw.setdefault("image_generator", partial(DCGANGenerator, z_dim=8, ch=32))
    kw.setdefault("image_discriminator", partial(DCGANDiscriminator, ch=8))
    kw.setdefault("standing_batches", 2)
    kw.setdefault("standing_batch_size", 16)
    return GANBackend(shape, vector_generator=partial(MLPGenerator, z_dim=4, hidden=16, depth=2),
                      vector_discriminator=partial(MLPDiscriminator, hidden=16, depth=2), **kw)


class FakeCtx(StepContext):
    """Plain SGD step per optimizer; counts next_batch calls."""

    def __init__(self, backend, batch):
        self.step, self.batch, self.extra, self.calls = 0, batch, 0, []
        self.opts = {k: torch.optim.SGD(g.params, lr=0.1) for k, g in backend.optimizer_groups().items()}

    def optimize(self, name, loss):
        self.calls.append(name)
        opt = self.opts[name]
        opt.zero_grad()
        loss.backward()
        opt.step()

    def next_batch(self):
        self.extra += 1
        return self.batch.clone()

    def autocast(self):
        import contextlib

        return contextlib.nullcontext()


def test_nets_are_picked_by_data_shape_and_optimizers_are_named():
    img, vec = tiny_backend(), tiny_backend([2])
    assert isinstance(img.generator, DCGANGenerator) and isinstance(img.discriminator, DCGANDiscriminator)
    assert isinstance(vec.generator, MLPGenerator) and isinstance(vec.discriminator, MLPDiscriminator)
    groups = tiny_backend(g_optim=OmegaConf.create({"betas": [0.0, 0.9]}), d_optim={"lr": 4e-4}).optimizer_groups()
    assert list(groups) == ["discriminator", "generator"]
    assert groups["generator"].overrides == {"betas": (0.0, 0.9)} and groups["discriminator"].overrides == {"lr": 4e-4}
    n_g = sum(p.numel() for p in groups["generator"].params)
    assert n_g == sum(p.numel() for p in img.generator.parameters())
    assert img.nll_defined is False and img.family == "gan"
    with pytest.raises(NLLNotDefined):
        img.nll(torch.zeros(1, *SHAPE))
    with pytest.raises(InputError, match="n_dis"):
        tiny_backend(n_dis=0)
    with pytest.raises(InputError, match="image_generator"):
        GANBackend(SHAPE, vector_generator=MLPGenerator, vector_discriminator=MLPDiscriminator)
    with pytest.raises(InputError, match="data_shape"):
        tiny_backend([4, 4])


@pytest.mark.parametrize("loss", ["hinge", "non_saturating"])
def test_training_step_updates_both_nets_with_n_dis_batches(loss):
    torch.manual_seed(0)
    b = tiny_backend([2], loss=loss, n_dis=3)
    x = torch.randn(32, 2)
    ctx = FakeCtx(b, x)
    g0 = [p.clone() for p in b.generator.parameters()]
    d0 = [p.clone() for p in b.discriminator.parameters()]
    out = b.training_step(x, ctx)
    assert set(out) == {"d_loss", "g_loss", "d_real", "d_fake", "d_acc"}
    assert all(torch.isfinite(torch.tensor(v)) for v in out.values()) and 0 <= out["d_acc"] <= 1
    assert ctx.calls == ["discriminator"] * 3 + ["generator"] and ctx.extra == 2
    assert all(not torch.equal(a, p) for a, p in zip(g0, b.generator.parameters()))
    # weights (the hinge loss gives the head's bias zero gradient while all logits are in (-1, 1))
    assert all(not torch.equal(a, p) for a, p in zip(d0, b.discriminator.parameters()) if p.ndim > 1)
    assert all(p.requires_grad for p in b.discriminator.parameters())


def test_r1_penalty_and_vector_overrides():
    b = tiny_backend([2], r1_gamma=0.0, vector_overrides={"r1_gamma": 2.0, "loss": "non_saturating",
                                                          "g_optim": {"lr": 1e-3, "betas": [0.0, 0.9]}})
    assert b.r1_gamma == 2.0 and b.loss.name == "non_saturating" and b.g_optim == {"lr": 1e-3, "betas": (0.0, 0.9)}
    assert tiny_backend(vector_overrides={"r1_gamma": 2.0}).r1_gamma == 0.0  # images keep their settings
    with pytest.raises(InputError, match="vector_overrides"):
        tiny_backend([2], vector_overrides={"lr": 1.0})
    with pytest.raises(InputError, match="r1_gamma"):
        tiny_backend([2], r1_gamma=-1.0)
    # a linear critic D(x) = w.x has grad_x D = w: R1 = gamma / 2 * ||w||^2 = 2 / 2 * 25
    real = torch.randn(5, 2, requires_grad=True)
    assert b.r1_penalty(real @ torch.tensor([3.0, 4.0]), real).item() == pytest.approx(25.0)
    x = torch.randn(16, 2)
    out = b.training_step(x, FakeCtx(b, x))
    plain = tiny_backend([2])
    assert out["r1"] > 0 and "r1" not in plain.training_step(x, FakeCtx(plain, x))


def test_sampling_is_deterministic_and_typed():
    torch.manual_seed(0)
    b = tiny_backend()
    s1 = b.sample(5, torch.Generator().manual_seed(3), batch_size=4)
    s2 = b.sample(5, torch.Generator().manual_seed(3), batch_size=4)
    assert s1.dtype == torch.uint8 and s1.shape == (5, *SHAPE) and torch.equal(s1, s2)
    assert not torch.equal(s1, b.sample(5, torch.Generator().manual_seed(4)))
    v = tiny_backend([2]).sample(7, torch.Generator().manual_seed(0))
    assert v.dtype == torch.float32 and v.shape == (7, 2)
    assert tiny_backend([2]).default_sampling() == {"truncation": 1.0}
    assert b.default_sampling() == {"bn_stats": "standing", "truncation": 1.0}
    with pytest.raises(InputError, match="temperature"):
        b.sample(2, temperature=0.5)
    with pytest.raises(InputError, match="bn_stats"):
        b.sample(2, bn_stats="frozen")


def test_batchnorm_sampling_modes_leave_the_model_state_untouched():
    torch.manual_seed(0)
    b = tiny_backend()
    ctx = FakeCtx(b, torch.rand(16, *SHAPE) * 2 - 1)
    for _ in range(2):
        b.training_step(ctx.batch, ctx)
    before = {k: v.clone() for k, v in b.state_dict().items()}
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    out = {m: b.sample_model_space(8, g(), bn_stats=m) for m in ("standing", "running", "batch")}
    assert all(torch.equal(before[k], v) for k, v in b.state_dict().items())
    assert not torch.allclose(out["standing"], out["running"]) and not torch.allclose(out["standing"], out["batch"])
    # standing statistics are cached per weights and recomputed when the weights change
    stats = b.standing_stats()
    assert b.standing_stats() is stats
    b.training_step(ctx.batch, ctx)
    assert b.standing_stats() is not stats
    # with the standing statistics, a sample does not depend on the rest of its batch
    from generative_bench.backends.gan.batchnorm import batchnorm_mode

    z = b.latents(8, g())
    with torch.no_grad(), batchnorm_mode(b.generator, "standing", b.standing_stats()):
        torch.testing.assert_close(b.generator(z[:1]), b.generator(z)[:1], rtol=0, atol=1e-5)


def test_ema_averages_the_generator_and_copies_the_discriminator():
    torch.manual_seed(0)
    b = tiny_backend()
    names = [n for n, _ in b.named_parameters()]
    assert any(n.startswith(b.ema_exclude) for n in names) and any(not n.startswith(b.ema_exclude) for n in names)
    ema = EMA(b, decay=0.9, warmup=False, exclude=b.ema_exclude)
    old = {n: p.clone() for n, p in b.named_parameters()}
    with torch.no_grad():
        for p in b.parameters():
            p.add_(1.0)
    ema.update(b)
    for n, p in ema.shadow.named_parameters():
        if n.startswith("discriminator."):
            assert torch.equal(p, old[n] + 1.0), n
        else:
            torch.testing.assert_close(p, old[n] + 0.1, rtol=0, atol=1e-6)


def _flat(obj, prefix=""):
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _flat(v, f"{prefix}/{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _flat(v, f"{prefix}/{i}")


def test_resume_reproduces_an_uninterrupted_run_bitwise(tmp_path):
    shape = [3, 8, 8]
    data = torch.randint(0, 256, (40, *shape), dtype=torch.uint8)
    cfg = {"max_steps": 4, "batch_size": 8, "optim": {"_target_": "torch.optim.Adam", "lr": 2e-4, "betas": [0.5, 0.999]},
           "grad_clip": None, "ema_decay": 0.99, "log_every": 1, "checkpoint_every": 100, "lr_decay": "linear"}

    def make():
        torch.manual_seed(0)
        return tiny_backend(shape, image_generator=partial(SNGANGenerator, z_dim=8, ch=8),
                            image_discriminator=partial(SNGANDiscriminator, ch=8), n_dis=2,
                            g_optim={"betas": [0.0, 0.9]}, d_optim={"betas": [0.0, 0.9]})

    straight = Trainer(make(), BatchStream(data, 8, seed=1, hflip=True), cfg, tmp_path / "a")
    straight.fit(progress=False)
    # stop after 2 of the 4 steps (n_dis=2: 16 images per step) with the same LR schedule
    first = Trainer(make(), BatchStream(data, 8, seed=1, hflip=True), {**cfg, "max_images": 32}, tmp_path / "b")
    first.fit(progress=False)
    torch.manual_seed(123)  # a new process would start from other RNG state
    resumed = Trainer(make(), BatchStream(data, 8, seed=1, hflip=True), cfg, tmp_path / "b")
    summary = resumed.fit(progress=False)
    assert summary.resumed_from_step == 2 and resumed.step == 4
    a, b = dict(_flat(straight.state_dict())), dict(_flat(resumed.state_dict()))
    assert a.keys() == b.keys() and len(a) > 50
    assert any("_u" in k for k in a) and any("running_mean" in k for k in a)  # SN vectors and BN stats
    diff = [k for k in a if not torch.equal(a[k], b[k])]
    assert not diff, diff[:5]


def _compose(name, shape):
    cfg = OmegaConf.merge({"data": {"shape": shape}}, OmegaConf.load(CONF / f"{name}.yaml"))
    from hydra.utils import instantiate

    return cfg, instantiate(cfg.model.backend)


@pytest.mark.parametrize("name", ["gan", "dcgan_cifar10", "sngan_cifar10"])
def test_model_configs_build_image_and_toy_backends(name):
    cfg, img = _compose(name, [3, 32, 32])
    _, toy = _compose(name, [2])
    assert isinstance(img, GANBackend) and isinstance(toy.generator, MLPGenerator)
    assert cfg.model.name and cfg.train.optim.lr > 0
    assert set(img.optimizer_groups()) == {"generator", "discriminator"}
    if name == "sngan_cifar10":
        assert img.n_dis == 5 and img.g_optim["betas"] == (0.0, 0.9) and cfg.train.lr_decay == "linear"
        assert isinstance(img.generator, SNGANGenerator) and img.loss.name == "hinge"
        assert img.describe()["generator_parameters"] == 4_276_739
    if name == "dcgan_cifar10":
        assert img.n_dis == 1 and img.d_optim["betas"] == (0.5, 0.999)
