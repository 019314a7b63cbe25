"""Small pieces shared by the GAN networks: spectral norm switch, shape checks, init."""

from __future__ import annotations

import math
from typing import Sequence

from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from generative_bench.errors import InputError


def maybe_sn(module: nn.Module, enabled: bool) -> nn.Module:
    """Wrap ``module`` with spectral normalisation (Miyato et al. 2018, eq. 8) when ``enabled``.

    Uses ``torch.nn.utils.parametrizations.spectral_norm`` with one power iteration per forward
    in train mode (the paper's setting); ``u``/``v`` are buffers, so they are checkpointed.
    """
    return spectral_norm(module) if enabled else module


def image_shape(shape: Sequence[int], name: str) -> tuple[int, int]:
    """(channels, resolution) of a square image shape whose side is 4 * 2^k, k >= 1."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or shape[1] != shape[2]:
        raise InputError(f"{name}: expected a square image shape [C, H, H], got {list(shape)}")
    c, res = shape[0], shape[1]
    k = math.log2(res / 4) if res >= 8 else -1
    if k < 1 or k != int(k):
        raise InputError(f"{name}: image side must be 4 * 2^k (8, 16, 32, 64, ...), got {res}")
    return c, res


def num_upsamplings(resolution: int) -> int:
    """Stride-2 stages from the 4x4 bottom to ``resolution``."""
    return int(round(math.log2(resolution / 4)))


def dcgan_init(module: nn.Module) -> None:
    """Radford et al. 2016 initialisation: weights N(0, 0.02), BN scale N(1, 0.02), biases 0.

    BatchNorm layers without their own affine transform (the conditional BatchNorm's per-class
    gamma/beta start at 1/0) are left alone.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
