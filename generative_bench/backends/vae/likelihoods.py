"""Decoder likelihoods p(x | z) for the VAE.

* :class:`DiscretizedLogisticMixture` — 8-bit images (Salimans et al. 2017, PixelCNN++, eq. 2):
  every sub-pixel is a mixture of K logistics integrated over its quantisation bin, with the
  edge bins 0 and 255 extended to -inf / +inf so the 256 bin masses sum to exactly one.
  Channels are modelled **independently** (each channel has its own K mixture weights, means and
  scales; no PixelCNN++ linear channel coupling), which a non-autoregressive decoder needs.
* :class:`GaussianLikelihood` — continuous vectors (the 2-D toy mixtures): a diagonal Gaussian
  with learned per-dimension mean and log standard deviation. It is a *density*, so its
  bits/dim can be negative.

Both expose the same small surface: ``num_params(dims)`` (decoder output channels),
``log_prob(x, params)`` (per-dimension log-likelihood in nats, float32), ``sample(params,
noise)`` (noise: a ``sampler.ImageNoise`` / ``GeneratorNoise`` or a torch.Generator) and ``mean(params)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from generative_bench.errors import InputError
from generative_bench.sampler import as_noise


def _uniform(shape, like: torch.Tensor, noise, eps: float = 1e-5) -> torch.Tensor:
    """U(eps, 1 - eps) from ``noise`` (an ImageNoise / GeneratorNoise, a torch.Generator or None),
    moved to ``like``'s device."""
    u = as_noise(noise, like.device).rand(shape)
    return u.to(like.device).clamp_(eps, 1.0 - eps)


def log_logistic_bin_mass(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor,
                          half_width: float) -> torch.Tensor:
    """log P(bin centred at x) of a logistic(mean, exp(log_scale)), edge bins open to -inf / +inf.

    With a = (x - mean + h)/s and b = (x - mean - h)/s the interior mass sigma(a) - sigma(b)
    is evaluated as ``-softplus(-a) - softplus(b) + log(-expm1(b - a))``, which is exact in log
    space in both tails and for tiny bins, so no PixelCNN++-style ``log pdf(mid) - log(127.5)``
    fallback is needed (it is the h -> 0 limit of this same expression). The lowest bin
    (x <= -1 + h) has mass sigma(a), the highest (x >= 1 - h) has 1 - sigma(b).
    """
    inv_s = torch.exp(-log_scale)
    centred = x - mean
    a = (centred + half_width) * inv_s
    b = (centred - half_width) * inv_s
    log_cdf_plus = -F.softplus(-a)  # log sigma(a)
    log_sf_min = -F.softplus(b)  # log (1 - sigma(b))
    delta = (2.0 * half_width * inv_s).clamp_min(1e-30)  # a - b, independent of x
    log_interior = log_cdf_plus + log_sf_min + torch.log(-torch.expm1(-delta))
    lowest = x < -1.0 + half_width
    highest = x > 1.0 - half_width
    return torch.where(lowest, log_cdf_plus, torch.where(highest, log_sf_min, log_interior))


class DiscretizedLogisticMixture:
    """Per-sub-pixel mixture of ``num_mixtures`` discretized logistics over 2**bits bins.

    Data live in model space [-1, 1]: bin i has centre -1 + 2i/(2**bits - 1) and half-width
    1/(2**bits - 1). Decoder output (N, 3*K*C, H, W) is read as (N, 3, K, C, H, W): mixture
    logits, means (tanh-free, unconstrained) and log-scales (clamped below at
    ``min_log_scale`` = -7 as in PixelCNN++). Channels are independent.
    """

    def __init__(self, num_mixtures: int = 5, bits: int = 8, min_log_scale: float = -7.0,
                 init_log_scale: float = -3.0, init_mean_spread: float = 0.8):
        if int(num_mixtures) < 1:
            raise InputError(f"num_mixtures must be >= 1, got {num_mixtures}")
        if not 1 <= int(bits) <= 16:
            raise InputError(f"bits must be in 1..16, got {bits}")
        self.num_mixtures = int(num_mixtures)
        self.bits = int(bits)
        self.min_log_scale = float(min_log_scale)
        self.half_width = 1.0 / (2 ** self.bits - 1)
        self.init_log_scale = float(init_log_scale)
        self.init_mean_spread = float(init_mean_spread)

    def __repr__(self) -> str:
        return (f"DiscretizedLogisticMixture(num_mixtures={self.num_mixtures}, bits={self.bits}, "
                f"channels=independent, min_log_scale={self.min_log_scale})")

    def describe(self) -> str:
        return (f"discretized logistic mixture, K={self.num_mixtures}, {self.bits}-bit, channels independent "
                "(Salimans et al. 2017 eq. 2)")

    def num_params(self, channels: int) -> int:
        return 3 * self.num_mixtures * int(channels)

    def initial_bias(self, channels: int) -> torch.Tensor:
        """Decoder output bias at init: equal weights, component means spread evenly over
        [-spread, spread], log-scales ``init_log_scale`` (-3: about 6 grey levels), so training
        starts from a broad mixture instead of K identical unit-scale logistics."""
        k = self.num_mixtures
        bias = torch.zeros(3, k, int(channels))
        if k > 1:
            bias[1] = torch.linspace(-self.init_mean_spread, self.init_mean_spread, k).view(k, 1)
        bias[2] = self.init_log_scale
        return bias.flatten()

    def split(self, params: torch.Tensor, channels: int):
        """(N, 3*K*C, H, W) -> logits, means, log_scales, each (N, K, C, H, W), float32."""
        n, p, h, w = params.shape
        k = self.num_mixtures
        if p != 3 * k * channels:
            raise InputError(f"decoder gave {p} channels; the likelihood needs 3*K*C = {3 * k * channels}")
        params = params.float().view(n, 3, k, channels, h, w)
        logits, means, log_scales = params.unbind(1)
        return logits, means, log_scales.clamp(min=self.min_log_scale)

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """Snap model-space values to the nearest bin centre, exactly as ``codec.to_model_space`` maps uint8."""
        levels = 2 ** self.bits - 1
        return ((x.float().clamp(-1.0, 1.0) + 1.0) * (levels / 2.0)).round() / (levels / 2.0) - 1.0

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Per-sub-pixel log p(x) in nats, shape (N, C, H, W); x in model space, snapped to the bin grid."""
        logits, means, log_scales = self.split(params, x.shape[1])
        comp = log_logistic_bin_mass(self.quantize(x).unsqueeze(1), means, log_scales, self.half_width)
        return torch.logsumexp(F.log_softmax(logits, dim=1) + comp, dim=1)

    def sample(self, params: torch.Tensor, noise, channels: int) -> torch.Tensor:
        """Draw a component (Gumbel-max) then a logistic value, clipped to [-1, 1]."""
        logits, means, log_scales = self.split(params, channels)
        gumbel = -torch.log(-torch.log(_uniform(logits.shape, logits, noise)))
        idx = (logits + gumbel).argmax(dim=1, keepdim=True)
        mu = means.gather(1, idx).squeeze(1)
        s = log_scales.gather(1, idx).squeeze(1).exp()
        u = _uniform(mu.shape, mu, noise)
        return (mu + s * (torch.log(u) - torch.log1p(-u))).clamp(-1.0, 1.0)

    def mean(self, params: torch.Tensor, channels: int) -> torch.Tensor:
        """Mixture mean sum_k pi_k mu_k clipped to [-1, 1] (the continuous mixture's mean)."""
        logits, means, _ = self.split(params, channels)
        return (torch.softmax(logits, dim=1) * means).sum(1).clamp(-1.0, 1.0)


class GaussianLikelihood:
    """Diagonal Gaussian N(x; mu, sigma^2) with learned per-dimension log sigma (a density).

    Decoder output (N, 2*D) is read as (mean, log_sigma); log_sigma is clamped below at
    ``min_log_scale`` (default -9, sigma ~ 1.2e-4) for numerical safety. The decoder starts at
    log sigma = ``init_log_scale`` (-2, sigma ~ 0.14), which helps the latent get used early.
    """

    def __init__(self, min_log_scale: float = -9.0, init_log_scale: float = -2.0):
        self.min_log_scale = float(min_log_scale)
        self.init_log_scale = float(init_log_scale)

    def __repr__(self) -> str:
        return f"GaussianLikelihood(min_log_scale={self.min_log_scale})"

    def describe(self) -> str:
        return "diagonal Gaussian with learned variance (continuous density)"

    def num_params(self, dims: int) -> int:
        return 2 * int(dims)

    def initial_bias(self, dims: int) -> torch.Tensor:
        """Decoder output bias at init: mean 0, log sigma ``init_log_scale``."""
        return torch.cat([torch.zeros(int(dims)), torch.full((int(dims),), self.init_log_scale)])

    def split(self, params: torch.Tensor, dims: int):
        if params.shape[1] != 2 * dims:
            raise InputError(f"decoder gave {params.shape[1]} outputs; the likelihood needs 2*D = {2 * dims}")
        mean, log_scale = params.float().chunk(2, dim=1)
        return mean, log_scale.clamp(min=self.min_log_scale)

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Per-dimension log N(x; mu, sigma^2) in nats, shape (N, D)."""
        mean, log_scale = self.split(params, x.shape[1])
        z = (x.float() - mean) * torch.exp(-log_scale)
        return -0.5 * z.square() - log_scale - 0.5 * math.log(2 * math.pi)

    def sample(self, params: torch.Tensor, noise, channels: int) -> torch.Tensor:
        mean, log_scale = self.split(params, channels)
        eps = as_noise(noise, mean.device).randn(mean.shape).to(mean.device)
        return mean + log_scale.exp() * eps

    def mean(self, params: torch.Tensor, channels: int) -> torch.Tensor:
        return self.split(params, channels)[0]


__all__ = ["DiscretizedLogisticMixture", "GaussianLikelihood", "log_logistic_bin_mass"]
