"""Likelihood terms of the diffusion variational bound, in bits per dimension.

L = L_T + sum_{t=2}^T L_{t-1} + L_0 (Ho et al. Eq. 5; Nichol & Dhariwal Eq. 4-6):
* prior      L_T = KL(q(x_T | x_0) || N(0, I))
* KL terms   L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)), one per step t >= 2
* decoder    L_0 = -log p(x_0 | x_1): the discretized Gaussian of Ho et al. Eq. 13 for 8-bit
             images in [-1, 1], or a continuous Gaussian density for real-valued vectors.

``full_bound`` evaluates every term with one network call per step (improved-diffusion
``calc_bpd_loop``). The discretized likelihood uses the exact normal CDF in log space
(``torch.special.log_ndtr``) instead of improved-diffusion's tanh approximation.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from generative_bench.backends.diffusion.gaussian import Clip, GaussianDiffusion, ModelFn
from generative_bench.backends.diffusion.solvers import randn

LN2 = math.log(2.0)


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    """Mean over all non-batch dimensions."""
    return x.flatten(1).mean(1)


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _log_sub_exp(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """log(e^a - e^b) for a >= b, accurate when the two are close."""
    return log_a + torch.log(-torch.expm1(log_b - log_a))


def discretized_gaussian_log_likelihood(x: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor,
                                        bins: int = 256) -> torch.Tensor:
    """log P(x) elementwise for x on the ``bins``-level grid of [-1, 1] (Ho et al. Eq. 13).

    Each level owns the interval x +- 1/(bins-1); the two edge levels extend to -inf / +inf so the
    probabilities of all levels sum to one.
    """
    half = 1.0 / (bins - 1)
    inv_std = torch.exp(-log_scales)
    lo = (x - means - half) * inv_std
    hi = (x - means + half) * inv_std
    # for intervals right of the mean use the mirror image, where the CDF values are small
    right = lo > 0
    a = torch.where(right, -hi, lo)
    b = torch.where(right, -lo, hi)
    interior = _log_sub_exp(torch.special.log_ndtr(b), torch.special.log_ndtr(a))
    edge = 1.0 - half  # the grid's end points are exactly -1 and 1
    return torch.where(x < -edge, torch.special.log_ndtr(hi),
                       torch.where(x > edge, torch.special.log_ndtr(-lo), interior))


def continuous_gaussian_log_likelihood(x: torch.Tensor, means: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, e^log_var) elementwise (a density, in nats)."""
    return -0.5 * (math.log(2 * math.pi) + log_var + (x - means) ** 2 * torch.exp(-log_var))


DECODERS: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "discretized": lambda x, mean, log_var: discretized_gaussian_log_likelihood(x, mean, 0.5 * log_var),
    "continuous": continuous_gaussian_log_likelihood,
}
DECODER_NAMES = {"discretized": "discretized Gaussian decoder", "continuous": "continuous Gaussian decoder density"}


def prior_bpd(process: GaussianDiffusion, x0: torch.Tensor) -> torch.Tensor:
    """L_T = KL(q(x_T | x_0) || N(0, I)) per example, bits/dim."""
    t = torch.full((len(x0),), process.num_timesteps - 1, device=x0.device, dtype=torch.long)
    mean, _, log_var = process.q_mean_variance(x0, t)
    zeros = torch.zeros_like(mean)
    return mean_flat(normal_kl(mean, log_var, zeros, zeros)) / LN2


def vb_terms_bpd(process: GaussianDiffusion, model: ModelFn, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor,
                 decoder: str = "discretized", clip_denoised: Clip = False,
                 model_output: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """L_{t-1} per example in bits/dim: the KL term for t > 0, the decoder NLL at t = 0."""
    true_mean, _, true_log_var = process.q_posterior_mean_variance(x0, xt, t)
    out = process.p_mean_variance(model, xt, t, clip_denoised=clip_denoised, model_output=model_output)
    kl = mean_flat(normal_kl(true_mean, true_log_var, out["mean"], out["log_variance"])) / LN2
    nll = -mean_flat(DECODERS[decoder](x0, out["mean"], out["log_variance"])) / LN2
    return {"output": torch.where(t == 0, nll, kl), "pred_xstart": out["pred_xstart"], "eps": out["eps"]}


def full_bound(process: GaussianDiffusion, model: ModelFn, x0: torch.Tensor, generator: torch.Generator | None = None,
               decoder: str = "discretized", clip_denoised: Clip = False) -> dict[str, torch.Tensor]:
    """Every term of the bound per example (bits/dim): prior, kl (sum over t >= 1), decoder, total.

    One network evaluation per step of ``process``; x_t for each step is drawn independently from
    q(x_t | x_0) with noise from ``generator``.
    """
    kl = torch.zeros(len(x0), dtype=x0.dtype, device=x0.device)
    decoder_term = torch.zeros_like(kl)
    for i in reversed(range(process.num_timesteps)):
        t = torch.full((len(x0),), i, device=x0.device, dtype=torch.long)
        xt = process.q_sample(x0, t, randn(x0.shape, generator, x0.device, x0.dtype))
        term = vb_terms_bpd(process, model, x0, xt, t, decoder, clip_denoised)["output"]
        if i == 0:
            decoder_term = term
        else:
            kl = kl + term
    prior = prior_bpd(process, x0)
    return {"prior": prior, "kl": kl, "decoder": decoder_term, "total": prior + kl + decoder_term}
