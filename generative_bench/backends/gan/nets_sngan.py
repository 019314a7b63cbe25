"""The SNGAN ResNet generator and discriminator for CIFAR-size images (Miyato et al. 2018, Table 4).

Generator: z in R^128 -> linear to 4x4x256 -> three up-sampling residual blocks (BN, ReLU,
nearest x2 upsample, 3x3 convs, learnable 1x1 shortcut) -> BN -> ReLU -> conv3x3 -> tanh.
Discriminator: an "optimized" first down-block (conv-ReLU-conv-avgpool, shortcut
avgpool-conv1x1), then residual blocks (ReLU-conv-ReLU-conv, avgpool on the down ones) with 128
channels -- at 32x32: down, down, keep, keep -- ReLU, global sum pooling and a linear head. Every
D layer is spectrally normalised. At full width (ch=256 / 128) the nets have ~4.28M / ~1.05M
parameters, as published.

Initialisation follows the reference code: Xavier-uniform with gain sqrt(2) for the residual
convolutions, gain 1 for shortcuts and the linear layers.

``num_classes > 0`` gives the conditional pair of Miyato & Koyama 2018: conditional BatchNorm in
every generator block and before the output conv, and a projection term <embed(y), h> on the
discriminator's pooled features.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from generative_bench.backends.gan.conditional import (
    ProjectionHead, apply_norm, batch_norm_2d, check_labels, check_num_classes,
)
from generative_bench.backends.gan.nets_common import image_shape, maybe_sn, num_upsamplings


def _xavier(module: nn.Module, gain: float) -> nn.Module:
    nn.init.xavier_uniform_(module.weight, gain)
    if module.bias is not None:
        nn.init.zeros_(module.bias)
    return module


class GenBlock(nn.Module):
    """BN-ReLU-up-conv3x3-BN-ReLU-conv3x3 plus an up-conv1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int, num_classes: int = 0):
        super().__init__()
        self.bn1 = batch_norm_2d(c_in, num_classes)
        self.conv1 = _xavier(nn.Conv2d(c_in, c_out, 3, padding=1), math.sqrt(2))
        self.bn2 = batch_norm_2d(c_out, num_classes)
        self.conv2 = _xavier(nn.Conv2d(c_out, c_out, 3, padding=1), math.sqrt(2))
        self.shortcut = _xavier(nn.Conv2d(c_in, c_out, 1), 1.0)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = F.interpolate(F.relu(apply_norm(self.bn1, x, y)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(apply_norm(self.bn2, self.conv1(h), y)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


class SNGANGenerator(nn.Module):
    """ResNet generator; ``out_shape`` = [C, H, H] with H = 4 * 2^k (k up-sampling blocks).

    ``forward(z, y=None)``; ``y`` (class labels) is required when ``num_classes > 0``.
    """

    def __init__(self, out_shape: Sequence[int] = (3, 32, 32), z_dim: int = 128, ch: int = 256, bottom: int = 4,
                 num_classes: int = 0):
        super().__init__()
        self.num_classes = check_num_classes(num_classes, "SNGANGenerator")
        channels, res = image_shape(out_shape, "SNGANGenerator.out_shape")
        self.z_dim, self.ch, self.bottom = int(z_dim), int(ch), int(bottom)
        self.linear = _xavier(nn.Linear(self.z_dim, bottom * bottom * ch), 1.0)
        self.blocks = nn.Sequential(*[GenBlock(ch, ch, self.num_classes) for _ in range(num_upsamplings(res))])
        self.bn = batch_norm_2d(ch, self.num_classes)
        self.conv_out = _xavier(nn.Conv2d(ch, channels, 3, padding=1), 1.0)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        y = check_labels(self, y, len(z))
        h = self.linear(z).view(len(z), self.ch, self.bottom, self.bottom)
        for block in self.blocks:
            h = block(h, y)
        h = F.relu(apply_norm(self.bn, h, y))
        return torch.tanh(self.conv_out(h))


class DisBlock(nn.Module):
    """ReLU-conv3x3-ReLU-conv3x3 (-avgpool) plus a conv1x1 (-avgpool) shortcut when shapes change.

    ``optimized=True`` is the first block: no leading ReLU, shortcut pools before its 1x1 conv.
    """

    def __init__(self, c_in: int, c_out: int, down: bool, optimized: bool = False, sn: bool = True):
        super().__init__()
        self.down, self.optimized = down, optimized
        self.conv1 = maybe_sn(_xavier(nn.Conv2d(c_in, c_out, 3, padding=1), math.sqrt(2)), sn)
        self.conv2 = maybe_sn(_xavier(nn.Conv2d(c_out, c_out, 3, padding=1), math.sqrt(2)), sn)
        learnable = optimized or down or c_in != c_out
        self.shortcut = maybe_sn(_xavier(nn.Conv2d(c_in, c_out, 1), 1.0), sn) if learnable else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.optimized else F.relu(x)
        h = self.conv2(F.relu(self.conv1(h)))
        if self.down:
            h = F.avg_pool2d(h, 2)
        s = x
        if self.optimized:
            s = self.shortcut(F.avg_pool2d(s, 2))
        elif self.shortcut is not None:
            s = self.shortcut(s)
            if self.down:
                s = F.avg_pool2d(s, 2)
        return h + s


class SNGANDiscriminator(nn.Module):
    """ResNet discriminator; at 32x32: optimized down block, down block, two plain blocks.

    In general the first ``log2(H) - 3`` blocks down-sample (ending at 8x8) and two more follow.
    ``forward(x, y=None)``; with ``num_classes > 0`` the logit is linear(h) + <embed(y), h>.
    """

    def __init__(self, in_shape: Sequence[int] = (3, 32, 32), ch: int = 128, spectral: bool = True,
                 num_classes: int = 0):
        super().__init__()
        self.num_classes = check_num_classes(num_classes, "SNGANDiscriminator")
        channels, res = image_shape(in_shape, "SNGANDiscriminator.in_shape")
        n_down = max(1, num_upsamplings(res) - 1)
        blocks = [DisBlock(channels, ch, down=True, optimized=True, sn=spectral)]
        blocks += [DisBlock(ch, ch, down=True, sn=spectral) for _ in range(n_down - 1)]
        blocks += [DisBlock(ch, ch, down=False, sn=spectral) for _ in range(2)]
        self.blocks = nn.Sequential(*blocks)
        self.linear = maybe_sn(_xavier(nn.Linear(ch, 1), 1.0), spectral)
        if self.num_classes:  # created last: the other parameters initialise as in the unconditional net
            self.projection = ProjectionHead(ch, self.num_classes, spectral)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        y = check_labels(self, y, len(x))
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))  # global sum pooling
        out = self.linear(h).squeeze(1)
        return out if y is None else out + self.projection(h, y)
