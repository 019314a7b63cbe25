"""The GAN backend: a generator and its discriminator trained inside one ``training_step``.

Per trainer step: ``n_dis`` discriminator updates (the first on the trainer's batch, the others on
``ctx.next_batch()``), then one generator update (Miyato et al. 2018, Algorithm 1). Two
optimizers, ``"discriminator"`` and ``"generator"``, with per-architecture Adam settings passed as
``OptimGroup`` overrides (``d_optim`` / ``g_optim``; they win over ``train.optim``). The trainer's
EMA averages the generator only (``ema_exclude``: the discriminator is copied). Learning-rate
decay is the trainer's ``train.lr_decay``.

The network pair is chosen by ``data_shape``: ``image_*`` factories for [C, H, W], ``vector_*``
for [d]. A factory is a callable (e.g. a Hydra ``_partial_`` config) taking ``out_shape`` (G) or
``in_shape`` (D); the generator exposes ``z_dim``. Latents are standard normal. Optional R1
gradient penalty on real data (``r1_gamma``, Mescheder et al. 2018; 0 = off, as in SNGAN/DCGAN).
On 2-D toy data, ``vector_overrides`` may replace any of loss / n_dis / g_optim / d_optim /
r1_gamma (toy mixtures and images want different settings within one preset).

Sampling draws z from the noise source (one generator per image); ``truncation`` psi in (0, 1]
is the truncation trick (Brock et al. 2019): every coordinate of z is a standard normal
truncated to its central mass psi, by redrawing entries beyond the threshold (psi = 1: no
truncation). For generators with BatchNorm the sampling option ``bn_stats`` picks the
statistics (default: standing statistics re-estimated for the sampled weights, see
``batchnorm.py``). ``nll`` raises NLLNotDefined.

Class-conditional (``num_classes > 0``; Miyato & Koyama 2018): the generator uses conditional
BatchNorm (or a class embedding for the MLP), the discriminator a projection head; real batches
come with their labels and fake batches get classes drawn uniformly.

Logged diagnostics: ``d_loss``, ``g_loss``, ``d_real`` / ``d_fake`` (mean logits on real / fake,
averaged over the D updates of the step), ``d_acc`` (share of real logits > 0 and fake logits
< 0) and ``r1`` when enabled: a diverging or collapsing run shows up in ``train_log.csv``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Sequence

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from generative_bench.backends.base import Backend, OptimGroup, StepContext, split_batch
from generative_bench.backends.gan.batchnorm import BN_MODES, batchnorm_mode, has_batchnorm, standing_statistics, weights_key
from generative_bench.backends.gan.losses import get_loss
from generative_bench.backends.gan.truncation import truncated_latents
from generative_bench.errors import InputError
from generative_bench.sampler import as_noise


def _build(factory: Any, what: str, **kwargs: Any) -> nn.Module:
    if factory is None:
        raise InputError(f"GANBackend: no {what} network configured for this data shape; set model.backend.{what}")
    if isinstance(factory, (Mapping, DictConfig)):
        from generative_bench.config import instantiate

        return instantiate(factory, **kwargs)
    if not callable(factory):
        raise InputError(f"GANBackend: model.backend.{what} must be a callable or a _target_ config, got {type(factory).__name__}")
    return factory(**kwargs)


def _plain(overrides: Any) -> dict[str, Any]:
    if overrides is None:
        return {}
    if isinstance(overrides, DictConfig):
        overrides = OmegaConf.to_container(overrides, resolve=True)
    return {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in dict(overrides).items()}


class GANBackend(Backend):
    family = "gan"
    display_name = "GAN"
    KNOB_SYMBOLS = {"truncation": "ψ"}
    nll_defined = False
    ema_exclude = ("discriminator.",)

    def __init__(self, data_shape: Sequence[int], image_generator: Callable | None = None,
                 image_discriminator: Callable | None = None, vector_generator: Callable | None = None,
                 vector_discriminator: Callable | None = None, loss: str = "hinge", n_dis: int = 1,
                 g_optim: Mapping | None = None, d_optim: Mapping | None = None, r1_gamma: float = 0.0,
                 vector_overrides: Mapping | None = None, bn_stats: str = "standing",
                 standing_batches: int = 8, standing_batch_size: int = 128, standing_seed: int = 0,
                 num_classes: int = 0):
        super().__init__(data_shape, num_classes=num_classes)
        if len(self.data_shape) not in (1, 3):
            raise InputError(f"GANBackend: data_shape must be [C, H, W] or [d], got {list(self.data_shape)}")
        training = {"loss": loss, "n_dis": n_dis, "g_optim": g_optim, "d_optim": d_optim, "r1_gamma": r1_gamma}
        vector_overrides = _plain(vector_overrides)
        unknown = set(vector_overrides) - set(training)
        if unknown:
            raise InputError(f"GANBackend: unknown vector_overrides key(s) {sorted(unknown)}; allowed: {sorted(training)}")
        if not self.is_image:  # 2-D toy data may train with its own settings
            training.update(vector_overrides)
        if int(training["n_dis"]) < 1:
            raise InputError(f"GANBackend: n_dis must be >= 1, got {training['n_dis']}")
        if float(training["r1_gamma"]) < 0:
            raise InputError(f"GANBackend: r1_gamma must be >= 0, got {training['r1_gamma']}")
        if bn_stats not in BN_MODES:
            raise InputError(f"GANBackend: bn_stats must be one of {BN_MODES}, got {bn_stats!r}")
        kind = "image" if self.is_image else "vector"
        g_factory, d_factory = (image_generator, image_discriminator) if self.is_image else (vector_generator, vector_discriminator)
        cond = {"num_classes": self.num_classes} if self.conditional else {}
        self.generator = _build(g_factory, f"{kind}_generator", out_shape=list(self.data_shape), **cond)
        self.discriminator = _build(d_factory, f"{kind}_discriminator", in_shape=list(self.data_shape), **cond)
        if not hasattr(self.generator, "z_dim"):
            raise InputError(f"GANBackend: generator {type(self.generator).__name__} must expose z_dim")
        self.z_dim = int(self.generator.z_dim)
        self.loss = get_loss(str(training["loss"]))
        self.n_dis = int(training["n_dis"])
        self.g_optim, self.d_optim = _plain(training["g_optim"]), _plain(training["d_optim"])
        self.r1_gamma = float(training["r1_gamma"])
        self.bn_stats = bn_stats
        self.standing = {"batches": int(standing_batches), "batch_size": int(standing_batch_size), "seed": int(standing_seed)}
        # D with BatchNorm sees real and fake batches separately (classic DCGAN); otherwise jointly.
        self._d_joint = not has_batchnorm(self.discriminator)
        self._g_has_bn = has_batchnorm(self.generator)
        self._standing_cache: tuple[tuple, dict] | None = None

    # ---------------------------------------------------------------- training
    def optimizer_groups(self) -> dict[str, OptimGroup]:
        return {"discriminator": OptimGroup(list(self.discriminator.parameters()), dict(self.d_optim)),
                "generator": OptimGroup(list(self.generator.parameters()), dict(self.g_optim))}

    def latents(self, n: int, generator: torch.Generator | None = None, device: torch.device | None = None) -> torch.Tensor:
        """``n`` standard-normal latents, drawn on ``generator``'s device, returned on ``device``."""
        device = self.device if device is None else device
        draw_on = generator.device if generator is not None else device
        return torch.randn(n, self.z_dim, generator=generator, device=draw_on).to(device)

    def fake_labels(self, n: int, device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor | None:
        """Uniform classes for fake batches of a conditional GAN (None when unconditional)."""
        if not self.conditional:
            return None
        draw_on = generator.device if generator is not None else device
        return torch.randint(0, self.num_classes, (n,), generator=generator, device=draw_on).to(device)

    def G(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self.generator(z) if y is None else self.generator(z, y)

    def D(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self.discriminator(x) if y is None else self.discriminator(x, y)

    def _d_logits(self, real: torch.Tensor, fake: torch.Tensor, y_real: torch.Tensor | None = None,
                  y_fake: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if self._d_joint:
            y = None if y_real is None else torch.cat([y_real, y_fake])
            logits = self.D(torch.cat([real, fake]), y).float()
            return logits[: len(real)], logits[len(real):]
        return self.D(real, y_real).float(), self.D(fake, y_fake).float()

    def r1_penalty(self, d_real: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """R1 = gamma / 2 * E ||grad_x D(x)||^2 on real data (Mescheder et al. 2018, eq. 9)."""
        (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
        return 0.5 * self.r1_gamma * grad.float().pow(2).flatten(1).sum(1).mean()

    def training_step(self, batch, ctx: StepContext) -> dict[str, float]:
        x, _ = split_batch(batch)
        sums = torch.zeros(5, device=x.device)  # d_loss, d_real, d_fake, d_acc, r1
        for i in range(self.n_dis):
            real, y_real = split_batch(batch if i == 0 else ctx.next_batch())
            if self.conditional and y_real is None:
                raise InputError("this GAN is class-conditional (num_classes > 0) but the data has no labels")
            y_fake = self.fake_labels(len(real), real.device)
            with torch.no_grad(), ctx.autocast():
                fake = self.G(self.latents(len(real), device=real.device), y_fake)
            if self.r1_gamma:
                real = real.detach().requires_grad_(True)
            with ctx.autocast():
                d_real, d_fake = self._d_logits(real, fake, y_real, y_fake)
            d_loss = self.loss.d_loss(d_real, d_fake)
            r1 = self.r1_penalty(d_real, real) if self.r1_gamma else torch.zeros((), device=x.device)
            ctx.optimize("discriminator", d_loss + r1)
            with torch.no_grad():
                acc = 0.5 * ((d_real > 0).float().mean() + (d_fake < 0).float().mean())
                sums += torch.stack([d_loss.detach(), d_real.mean(), d_fake.mean(), acc, r1.detach()])
        self.discriminator.requires_grad_(False)  # G step: no weight gradients for D
        try:
            y_gen = self.fake_labels(len(x), x.device)
            with ctx.autocast():
                g_logits = self.D(self.G(self.latents(len(x), device=x.device), y_gen), y_gen).float()
            g_loss = self.loss.g_loss(g_logits)
            ctx.optimize("generator", g_loss)
        finally:
            self.discriminator.requires_grad_(True)
        d_loss, d_real, d_fake, d_acc, r1 = (sums / self.n_dis).tolist()
        out = {"d_loss": d_loss, "g_loss": float(g_loss.detach()), "d_real": d_real, "d_fake": d_fake, "d_acc": d_acc}
        return {**out, "r1": r1} if self.r1_gamma else out

    # ---------------------------------------------------------------- sampling
    def default_sampling(self) -> dict[str, Any]:
        return {**({"bn_stats": self.bn_stats} if self._g_has_bn else {}), **self.knobs()}

    def knobs(self) -> dict[str, Any]:
        """The truncation trick's psi (1 = no truncation)."""
        return {"truncation": 1.0}

    def resolve_settings(self, **sampling: Any) -> dict[str, Any]:
        settings = super().resolve_settings(**sampling)
        psi = settings["truncation"]
        if isinstance(psi, bool) or not isinstance(psi, (int, float)) or not 0.0 < float(psi) <= 1.0:
            raise InputError(f"GAN sampling option truncation (psi) must be in (0, 1], got {psi!r}; 1 = no truncation")
        settings["truncation"] = float(psi)
        if "bn_stats" in settings and settings["bn_stats"] not in BN_MODES:
            raise InputError(f"GAN sampling option bn_stats must be one of {BN_MODES}, got {settings['bn_stats']!r}")
        return settings

    def standing_stats(self) -> dict:
        """BN statistics for the current generator weights (cached until they change)."""
        key = weights_key(self.generator)
        if self._standing_cache is None or self._standing_cache[0] != key:
            def inputs(n, g):
                z = self.latents(n, g)
                return z if not self.conditional else (z, self.fake_labels(n, self.device, g))

            with torch.inference_mode(False), torch.no_grad():
                stats = standing_statistics(self.generator, inputs, **self.standing)
            self._standing_cache = (key, stats)
        return self._standing_cache[1]

    def sample_model_space(self, n: int, noise: Any = None, labels: torch.Tensor | None = None,
                           bn_stats: str | None = None, truncation: float = 1.0) -> torch.Tensor:
        mode = bn_stats or self.bn_stats
        if self.conditional and labels is None:
            raise InputError("a class-conditional GAN samples with labels; draw through sample() or draw(), "
                             "which pick classes uniformly, or pass labels")
        noise = as_noise(noise, self.device)
        z = truncated_latents(noise, (int(n), self.z_dim), float(truncation)).to(self.device)
        standing = self.standing_stats() if (mode == "standing" and self._g_has_bn) else None
        with batchnorm_mode(self.generator, mode, standing):
            return self.G(z, None if labels is None else labels.to(self.device))

    # ---------------------------------------------------------------- description
    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update({
            "generator": type(self.generator).__name__,
            "discriminator": type(self.discriminator).__name__,
            "generator_parameters": sum(p.numel() for p in self.generator.parameters()),
            "discriminator_parameters": sum(p.numel() for p in self.discriminator.parameters()),
            "z_dim": self.z_dim, "loss": self.loss.name, "n_dis": self.n_dis, "r1_gamma": self.r1_gamma,
            "g_optim": dict(self.g_optim), "d_optim": dict(self.d_optim),
        })
        return info
