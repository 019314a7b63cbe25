"""MLP generator/discriminator pair for 2-D toy mixtures (Metz et al. 2017; Lin et al. 2018).

Generator: z -> ``depth`` hidden ReLU layers of ``hidden`` units -> linear output (no tanh: the
25-mode grid spans [-4, 4]). Discriminator: ``depth`` hidden LeakyReLU layers -> one logit,
optionally spectrally normalised.

``num_classes > 0``: the generator adds a class embedding to its first hidden pre-activation;
the discriminator adds the projection term <embed(y), h> on its last hidden layer (Miyato &
Koyama 2018).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from generative_bench.backends.gan.conditional import ProjectionHead, check_labels, check_num_classes
from generative_bench.backends.gan.nets_common import maybe_sn
from generative_bench.errors import InputError


def _vector_dim(shape: Sequence[int], name: str) -> int:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 1:
        raise InputError(f"{name}: expected a vector shape [d], got {list(shape)}")
    return shape[0]


class MLPGenerator(nn.Module):
    """``forward(z, y=None)``; ``y`` (class labels) is required when ``num_classes > 0``."""

    def __init__(self, out_shape: Sequence[int] = (2,), z_dim: int = 64, hidden: int = 256, depth: int = 3,
                 num_classes: int = 0):
        super().__init__()
        out_dim = _vector_dim(out_shape, "MLPGenerator.out_shape")
        self.num_classes = check_num_classes(num_classes, "MLPGenerator")
        if self.num_classes and depth < 1:
            raise InputError("MLPGenerator: a class-conditional generator needs depth >= 1")
        self.z_dim = int(z_dim)
        layers: list[nn.Module] = []
        d = self.z_dim
        for _ in range(depth):
            layers += [nn.Linear(d, hidden), nn.ReLU()]
            d = hidden
        layers.append(nn.Linear(d, out_dim))
        self.net = nn.Sequential(*layers)
        if self.num_classes:  # created last: the other parameters initialise as in the unconditional net
            self.label_embed = nn.Embedding(self.num_classes, hidden)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        y = check_labels(self, y, len(z))
        if y is None:
            return self.net(z)
        h = self.net[0](z) + self.label_embed(y.to(z.device)).to(z.dtype)
        for layer in self.net[1:]:
            h = layer(h)
        return h


class MLPDiscriminator(nn.Module):
    """``forward(x, y=None)``; with ``num_classes > 0`` the logit is linear(h) + <embed(y), h>."""

    def __init__(self, in_shape: Sequence[int] = (2,), hidden: int = 256, depth: int = 3,
                 negative_slope: float = 0.2, spectral: bool = False, num_classes: int = 0):
        super().__init__()
        d = _vector_dim(in_shape, "MLPDiscriminator.in_shape")
        self.num_classes = check_num_classes(num_classes, "MLPDiscriminator")
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [maybe_sn(nn.Linear(d, hidden), spectral), nn.LeakyReLU(negative_slope)]
            d = hidden
        layers.append(maybe_sn(nn.Linear(d, 1), spectral))
        self.net = nn.Sequential(*layers)
        if self.num_classes:  # created last: the other parameters initialise as in the unconditional net
            self.projection = ProjectionHead(d, self.num_classes, spectral)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        y = check_labels(self, y, len(x))
        if y is None:
            return self.net(x).squeeze(1)
        h = x
        for layer in self.net[:-1]:
            h = layer(h)
        return self.net[-1](h).squeeze(1) + self.projection(h, y)
