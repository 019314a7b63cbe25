"""MLP generator/discriminator pair for 2-D toy mixtures (Metz et al. 2017; Lin et al. 2018).

Generator: z -> ``depth`` hidden ReLU layers of ``hidden`` units -> linear output (no tanh: the
25-mode grid spans [-4, 4]). Discriminator: ``depth`` hidden LeakyReLU layers -> one logit,
optionally spectrally normalised.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from generative_bench.backends.gan.nets_common import maybe_sn
from generative_bench.errors import InputError


def _vector_dim(shape: Sequence[int], name: str) -> int:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 1:
        raise InputError(f"{name}: expected a vector shape [d], got {list(shape)}")
    return shape[0]


class MLPGenerator(nn.Module):
    def __init__(self, out_shape: Sequence[int] = (2,), z_dim: int = 64, hidden: int = 256, depth: int = 3):
        super().__init__()
        out_dim = _vector_dim(out_shape, "MLPGenerator.out_shape")
        self.z_dim = int(z_dim)
        layers: list[nn.Module] = []
        d = self.z_dim
        for _ in range(depth):
            layers += [nn.Linear(d, hidden), nn.ReLU()]
            d = hidden
        layers.append(nn.Linear(d, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class MLPDiscriminator(nn.Module):
    def __init__(self, in_shape: Sequence[int] = (2,), hidden: int = 256, depth: int = 3,
                 negative_slope: float = 0.2, spectral: bool = False):
        super().__init__()
        d = _vector_dim(in_shape, "MLPDiscriminator.in_shape")
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [maybe_sn(nn.Linear(d, hidden), spectral), nn.LeakyReLU(negative_slope)]
            d = hidden
        layers.append(maybe_sn(nn.Linear(d, 1), spectral))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)
