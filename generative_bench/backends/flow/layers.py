"""Invertible layers of the flows: actnorm, invertible 1x1 convolution, squeeze.

Every layer works on (N, C, H, W) tensors (vectors enter as (N, d, 1, 1)), ``forward(x)``
returns ``(y, log|det dy/dx|)`` per example and ``inverse(y)`` returns ``x``.
"""

from __future__ import annotations

import torch
from torch import nn

from generative_bench import distributed
from generative_bench.errors import InputError


class ActNorm(nn.Module):
    """y = (x + b) * exp(s) per channel, log|det| = H W sum(s) (Kingma & Dhariwal 2018, Sec. 3.1).

    Data-dependent initialisation: the first forward pass in training mode sets b and s so that
    the batch has zero mean and unit variance per channel (averaged over ranks under
    torch.distributed, so every rank starts from the same weights). ``initialized`` is a buffer,
    so a resumed run does not initialise again.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, int(channels), 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, int(channels), 1, 1))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def _initialize(self, x: torch.Tensor) -> None:
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        sq = (x * x).mean(dim=(0, 2, 3), keepdim=True)
        if distributed.info().enabled:
            stats = torch.cat([mean, sq])
            torch.distributed.all_reduce(stats)
            mean, sq = (stats / distributed.info().world_size).chunk(2)
        std = (sq - mean * mean).clamp_min(0).sqrt()
        self.bias.copy_(-mean)
        self.log_scale.copy_(-torch.log(std + 1e-6))
        self.initialized.fill_(True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and not bool(self.initialized):
            self._initialize(x.detach())
        y = (x + self.bias) * torch.exp(self.log_scale)
        logdet = self.log_scale.sum() * (x.shape[2] * x.shape[3])
        return y, logdet.expand(len(x))

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(-self.log_scale) - self.bias


class InvertibleConv1x1(nn.Module):
    """y = W x at every position, log|det| = H W log|det W| (Kingma & Dhariwal 2018, Sec. 3.2).

    ``lu=True`` stores W = P L (U + diag(sign(s) exp(log|s|))) (their eq. 10), so log|det W| =
    sum log|s| costs O(C); ``lu=False`` stores W itself and uses ``slogdet`` (O(C^3)). W starts
    as a random rotation.
    """

    def __init__(self, channels: int, lu: bool = True):
        super().__init__()
        c = int(channels)
        w = torch.linalg.qr(torch.randn(c, c))[0]
        self.lu = bool(lu)
        if not self.lu:
            self.weight = nn.Parameter(w)
            return
        p, lower, upper = torch.linalg.lu(w)
        s = torch.diagonal(upper)
        self.register_buffer("perm", p)
        self.register_buffer("sign_s", torch.sign(s))
        self.register_buffer("lower_mask", torch.tril(torch.ones(c, c), -1))
        self.lower = nn.Parameter(lower)
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(torch.log(s.abs()))

    def weight_and_logdet(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.lu:
            return self.weight, torch.linalg.slogdet(self.weight)[1]
        eye = torch.eye(len(self.log_s), device=self.log_s.device, dtype=self.log_s.dtype)
        lower = self.lower * self.lower_mask + eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.perm @ lower @ upper, self.log_s.sum()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w, logdet = self.weight_and_logdet()
        y = torch.einsum("oc,nchw->nohw", w, x)
        return y, (logdet * (x.shape[2] * x.shape[3])).expand(len(x))

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        w, _ = self.weight_and_logdet()
        w_inv = torch.linalg.inv(w.double()).to(y.dtype)
        return torch.einsum("oc,nchw->nohw", w_inv, y)


def squeeze2d(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, 4C, H/2, W/2): each 2x2 patch into channels (Dinh et al. 2017, Sec. 3.6)."""
    n, c, h, w = x.shape
    if h % 2 or w % 2:
        raise InputError(f"squeeze needs an even height and width, got {h}x{w}; use fewer levels "
                         "(model.backend.image_net.levels) or an image size divisible by 2**levels")
    x = x.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(n, 4 * c, h // 2, w // 2)


def unsqueeze2d(x: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`squeeze2d`."""
    n, c, h, w = x.shape
    x = x.reshape(n, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(n, c // 4, 2 * h, 2 * w)


__all__ = ["ActNorm", "InvertibleConv1x1", "squeeze2d", "unsqueeze2d"]
