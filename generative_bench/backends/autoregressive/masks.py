"""Masked layers: the weights of a connection that would break the autoregressive order are zero.

* :class:`MaskedConv2d` / :class:`MaskedLinear`: a conv / linear layer whose weight is multiplied
  by a fixed 0/1 ``mask`` buffer at every call (so masked weights get no gradient either).
* :func:`channel_groups` / :func:`group_mask`: the colour-channel order inside a pixel (van den
  Oord et al. 2016, PixelRNN Sec. 3.4, masks A and B): every feature channel belongs to a
  colour group g in 0..C-1 (channel o has group o mod C); a connection from group g_in to g_out
  is allowed when g_out > g_in (mask A, the first layer: channel c sees colours < c of its own
  pixel) or g_out >= g_in (mask B, every later layer). Group -1 (a constant input channel) is
  visible to every group.
* :func:`made_degrees`: MADE's degrees (Germain et al. 2015, Sec. 4): input i has degree i
  (1..d), hidden units 1..d-1 in turn; hidden unit k sees unit j when m(k) >= m(j), and an
  output of dimension i sees hidden unit k when i > m(k) (their eq. 12-13).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MaskedConv2d(nn.Conv2d):
    """``nn.Conv2d`` (no padding: callers pad causally) with weight * mask."""

    def __init__(self, c_in: int, c_out: int, kernel_size: tuple[int, int], mask: torch.Tensor):
        super().__init__(c_in, c_out, kernel_size)
        self.register_buffer("mask", mask.to(self.weight.dtype).view_as(self.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias)


class MaskedLinear(nn.Linear):
    """``nn.Linear`` with weight * mask, mask (out, in)."""

    def __init__(self, n_in: int, n_out: int, mask: torch.Tensor):
        super().__init__(n_in, n_out)
        self.register_buffer("mask", mask.to(self.weight.dtype).view_as(self.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


def channel_groups(n: int, colours: int) -> torch.Tensor:
    """The colour group of each of ``n`` feature channels: o mod ``colours``."""
    return torch.arange(int(n)) % int(colours)


def group_mask(groups_out: torch.Tensor, groups_in: torch.Tensor, strict: bool) -> torch.Tensor:
    """(out, in) 0/1 mask: allowed when g_out > g_in (``strict``, mask A) or g_out >= g_in (mask B)."""
    out, inp = groups_out.view(-1, 1), groups_in.view(1, -1)
    return (out > inp) if strict else (out >= inp)


def made_degrees(dims: int, hidden: int) -> torch.Tensor:
    """Degrees 1..max(1, d-1) of ``hidden`` units, in turn (a deterministic MADE ordering)."""
    return torch.arange(int(hidden)) % max(1, int(dims) - 1) + 1


__all__ = ["MaskedConv2d", "MaskedLinear", "channel_groups", "group_mask", "made_degrees"]
