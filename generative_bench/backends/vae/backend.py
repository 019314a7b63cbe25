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
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import torch

from generative_bench.backends.base import Backend, NLLResult, StepContext
from generative_bench.backends.vae.likelihoods import DiscretizedLogisticMixture, GaussianLikelihood
from generative_bench.backends.vae.nets import ConvVAENet, MLPVAENet
from generative_bench.errors import InputError

_LOG_2PI = math.log(2 * math.pi)
DECODE_MODES = ("mean", "sample")


def gaussian_kl(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """Elementwise KL(N(mean, exp(log_var)) || N(0, 1)) in nats (Kingma & Welling 2014, App. B)."""
    return 0.5 * (mean.square() + log_var.exp() - 1.0 - log_var)


def _randn(shape: Sequence[int], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Standard normal noise from ``generator`` (drawn on its device, then moved to ``device``)."""
    dev = generator.device if generator is not None else device
    return torch.randn(tuple(shape), generator=generator, device=dev).to(device)


class VAEBackend(Backend):
    """VAE with a conv (images) or MLP (vectors) encoder/decoder; see the module docstring.

    ``image_net`` / ``vector_net`` are factories ``(data_shape=..., out_channels=...) -> net``
    (Hydra ``_partial_`` configs); the one matching ``data_shape`` is built. ``decode`` picks
    what a sample shows: ``"mean"`` (the decoder's mean, default for images) or ``"sample"``
    (a draw from p(x|z), default for vectors).
    """

    family = "vae"

    def __init__(self, data_shape: Sequence[int], image_net: Callable[..., Any] | None = None,
                 vector_net: Callable[..., Any] | None = None, image_likelihood: Any = None,
                 vector_likelihood: Any = None, decode: str | None = None,
                 kl_warmup_steps: int | Mapping[str, int] = 0, free_bits: float | Mapping[str, float] = 0.0):
        super().__init__(data_shape)
        if len(self.data_shape) not in (1, 3):
            raise InputError(f"VAEBackend needs data_shape [C, H, W] (images) or [d] (vectors), got {list(data_shape)}")
        if self.is_image:
            self.likelihood = image_likelihood if image_likelihood is not None else DiscretizedLogisticMixture()
            factory = image_net if image_net is not None else ConvVAENet
        else:
            self.likelihood = vector_likelihood if vector_likelihood is not None else GaussianLikelihood()
            factory = vector_net if vector_net is not None else MLPVAENet
        self.net = factory(data_shape=self.data_shape, out_channels=self.likelihood.num_params(self.data_shape[0]))
        self.latent_shape = tuple(self.net.latent_shape)
        out = getattr(self.net, "output_layer", None)
        if out is not None and getattr(out, "bias", None) is not None and hasattr(self.likelihood, "initial_bias"):
            with torch.no_grad():
                out.bias.copy_(self.likelihood.initial_bias(self.data_shape[0]))
        decode = decode if decode is not None else ("mean" if self.is_image else "sample")
        if decode not in DECODE_MODES:
            raise InputError(f"model.backend.decode must be one of {DECODE_MODES}, got {decode!r}")
        self.decode = decode
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

    def training_step(self, x: torch.Tensor, ctx: StepContext) -> dict[str, float]:
        with ctx.autocast():
            mean, log_var = self.net.encode(x)
            z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
            params = self.net.decode(z)
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
        return {"temperature": 1.0, "decode": self.decode}

    def sample_model_space(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0,
                           decode: str = "mean") -> torch.Tensor:
        """z ~ N(0, T^2 I) from ``generator``, then the decoder's mean or a draw from p(x|z)."""
        if decode not in DECODE_MODES:
            raise InputError(f"VAE sampling option decode must be one of {DECODE_MODES}, got {decode!r}")
        if not float(temperature) >= 0:
            raise InputError(f"VAE sampling temperature must be >= 0, got {temperature}")
        z = float(temperature) * _randn((n, *self.latent_shape), generator, self.device)
        params = self.net.decode(z)
        channels = self.data_shape[0]
        if decode == "mean":
            return self.likelihood.mean(params, channels)
        return self.likelihood.sample(params, generator, channels)

    # ----------------------------------------------------------------- likelihood
    def nll_bound_name(self, k: int) -> str:
        kind = ("8-bit discretized likelihood" if self.is_image
                else "continuous density, bits/dim can be negative")
        return f"IWAE bound, k={k} (upper bound on NLL; {kind})"

    @torch.no_grad()
    def nll(self, x: torch.Tensor, generator: torch.Generator | None = None, k: int = 64,
            chunk: int = 1024, **options: Any) -> NLLResult:
        """Per-example IWAE bound with ``k`` importance samples (bits/dim) and the negative ELBO.

        ``chunk`` caps the decoder evaluations per forward pass (examples x samples), so memory
        does not grow with k. Noise comes from ``generator``: equal generators give equal bounds,
        whatever ``chunk`` is as long as the batch has at most ``chunk`` examples.
        """
        if options:
            raise TypeError(f"VAEBackend.nll got unknown option(s) {sorted(options)}; valid: k, chunk")
        if int(k) < 1 or int(chunk) < 1:
            raise InputError(f"VAEBackend.nll: k and chunk must be >= 1, got k={k}, chunk={chunk}")
        k, chunk = int(k), int(chunk)
        x = self._check_input(x)
        was_training = self.training
        self.eval()
        try:
            parts = [self._bounds(x[i:i + chunk], k, chunk, generator) for i in range(0, len(x), chunk)]
        finally:
            self.train(was_training)
        iwae, elbo, recon, kl = (torch.cat(t) for t in zip(*parts))
        s = self._bpd_scale
        return NLLResult(bpd=-iwae * s, bound=self.nll_bound_name(k),
                         terms={"elbo_bpd": -elbo * s, "recon_bpd": -recon * s, "kl_bpd": kl * s})

    def _bounds(self, x: torch.Tensor, k: int, chunk: int, generator: torch.Generator | None):
        """(IWAE log-bound, ELBO, mean reconstruction log-lik, analytic KL), nats per example."""
        b = len(x)
        mean, log_var = self.net.encode(x)
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
            recon = self._log_lik(x.repeat(m, *([1] * (x.ndim - 1))), self.net.decode(z)).view(m, b)
            log_prior = (-0.5 * z.square() - 0.5 * _LOG_2PI).flatten(1).sum(1).view(m, b)
            log_q = (-0.5 * eps.square() - 0.5 * log_var - 0.5 * _LOG_2PI).flatten(2).sum(2)
            log_w.append(recon + log_prior - log_q)
            recon_sum += recon.sum(0)
        iwae = torch.logsumexp(torch.cat(log_w), dim=0) - math.log(k)
        recon_mean = recon_sum / k
        return iwae, recon_mean - kl, recon_mean, kl

    # ----------------------------------------------------------------- description
    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "latent_shape": list(self.latent_shape),
                "likelihood": self.likelihood.describe(), "decode": self.decode,
                "prior": "standard normal", "posterior": "diagonal Gaussian",
                "kl_warmup_steps": self.kl_warmup_steps, "free_bits": self.free_bits}


__all__ = ["VAEBackend", "gaussian_kl"]
