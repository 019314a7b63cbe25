"""Affine coupling and the (conditional) Gaussian priors of the latents (a step of flow: step.py).

Images use 3x3 convolutions in the coupling networks; vectors enter as (N, d, 1, 1) and use
1x1 convolutions, i.e. an MLP, so both kinds of data share these classes.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from generative_bench.backends.flow.layers import ActNorm

_LOG_2PI = math.log(2.0 * math.pi)


def gaussian_log_prob(z: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """sum over all but the first dim of log N(z; mean, exp(log_std)^2), nats per example."""
    return (-0.5 * ((z - mean) * torch.exp(-log_std)) ** 2 - log_std - 0.5 * _LOG_2PI).flatten(1).sum(1)


class ClassBias(nn.Module):
    """A learned per-class bias per channel (zero at init), or nothing for unconditional nets."""

    def __init__(self, num_classes: int, channels: int):
        super().__init__()
        self.embed = nn.Embedding(int(num_classes), int(channels)) if num_classes else None
        if self.embed is not None:
            nn.init.zeros_(self.embed.weight)

    def forward(self, h: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if self.embed is None or y is None:
            return h
        return h + self.embed(y.to(h.device)).to(h.dtype)[:, :, None, None]


class Pointwise(nn.Linear):
    """A 1x1 convolution as a linear map over the channel dimension (much faster than a conv on a
    CPU when the spatial size is 1, as for vectors)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)


def conv(c_in: int, c_out: int, kernel: int) -> nn.Module:
    """A same-padded k x k convolution (a :class:`Pointwise` map for k = 1)."""
    return Pointwise(c_in, c_out) if kernel == 1 else nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2)


def zero_conv(c_in: int, c_out: int, kernel: int) -> nn.Module:
    """A conv whose weights and bias start at zero, so a step of flow starts as the identity (Glow)."""
    layer = conv(c_in, c_out, kernel)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class Conditioner(nn.Module):
    """conv k x k -> actnorm -> ReLU -> (conv 1x1 -> actnorm -> ReLU) x depth -> zero conv k x k (Glow's NN)."""

    def __init__(self, c_in: int, c_out: int, hidden: int, kernel: int, depth: int = 1, num_classes: int = 0):
        super().__init__()
        self.first = conv(c_in, hidden, kernel)
        self.first_norm = ActNorm(hidden)
        self.class_bias = ClassBias(num_classes, hidden)
        self.hidden = nn.ModuleList(Pointwise(hidden, hidden) for _ in range(int(depth)))
        self.hidden_norms = nn.ModuleList(ActNorm(hidden) for _ in range(int(depth)))
        self.last = zero_conv(hidden, c_out, kernel)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = torch.relu(self.class_bias(self.first_norm(self.first(x))[0], y))
        for conv, norm in zip(self.hidden, self.hidden_norms):
            h = torch.relu(norm(conv(h))[0])
        return self.last(h)


class AffineCoupling(nn.Module):
    """y_a = x_a, y_b = x_b * exp(log s(x_a)) + t(x_a), log|det| = sum log s (Dinh et al. 2017, eq. 6-8).

    The log-scale is soft-clamped, log s = c tanh(raw / c) with ``clamp`` c, so one layer scales by at
    most exp(c) (RealNVP bounds it with tanh too); the conditioner's last layer starts at zero, so
    the coupling starts as the identity.
    """

    def __init__(self, channels: int, hidden: int, kernel: int, depth: int = 1, clamp: float = 2.0,
                 num_classes: int = 0):
        super().__init__()
        self.c_a = int(channels) // 2
        self.c_b = int(channels) - self.c_a
        self.clamp = float(clamp)
        self.net = Conditioner(self.c_a, 2 * self.c_b, hidden, kernel, depth, num_classes)

    def _scale_shift(self, x_a: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        raw, shift = self.net(x_a, y).chunk(2, dim=1)
        return self.clamp * torch.tanh(raw / self.clamp), shift

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x_a, x_b = x[:, :self.c_a], x[:, self.c_a:]
        log_s, t = self._scale_shift(x_a, y)
        return torch.cat([x_a, x_b * torch.exp(log_s) + t], dim=1), log_s.flatten(1).sum(1)

    def inverse(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        z_a, z_b = z[:, :self.c_a], z[:, self.c_a:]
        log_s, t = self._scale_shift(z_a, y)
        return torch.cat([z_a, (z_b - t) * torch.exp(-log_s)], dim=1)


class SplitPrior(nn.Module):
    """p(z_i | h_i) = N(mean(h_i), exp(log_std(h_i))^2) from a zero conv: the factored-out half of a
    multi-scale level (Dinh et al. 2017, Sec. 3.6; Glow's learned split prior)."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3):
        super().__init__()
        self.conv = zero_conv(c_in, 2 * c_out, kernel)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.conv(h).chunk(2, dim=1)
        return mean, log_std


class TopPrior(nn.Module):
    """The prior of the last latent: a learned mean and log-std per position (zero at init: N(0, I)),
    plus a per-class shift for class-conditional flows (Glow's learned, class-conditional top prior)."""

    def __init__(self, shape: tuple[int, int, int], num_classes: int = 0):
        super().__init__()
        c, h, w = shape
        self.params = nn.Parameter(torch.zeros(1, 2 * c, h, w))
        self.class_bias = ClassBias(num_classes, 2 * c)

    def forward(self, n: int, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        params = self.class_bias(self.params.expand(int(n), -1, -1, -1), y)
        mean, log_std = params.chunk(2, dim=1)
        return mean, log_std


__all__ = ["AffineCoupling", "ClassBias", "Conditioner", "Pointwise", "SplitPrior", "TopPrior", "conv",
           "gaussian_log_prob", "zero_conv"]
