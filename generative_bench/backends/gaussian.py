"""Diagonal Gaussian baseline: the simplest likelihood model, a floor every generator must beat.

p(x) = prod_d N(x_d; mu_d, sigma_d^2), fitted by maximum likelihood with the generic trainer.
For 8-bit images the likelihood is discretized to the 256 bins of width 2/255 in [-1, 1]
(edge bins extend to +-inf, as in Ho et al. 2020, eq. 13); for vectors it is the continuous
density. Its NLL is exact, so it also serves as a reference in tests of the harness.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

from generative_bench.backends.base import Backend, NLLResult, StepContext, split_batch
from generative_bench.sampler import as_noise


def _std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def discretized_gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log P(bin of x) for x on the 8-bit grid in [-1, 1]; per element (nats)."""
    inv = torch.exp(-log_std)
    upper = torch.where(x > 0.999, torch.ones_like(x), _std_normal_cdf((x + 1 / 255 - mean) * inv))
    lower = torch.where(x < -0.999, torch.zeros_like(x), _std_normal_cdf((x - 1 / 255 - mean) * inv))
    return torch.log((upper - lower).clamp_min(1e-12))


class DiagonalGaussian(Backend):
    family = "gaussian"
    display_name = "Gaussian"

    def __init__(self, data_shape: Sequence[int], init_log_std: float = 0.0):
        super().__init__(data_shape)
        self.mean = nn.Parameter(torch.zeros(self.data_shape))
        self.log_std = nn.Parameter(torch.full(self.data_shape, float(init_log_std)))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Per-example log-likelihood in nats."""
        if self.is_image:
            lp = discretized_gaussian_log_prob(x, self.mean, self.log_std)
        else:
            z = (x - self.mean) * torch.exp(-self.log_std)
            lp = -0.5 * z**2 - self.log_std - 0.5 * math.log(2 * math.pi)
        return lp.flatten(1).sum(1)

    def training_step(self, batch, ctx: StepContext) -> dict[str, float]:
        x, _ = split_batch(batch)
        with ctx.autocast():
            loss = -self.log_prob(x).mean() / (self.num_dims * math.log(2))
        ctx.optimize("model", loss)
        return {"loss": float(loss.detach())}

    def sample_model_space(self, n: int, noise: Any = None, labels: torch.Tensor | None = None,
                           **sampling: Any) -> torch.Tensor:
        eps = as_noise(noise, self.device).randn((int(n), *self.data_shape)).to(self.device)
        x = self.mean + torch.exp(self.log_std) * eps
        return x.clamp(-1, 1) if self.is_image else x

    def nll(self, x: torch.Tensor, generator: torch.Generator | None = None, labels: torch.Tensor | None = None,
            **options: Any) -> NLLResult:
        bpd = -self.log_prob(x) / (self.num_dims * math.log(2))
        kind = "exact discretized likelihood" if self.is_image else "exact continuous density"
        return NLLResult(bpd=bpd.detach(), bound=f"{kind} (diagonal Gaussian)")
