"""Rational-quadratic spline coupling (Durkan et al. 2019, Neural Spline Flows, Sec. 3.1).

y_a = x_a; every element of x_b goes through its own monotone rational-quadratic spline with K
bins on [-B, B], whose widths, heights and inner-knot derivatives come from a network of x_a;
outside [-B, B] the map is the identity (linear tails, derivative 1 at the boundary knots, their
App. A). Far more expressive per coupling than an affine map: one layer can turn a unimodal
conditional into a multimodal one, which 2-D mixtures need.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from generative_bench.backends.flow.coupling import Conditioner

MIN_BIN = 1e-3
MIN_DERIVATIVE = 1e-3


def _knots(raw: torch.Tensor, bound: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Bin sizes (..., K) summing to 2B (each at least MIN_BIN of it) and the K + 1 knot positions."""
    k = raw.shape[-1]
    sizes = MIN_BIN + (1 - MIN_BIN * k) * torch.softmax(raw, dim=-1)
    cum = F.pad(torch.cumsum(sizes, dim=-1), (1, 0))
    knots = (2 * bound) * (cum / cum[..., -1:]) - bound  # exactly -B ... B at the ends
    return knots[..., 1:] - knots[..., :-1], knots


def _gather(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return t.gather(-1, idx.unsqueeze(-1)).squeeze(-1)


def rq_spline(x: torch.Tensor, w_raw: torch.Tensor, h_raw: torch.Tensor, d_raw: torch.Tensor, bound: float,
              inverse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Elementwise spline (or its inverse) and log|dy/dx| (of the direction taken); their eq. 4 and App. A."""
    inside = (x > -bound) & (x < bound)
    xc = x.clamp(-bound, bound)
    widths, cw = _knots(w_raw, bound)
    heights, ch = _knots(h_raw, bound)
    ones = torch.ones_like(d_raw[..., :1])
    deriv = torch.cat([ones, MIN_DERIVATIVE + F.softplus(d_raw), ones], dim=-1)
    knots = ch if inverse else cw
    idx = torch.searchsorted(knots[..., 1:-1].contiguous(), xc.unsqueeze(-1).contiguous()).squeeze(-1)
    x_k, w_k, y_k, h_k = _gather(cw, idx), _gather(widths, idx), _gather(ch, idx), _gather(heights, idx)
    d_k, d_k1 = _gather(deriv, idx), _gather(deriv, idx + 1)
    s_k = h_k / w_k
    two = d_k1 + d_k - 2 * s_k
    if inverse:
        dy = xc - y_k
        a = h_k * (s_k - d_k) + dy * two
        b = h_k * d_k - dy * two
        c = -s_k * dy
        xi = (2 * c) / (-b - torch.sqrt((b * b - 4 * a * c).clamp_min(0)))
        out = xi * w_k + x_k
    else:
        xi = (xc - x_k) / w_k
        out = y_k + h_k * (s_k * xi * xi + d_k * xi * (1 - xi)) / (s_k + two * xi * (1 - xi))
    den = s_k + two * xi * (1 - xi)
    log_d = (2 * torch.log(s_k) + torch.log(d_k1 * xi * xi + 2 * s_k * xi * (1 - xi) + d_k * (1 - xi) ** 2)
             - 2 * torch.log(den))
    log_d = -log_d if inverse else log_d
    return torch.where(inside, out, x), torch.where(inside, log_d, torch.zeros_like(log_d))


class SplineCoupling(nn.Module):
    """y_b = spline(x_b; theta(x_a)) elementwise with ``bins`` bins on [-bound, bound]; log|det| = sum log spline'."""

    def __init__(self, channels: int, hidden: int, kernel: int, depth: int = 1, bins: int = 8, bound: float = 4.0,
                 num_classes: int = 0):
        super().__init__()
        self.c_a = int(channels) // 2
        self.c_b = int(channels) - self.c_a
        self.bins, self.bound = int(bins), float(bound)
        self.net = Conditioner(self.c_a, (3 * self.bins - 1) * self.c_b, hidden, kernel, depth, num_classes)

    def _params(self, x_a: torch.Tensor, y: torch.Tensor | None):
        p = self.net(x_a, y)
        n, _, h, w = p.shape
        p = p.reshape(n, self.c_b, 3 * self.bins - 1, h, w).movedim(2, -1)
        k = self.bins
        return p[..., :k], p[..., k:2 * k], p[..., 2 * k:]

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x_a, x_b = x[:, :self.c_a], x[:, self.c_a:]
        out, log_d = rq_spline(x_b, *self._params(x_a, y), self.bound)
        return torch.cat([x_a, out], dim=1), log_d.flatten(1).sum(1)

    def inverse(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        z_a, z_b = z[:, :self.c_a], z[:, self.c_a:]
        out, _ = rq_spline(z_b, *self._params(z_a, y), self.bound, inverse=True)
        return torch.cat([z_a, out], dim=1)


__all__ = ["SplineCoupling", "rq_spline"]
