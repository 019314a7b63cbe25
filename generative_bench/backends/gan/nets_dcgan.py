"""DCGAN-style CNNs for 32x32 images (Radford et al. 2016; the "standard CNN" of Miyato et al. 2018).

Generator: z -> linear to 4x4x(ch) -> BN-ReLU -> stride-2 4x4 transposed convs, each halving the
channels with BN+ReLU (512 -> 256 -> 128 -> 64 at 32x32) -> conv3x3 to C -> tanh.
Discriminator (the mirror): per resolution stage a conv3x3 (stride 1) and a conv4x4 (stride 2)
with LeakyReLU, channels 64 -> 128 -> 256, then conv3x3 to 512 and a linear head on the flat
4x4x512 map. ``norm`` picks spectral norm (SN-DCGAN, Miyato et al.), batch norm (classic
DCGAN; not on the first layer) or none.

``num_classes > 0``: the generator's BatchNorms become class-conditional BatchNorms and the
discriminator gets a projection head on the features of its linear head (Miyato & Koyama 2018).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from generative_bench.backends.gan.conditional import (
    ProjectionHead, apply_norm, batch_norm_2d, check_labels, check_num_classes,
)
from generative_bench.backends.gan.nets_common import dcgan_init, image_shape, maybe_sn, num_upsamplings
from generative_bench.errors import InputError

NORMS = ("spectral", "batch", "none")


class DCGANGenerator(nn.Module):
    """``forward(z, y=None)``; ``y`` (class labels) is required when ``num_classes > 0``."""

    def __init__(self, out_shape: Sequence[int] = (3, 32, 32), z_dim: int = 128, ch: int = 512, bottom: int = 4,
                 num_classes: int = 0):
        super().__init__()
        self.num_classes = check_num_classes(num_classes, "DCGANGenerator")
        channels, res = image_shape(out_shape, "DCGANGenerator.out_shape")
        n_up = num_upsamplings(res)
        if ch % (2 ** n_up):
            raise InputError(f"DCGANGenerator: ch={ch} must be divisible by 2^{n_up} for {res}x{res} output")
        self.z_dim, self.ch, self.bottom = int(z_dim), int(ch), int(bottom)
        self.linear = nn.Linear(self.z_dim, bottom * bottom * ch)
        self.bn0 = batch_norm_2d(ch, self.num_classes)
        layers: list[nn.Module] = []
        c = ch
        for _ in range(n_up):
            layers += [nn.ConvTranspose2d(c, c // 2, 4, stride=2, padding=1), batch_norm_2d(c // 2, self.num_classes),
                       nn.ReLU()]
            c //= 2
        self.up = nn.Sequential(*layers)
        self.conv_out = nn.Conv2d(c, channels, 3, padding=1)
        dcgan_init(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        y = check_labels(self, y, len(z))
        if y is None:
            h = F.relu(self.bn0(self.linear(z).view(len(z), self.ch, self.bottom, self.bottom)))
            return torch.tanh(self.conv_out(self.up(h)))
        h = F.relu(self.bn0(self.linear(z).view(len(z), self.ch, self.bottom, self.bottom), y))
        for layer in self.up:
            h = apply_norm(layer, h, y)
        return torch.tanh(self.conv_out(h))


class DCGANDiscriminator(nn.Module):
    """``forward(x, y=None)``; with ``num_classes > 0`` the logit is linear(h) + <embed(y), h>."""

    def __init__(self, in_shape: Sequence[int] = (3, 32, 32), ch: int = 64, norm: str = "spectral",
                 negative_slope: float = 0.1, num_classes: int = 0):
        super().__init__()
        self.num_classes = check_num_classes(num_classes, "DCGANDiscriminator")
        if norm not in NORMS:
            raise InputError(f"DCGANDiscriminator.norm must be one of {NORMS}, got {norm!r}")
        channels, res = image_shape(in_shape, "DCGANDiscriminator.in_shape")
        sn = norm == "spectral"
        self.slope = float(negative_slope)
        convs: list[nn.Module] = []
        c_in = channels
        for i in range(num_upsamplings(res)):
            c = ch * 2**i
            convs += [nn.Conv2d(c_in, c, 3, padding=1), nn.Conv2d(c, c, 4, stride=2, padding=1)]
            c_in = c
        convs.append(nn.Conv2d(c_in, 2 * c_in, 3, padding=1))
        head = nn.Linear(2 * c_in * 4 * 4, 1)
        dcgan_init(nn.ModuleList(convs + [head]))
        self.convs = nn.ModuleList([maybe_sn(m, sn) for m in convs])
        # classic DCGAN: batch norm after every conv but the first
        self.norms = nn.ModuleList([
            nn.BatchNorm2d(m.out_channels) if norm == "batch" and i > 0 else nn.Identity()
            for i, m in enumerate(convs)
        ])
        self.linear = maybe_sn(head, sn)
        if self.num_classes:  # created last: the other parameters initialise as in the unconditional net
            self.projection = ProjectionHead(head.in_features, self.num_classes, sn)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        y = check_labels(self, y, len(x))
        h = x
        for conv, norm in zip(self.convs, self.norms):
            h = F.leaky_relu(norm(conv(h)), self.slope)
        h = h.flatten(1)
        out = self.linear(h).squeeze(1)
        return out if y is None else out + self.projection(h, y)
