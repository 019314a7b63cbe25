"""The VAE backend (Kingma & Welling 2014) with an importance-weighted NLL (Burda et al. 2016).

Model: p(z) = N(0, I), q(z|x) = N(mu(x), diag sigma^2(x)), p(x|z) from ``likelihoods`` (a
discretized logistic mixture for 8-bit images, a Gaussian for 2-D vectors).

Numbers, all in bits per data dimension (D = C*H*W for images, d for vectors):

* training loss = negative ELBO / (D ln 2) with the analytic KL(q || p) and one reparameterised
  sample for the reconstruction term; optional KL warm-up (beta from 0 to 1 over
  ``kl_warmup_steps``; Bowman et al. 2016, Sonderby et al. 2016) and free bits (each latent
  dimension's batch-mean KL floored at ``free_bits`` nats; Kingma et al. 2016), both off by
  default, settable per data kind and reported in ``describe()``. The logged ``elbo_bpd`` is
  always the plain negative ELBO;
* ``nll(x, k=K)``: the IWAE bound -log (1/K sum_k p(x, z_k) / q(z_k|x)), z_k ~ q(z|x), an upper
  bound on -log p(x) that is never looser than the ELBO in expectation and tightens as K grows
  (Burda et al. 2016, Theorem 1); ``terms['elbo_bpd']`` is the negative ELBO (reconstruction
  averaged over the same K samples + analytic KL), a looser upper bound.

For images the likelihood is over the 256 discrete pixel values, so bits/dim are the usual
comparable 8-bit figures (>= 0); for vectors it is a continuous density and can be negative.

Class-conditional (``num_classes > 0``): a conditional VAE (Sohn et al. 2015) with q(z | x, y)
and p(x | z, y) (class embeddings in the encoder and decoder) and the prior p(z) = N(0, I); the
sampling knob is the temperature T of z ~ N(0, T^2 I). Its NLL (``condition``): ``marginal``
(default) is the importance-weighted bound of -log p(x) = -log sum_y p(y) p(x | y) with uniform
p(y) (the k samples of every class pooled: an unbiased estimate of p(x) inside the log, so an
upper bound on -log p(x) in expectation; K times the cost), ``label`` the bound of
-log p(x | y) at the true class.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import torch

from generative_bench.backends.base import Backend, NLLResult, StepContext, split_batch
from generative_bench.backends.vae.likelihoods import DiscretizedLogisticMixture, GaussianLikelihood
from generative_bench.backends.vae.nets import ConvVAENet, MLPVAENet
from generative_bench.errors import InputError
from generative_bench.sampler import as_noise

_LOG_2PI = math.log(2 * math.pi)
DECODE_MODES = ("mean", "sample")


def gaussian_kl(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """Elementwise KL(N(mean, exp(log_var)) || N(0, 1)) in nats (Kingma & Welling 2014, App. B)."""
    return 0.5 * (mean.square() + log_var.exp() - 1.0 - log_var)


def _randn(shape: Sequence[int], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Standard normal noise from ``generator`` (drawn on its device, then moved to ``device``)."""
    dev = generator.device if generator is not None else device
    return torch.randn(tuple(shape), generator=generator, device=dev).to(device)


NLL_CONDITIONS = ("marginal", "label")


class VAEBackend(Backend):
    """VAE with a conv (images) or MLP (vectors) encoder/decoder; see the module docstring.

    ``image_net`` / ``vector_net`` are factories ``(data_shape=..., out_channels=...) -> net``
    (Hydra ``_partial_`` configs); the one matching ``data_shape`` is built. ``decode`` picks
    what a sample shows: ``"mean"`` (the decoder's mean, default for images) or ``"sample"``
    (a draw from p(x|z), default for vectors).
    """

    family = "vae"
    display_name = "VAE"
    KNOB_SYMBOLS = {"temperature": "T"}

    def __init__(self, data_shape: Sequence[int], image_net: Callable[..., Any] | None = None,
                 vector_net: Callable[..., Any] | None = None, image_likelihood: Any = None,
                 vector_likelihood: Any = None, decode: str | None = None,
                 kl_warmup_steps: int | Mapping[str, int] = 0, free_bits: float | Mapping[str, float] = 0.0,
                 num_classes: int = 0):
        super().__init__(data_shape, num_classes=num_classes)
        if len(self.data_shape) not in (1, 3):
            raise InputError(f"VAEBackend needs data_shape [C, H, W] (images) or [d] (vectors), got {list(data_shape)}")
        if self.is_image:
            self.likelihood = image_likelihood if image_likelihood is not None else DiscretizedLogisticMixture()
            factory = image_net if image_net is not None else ConvVAENet
        else:
            self.likelihood = vector_likelihood if vector_likelihood is not None else GaussianLikelihood()
            factory = vector_net if vector_net is not None else MLPVAENet
        cond = {"num_classes": self.num_classes} if self.conditional else {}
        self.net = factory(data_shape=self.data_shape, out_channels=self.likelihood.num_params(self.data_shape[0]),
                           **cond)
        self.latent_shape = tuple(self.net.latent_shape)
        out = getattr(self.net, "output_layer", None)
        if out is not None and getattr(out, "bias", None) is not None and hasattr(self.likelihood, "initial_bias"):
            with torch.no_grad():
                out.bias.copy_(self.likelihood.initial_bias(self.data_shape[0]))
        decode = decode if decode is not None else ("mean" if self.is_image else "sample")
        if decode not in DECODE_MODES:
            raise InputError(f"model.backend.decode must be one of {DECODE_MODES}, got {decode!r}")
        self.decode_mode = decode
        self.kl_warmup_steps = int(self._for_data_kind("kl_warmup_steps", kl_warmup_steps))
        self.free_bits = float(self._for_data_kind("free_bits", free_bits))

    # ----------------------------------------------------------------- helpers
    def _for_data_kind(self, name: str, value: Any) -> float:
        """A number, or ``{image: ..., vector: ...}`` so one preset serves both kinds of data."""
        kind = "image" if self.is_image else "vector"
        if isinstance(value, Mapping):
            unknown = set(value) - {"image", "vector"}
            if unknown:
                raise InputError(f"model.backend.{name}: keys must be 'image' and/or 'vector', got {sorted(unknown)}")
            value = value.get(kind, 0)
        if not float(value) >= 0:
            raise InputError(f"model.backend.{name} must be >= 0 (0 = off), got {value}")
        return float(value)

    @property
    def _bpd_scale(self) -> float:
        """Multiply nats per example by this to get bits per dimension."""
        return 1.0 / (self.num_dims * math.log(2.0))

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not torch.is_floating_point(x):
            raise InputError("VAEBackend.nll expects model-space float input; convert uint8 images with "
                             "generative_bench.data.codec.to_model_space")
        if tuple(x.shape[1:]) != self.data_shape:
            raise InputError(f"VAEBackend.nll: expected shape (N, {', '.join(map(str, self.data_shape))}), "
                             f"got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise InputError("VAEBackend.nll: input contains NaN/Inf")
        if self.is_image and x.abs().max() > 1.0 + 1e-4:
            raise InputError(f"VAEBackend.nll: images must be in model space [-1, 1], got max |x| = "
                             f"{x.abs().max().item():.3g}; convert uint8 with to_model_space")
        return x.to(self.device, torch.float32)

    def _log_lik(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """log p(x|z) in nats per example."""
        return self.likelihood.log_prob(x, params).flatten(1).sum(1)

    # ----------------------------------------------------------------- training
    def kl_weight(self, step: int) -> float:
        """KL warm-up factor beta = min(1, (step + 1) / kl_warmup_steps); 1 when off."""
        return 1.0 if self.kl_warmup_steps == 0 else min(1.0, (step + 1) / self.kl_warmup_steps)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None):
        return self.net.encode(x) if y is None else self.net.encode(x, y)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None):
        return self.net.decode(z) if y is None else self.net.decode(z, y)

    def training_step(self, batch, ctx: StepContext) -> dict[str, float]:
        x, y = split_batch(batch)
        if self.conditional and y is None:
            raise InputError("this VAE is class-conditional (num_classes > 0) but the data has no labels")
        y = y if self.conditional else None
        with ctx.autocast():
            mean, log_var = self.encode(x, y)
            z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
            params = self.decode(z, y)
        recon = self._log_lik(x, params)  # float32 inside the likelihood
        kl_dims = gaussian_kl(mean.float(), log_var.float()).flatten(1)
        kl = kl_dims.sum(1)
        beta = self.kl_weight(ctx.step)
        if self.free_bits > 0:  # Kingma et al. 2016: each latent dim's batch-mean KL floored at free_bits
            kl_term = kl_dims.mean(0).clamp(min=self.free_bits).sum()
        else:
            kl_term = kl.mean()
        loss = (-recon.mean() + beta * kl_term) * self._bpd_scale
        ctx.optimize("model", loss)
        out = {"loss": loss.item(), "elbo_bpd": ((kl - recon).mean() * self._bpd_scale).item(),
               "recon_bpd": (-recon.mean() * self._bpd_scale).item(), "kl_bpd": (kl.mean() * self._bpd_scale).item()}
        if self.kl_warmup_steps:
            out["kl_beta"] = beta
        return out

    # ----------------------------------------------------------------- sampling
    def default_sampling(self) -> dict[str, Any]:
        return {**self.knobs(), "decode": self.decode_mode}

    def knobs(self) -> dict[str, Any]:
        """The prior temperature T (1 = the model's prior)."""
        return {"temperature": 1.0}

    def resolve_settings(self, **sampling: Any) -> dict[str, Any]:
        settings = super().resolve_settings(**sampling)
        if settings["decode"] not in DECODE_MODES:
            raise InputError(f"VAE sampling option decode must be one of {DECODE_MODES}, got {settings['decode']!r}")
        t = settings["temperature"]
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not float(t) >= 0:
            raise InputError(f"VAE sampling temperature must be a number >= 0, got {t!r}")
        settings["temperature"] = float(t)
        return settings

    def sample_model_space(self, n: int, noise: Any = None, labels: torch.Tensor | None = None,
                           temperature: float = 1.0, decode: str = "mean") -> torch.Tensor:
        """z ~ N(0, T^2 I) from ``noise``, then the decoder's mean or a draw from p(x | z, y)."""
        if decode not in DECODE_MODES:
            raise InputError(f"VAE sampling option decode must be one of {DECODE_MODES}, got {decode!r}")
        if not float(temperature) >= 0:
            raise InputError(f"VAE sampling temperature must be >= 0, got {temperature}")
        if self.conditional and labels is None:
            raise InputError("a conditional VAE samples with labels; draw through sample() or draw(), "
                             "which pick classes uniformly, or pass labels")
        noise = as_noise(noise, self.device)
        z = float(temperature) * noise.randn((int(n), *self.latent_shape)).to(self.device)
        params = self.decode(z, None if labels is None else labels.to(self.device))
        channels = self.data_shape[0]
        if decode == "mean":
            return self.likelihood.mean(params, channels)
        return self.likelihood.sample(params, noise, channels)

    # ----------------------------------------------------------------- likelihood
    def nll_bound_name(self, k: int) -> str:
        kind = ("8-bit discretized likelihood" if self.is_image
                else "continuous density, bits/dim can be negative")
        return f"IWAE bound, k={k} (upper bound on NLL; {kind})"

    @torch.no_grad()
    def nll(self, x: torch.Tensor, generator: torch.Generator | None = None, labels: torch.Tensor | None = None,
            k: int = 64, chunk: int = 1024, condition: str = "marginal", **options: Any) -> NLLResult:
        """Per-example IWAE bound with ``k`` importance samples (bits/dim) and the negative ELBO.

        ``chunk`` caps the decoder evaluations per forward pass (examples x samples), so memory
        does not grow with k. Noise comes from ``generator``: equal generators give equal bounds,
        whatever ``chunk`` is as long as the batch has at most ``chunk`` examples. A conditional
        VAE is scored by ``condition`` (see the module docstring).
        """
        if options:
            raise InputError(f"VAEBackend.nll got unknown option(s) {sorted(options)}; valid: k, chunk, condition")
        if int(k) < 1 or int(chunk) < 1:
            raise InputError(f"VAEBackend.nll: k and chunk must be >= 1, got k={k}, chunk={chunk}")
        if condition not in NLL_CONDITIONS:
            raise InputError(f"model.nll.condition must be one of {list(NLL_CONDITIONS)}, got {condition!r}")
        k, chunk = int(k), int(chunk)
        x = self._check_input(x)
        if self.conditional and condition == "label":
            labels = self.check_labels(labels, len(x))
            if labels is None:
                raise InputError("model.nll.condition=label needs the data's labels")
            classes = [labels.to(x.device)]
        elif self.conditional:
            classes = [torch.full((len(x),), c, device=x.device, dtype=torch.long) for c in range(self.num_classes)]
        else:
            classes = [None]
        was_training = self.training
        self.eval()
        try:
            per_class = [[self._bounds(x[i:i + chunk], None if y is None else y[i:i + chunk], k, chunk, generator)
                          for i in range(0, len(x), chunk)] for y in classes]
        finally:
            self.train(was_training)
        log_w = torch.stack([torch.cat([p[0] for p in parts], dim=1) for parts in per_class])  # (classes, k, n)
        iwae = torch.logsumexp(log_w.flatten(0, 1), dim=0) - math.log(k * len(classes))
        # ELBO and its parts for the first class scored (the true class with condition=label)
        recon, kl = (torch.cat([p[j] for p in per_class[0]]) for j in (1, 2))
        elbo = recon - kl
        s = self._bpd_scale
        name = self.nll_bound_name(k)
        if self.conditional:
            name += ("; conditional -log p(x | y) at the true class" if condition == "label"
                     else f"; marginal over {self.num_classes} classes (uniform p(y))")
        return NLLResult(bpd=-iwae * s, bound=name,
                         terms={"elbo_bpd": -elbo * s, "recon_bpd": -recon * s, "kl_bpd": kl * s})

    def _bounds(self, x: torch.Tensor, y: torch.Tensor | None, k: int, chunk: int,
                generator: torch.Generator | None):
        """(log importance weights (k, b), mean reconstruction log-lik, analytic KL), nats per example."""
        b = len(x)
        mean, log_var = self.encode(x, y)
        mean, log_var = mean.float(), log_var.float()
        std = torch.exp(0.5 * log_var)
        kl = gaussian_kl(mean, log_var).flatten(1).sum(1)
        per_pass = max(1, chunk // b)
        log_w, recon_sum = [], torch.zeros(b, device=x.device)
        for start in range(0, k, per_pass):
            m = min(per_pass, k - start)
            # one draw per importance sample, so the noise does not depend on how k is chunked
            eps = torch.stack([_randn(mean.shape, generator, x.device) for _ in range(m)])  # (m, b, *latent)
            z = (mean + std * eps).flatten(0, 1)
            yz = None if y is None else y.repeat(m)
            recon = self._log_lik(x.repeat(m, *([1] * (x.ndim - 1))), self.decode(z, yz)).view(m, b)
            log_prior = (-0.5 * z.square() - 0.5 * _LOG_2PI).flatten(1).sum(1).view(m, b)
            log_q = (-0.5 * eps.square() - 0.5 * log_var - 0.5 * _LOG_2PI).flatten(2).sum(2)
            log_w.append(recon + log_prior - log_q)
            recon_sum += recon.sum(0)
        return torch.cat(log_w), recon_sum / k, kl

    # ----------------------------------------------------------------- description
    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "latent_shape": list(self.latent_shape),
                "likelihood": self.likelihood.describe(),
                "decode": self.decode_mode, "prior": "standard normal", "posterior": "diagonal Gaussian",
                "kl_warmup_steps": self.kl_warmup_steps, "free_bits": self.free_bits}


__all__ = ["VAEBackend", "gaussian_kl"]
