"""Gated PixelCNN with vertical and horizontal stacks and colour-channel masks.

Sub-pixels are ordered in raster order, channels R, G, B inside a pixel. The output at sub-pixel
(i, j, c) (the discretized-logistic-mixture parameters of channel c at pixel (i, j)) depends only
on the pixels before (i, j) and on channels < c of pixel (i, j):

* the **vertical stack** sees the image shifted down one row (plus a channel of ones, so padding
  differs from a grey pixel, as in PixelCNN++), through convs covering the rows above only:
  everything in rows < i;
* the **horizontal stack** convolves row i over columns <= j; the tap at column j is masked by
  colour group (mask A in the first layer, B after; :mod:`masks`), and it receives the vertical
  stack through a 1x1 conv (no blind spot; van den Oord et al. 2016, Conditional PixelCNN, Fig. 2);
* gates tanh(a) * sigmoid(b) (their eq. 2), residual connections in the horizontal stack, an
  optional class bias in every gate (their eq. 4) and dropout before the residual 1x1 conv
  (Salimans et al. 2017, Sec. 2.6);
* a masked 1x1 head (ELU activations, as PixelCNN++; no dead units) gives 3 K C outputs laid out as the shared
  :class:`~generative_bench.backends.vae.likelihoods.DiscretizedLogisticMixture` reads them
  (index o is colour o mod C).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from generative_bench.backends.autoregressive.masks import MaskedConv2d, channel_groups, group_mask
from generative_bench.backends.flow.coupling import ClassBias
from generative_bench.errors import InputError


def _horizontal_mask(groups_out: torch.Tensor, groups_in: torch.Tensor, width: int, strict: bool) -> torch.Tensor:
    """(out, in, 1, width): columns left of the centre all open, the centre (last) tap by colour group."""
    mask = torch.ones(len(groups_out), len(groups_in), 1, int(width))
    mask[:, :, 0, -1] = group_mask(groups_out, groups_in, strict).float()
    return mask


class GatedLayer(nn.Module):
    """One gated layer of both stacks; ``first`` reads the image (mask A, no residual)."""

    def __init__(self, c_in: int, hidden: int, colours: int, kernel: int, first: bool, num_classes: int,
                 dropout: float):
        super().__init__()
        self.first, self.k = bool(first), int(kernel)
        g_in = torch.cat([channel_groups(c_in - 1, colours), torch.tensor([-1])]) if first \
            else channel_groups(c_in, colours)
        g2, g1 = channel_groups(2 * hidden, colours), channel_groups(hidden, colours)
        self.v_conv = nn.Conv2d(c_in, 2 * hidden, (self.k // 2 + 1, self.k))
        self.h_conv = MaskedConv2d(c_in, 2 * hidden, (1, self.k // 2 + 1),
                                   _horizontal_mask(g2, g_in, self.k // 2 + 1, strict=first))
        self.v_to_h = nn.Conv2d(2 * hidden, 2 * hidden, 1)
        self.h_out = MaskedConv2d(hidden, hidden, (1, 1), group_mask(g1, g1, strict=False))
        self.v_class, self.h_class = ClassBias(num_classes, 2 * hidden), ClassBias(num_classes, 2 * hidden)
        self.dropout = nn.Dropout(float(dropout))

    @staticmethod
    def gate(a: torch.Tensor) -> torch.Tensor:
        a, b = a.chunk(2, dim=1)
        return torch.tanh(a) * torch.sigmoid(b)

    def forward(self, v: torch.Tensor, h: torch.Tensor, y: torch.Tensor | None):
        half = self.k // 2
        v_pre = self.v_class(self.v_conv(F.pad(v, (half, half, half, 0))), y)
        h_pre = self.h_class(self.h_conv(F.pad(h, (half, 0, 0, 0))) + self.v_to_h(v_pre), y)
        h_new = self.h_out(self.dropout(self.gate(h_pre)))
        return self.gate(v_pre), (h_new if self.first else h + h_new)


class GatedPixelCNN(nn.Module):
    """``layers`` gated layers of ``hidden`` channels (a multiple of C), first kernel ``first_kernel``,
    then ``kernel``; ``forward(x, y) -> (N, out_channels, H, W)`` likelihood parameters."""

    def __init__(self, data_shape: Sequence[int], out_channels: int, hidden: int = 48, layers: int = 5,
                 kernel: int = 3, first_kernel: int = 7, dropout: float = 0.0, num_classes: int = 0):
        super().__init__()
        if len(data_shape) != 3:
            raise InputError(f"GatedPixelCNN needs images [C, H, W], got shape {list(data_shape)}")
        c = int(data_shape[0])
        self.colours = c
        if int(hidden) % c:
            raise InputError(f"PixelCNN hidden={hidden} must be a multiple of the {c} image channels "
                             "(one colour group per channel); set model.backend.image_net.hidden accordingly")
        if int(layers) < 1 or int(kernel) < 1 or int(first_kernel) < 1 or kernel % 2 == 0 or first_kernel % 2 == 0:
            raise InputError(f"PixelCNN needs layers >= 1 and odd kernels, got layers={layers}, kernel={kernel}, "
                             f"first_kernel={first_kernel}")
        if int(out_channels) % c:
            raise InputError(f"PixelCNN out_channels={out_channels} must be a multiple of the {c} channels")
        hidden = int(hidden)
        self.layers = nn.ModuleList(
            GatedLayer(c + 1 if i == 0 else hidden, hidden, c, first_kernel if i == 0 else kernel, i == 0,
                       num_classes, dropout) for i in range(int(layers)))
        g1, g_out = channel_groups(hidden, c), channel_groups(int(out_channels), c)
        self.head = MaskedConv2d(hidden, hidden, (1, 1), group_mask(g1, g1, strict=False))
        self.output_layer = MaskedConv2d(hidden, int(out_channels), (1, 1), group_mask(g_out, g1, strict=False))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
        v = F.pad(x, (0, 0, 1, 0))[:, :, :-1]  # shifted down: row i sees rows < i only
        h = x
        for layer in self.layers:
            v, h = layer(v, h, y)
        return self.output_layer(F.elu(self.head(F.elu(h))))


__all__ = ["GatedLayer", "GatedPixelCNN"]
