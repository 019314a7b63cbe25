"""MADE mixture density for vectors: p(x) = prod_i p(x_i | x_<i), each a mixture of K Gaussians.

A masked MLP (Germain et al. 2015; degrees in :func:`masks.made_degrees`) outputs, for every
dimension i, K mixture logits, means and log-stds that depend on x_<i only (the first
dimension's come from the output biases alone): a MADE with mixture-of-Gaussians conditionals,
as RNADE / MAF's MADE-MoG (Uria et al. 2013; Papamakarios et al. 2017, Sec. 3). A class enters
as a per-class bias on the first hidden layer, which every output may see.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

from generative_bench.backends.autoregressive.masks import MaskedLinear, made_degrees
from generative_bench.errors import InputError

_LOG_2PI = math.log(2.0 * math.pi)


def mixture_log_prob(x: torch.Tensor, logits: torch.Tensor, means: torch.Tensor,
                     log_stds: torch.Tensor) -> torch.Tensor:
    """log sum_k pi_k N(x; mu_k, sigma_k^2) per element; x (N, d), the others (N, d, K); nats."""
    z = (x.unsqueeze(-1) - means) * torch.exp(-log_stds)
    comp = -0.5 * z * z - log_stds - 0.5 * _LOG_2PI
    return torch.logsumexp(torch.log_softmax(logits, dim=-1) + comp, dim=-1)


class MADEMixture(nn.Module):
    """Masked MLP with ``depth`` hidden layers of ``hidden`` units and K = ``num_mixtures``
    Gaussians per dimension; ``params(x, y) -> (logits, means, log_stds)``, each (N, d, K)."""

    def __init__(self, data_shape: Sequence[int], hidden: int = 128, depth: int = 2, num_mixtures: int = 10,
                 min_log_std: float = -7.0, init_log_std: float = -1.0, init_mean_spread: float = 1.5,
                 num_classes: int = 0):
        super().__init__()
        if len(data_shape) != 1:
            raise InputError(f"MADEMixture needs vectors (shape [d]), got shape {list(data_shape)}")
        if int(depth) < 1 or int(hidden) < 1 or int(num_mixtures) < 1:
            raise InputError(f"MADEMixture needs depth, hidden and num_mixtures >= 1, got {depth}, {hidden}, "
                             f"{num_mixtures}")
        d, k = int(data_shape[0]), int(num_mixtures)
        self.dims, self.num_mixtures, self.min_log_std = d, k, float(min_log_std)
        prev = torch.arange(1, d + 1)
        layers = []
        for _ in range(int(depth)):
            deg = made_degrees(d, int(hidden))
            layers.append(MaskedLinear(len(prev), int(hidden), deg.view(-1, 1) >= prev.view(1, -1)))
            prev = deg
        self.hidden = nn.ModuleList(layers)
        out_deg = torch.arange(1, d + 1).repeat_interleave(3 * k)  # output unit o is dimension o // 3K
        self.output_layer = MaskedLinear(int(hidden), 3 * k * d, out_deg.view(-1, 1) > prev.view(1, -1))
        self.class_embed = nn.Embedding(int(num_classes), int(hidden)) if num_classes else None
        with torch.no_grad():
            self.output_layer.weight.mul_(0.1)
            bias = torch.zeros(d, 3, k)
            bias[:, 1] = torch.linspace(-init_mean_spread, init_mean_spread, k) if k > 1 else 0.0
            bias[:, 2] = init_log_std
            self.output_layer.bias.copy_(bias.flatten())

    def params(self, x: torch.Tensor, y: torch.Tensor | None = None):
        h = x
        for i, layer in enumerate(self.hidden):
            h = layer(h)
            if i == 0 and self.class_embed is not None and y is not None:
                h = h + self.class_embed(y.to(h.device)).to(h.dtype)
            h = torch.relu(h)
        out = self.output_layer(h).view(len(x), self.dims, 3, self.num_mixtures).float()
        logits, means, log_stds = out.unbind(2)
        return logits, means, log_stds.clamp(min=self.min_log_std)

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x) in nats per example."""
        return mixture_log_prob(x.float(), *self.params(x, y)).sum(1)

    def sample(self, n: int, noise: Any, y: torch.Tensor | None = None, device: torch.device | str = "cpu"):
        """d sequential passes; dimension i: a component by Gumbel-max, then mean + std * eps."""
        x = torch.zeros(int(n), self.dims, device=device)
        for i in range(self.dims):
            logits, means, log_stds = (p[:, i] for p in self.params(x, y))
            u = noise.rand(logits.shape).to(x.device).clamp(1e-6, 1 - 1e-6)
            idx = (logits - torch.log(-torch.log(u))).argmax(dim=1, keepdim=True)
            eps = noise.randn((int(n),)).to(x.device)
            x[:, i] = means.gather(1, idx).squeeze(1) + torch.exp(log_stds.gather(1, idx).squeeze(1)) * eps
        return x


__all__ = ["MADEMixture", "mixture_log_prob"]
