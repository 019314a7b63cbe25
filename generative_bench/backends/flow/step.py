"""One step of a Glow-style flow: actnorm, an invertible 1x1 convolution and a coupling layer
(affine, :mod:`.coupling`, or rational-quadratic spline, :mod:`.spline`)."""

from __future__ import annotations

import torch
from torch import nn

from generative_bench.backends.flow.coupling import AffineCoupling
from generative_bench.backends.flow.layers import ActNorm, InvertibleConv1x1
from generative_bench.backends.flow.spline import SplineCoupling
from generative_bench.errors import InputError

COUPLINGS = ("affine", "spline")


class FlowStep(nn.Module):
    """actnorm -> invertible 1x1 conv -> coupling (Kingma & Dhariwal 2018, Fig. 2a): ``coupling="affine"``
    (:class:`AffineCoupling`) or ``"spline"`` (a rational-quadratic spline of ``bins`` bins on
    [-bound, bound], :mod:`spline`)."""

    def __init__(self, channels: int, hidden: int, kernel: int, depth: int = 1, clamp: float = 2.0, lu: bool = True,
                 num_classes: int = 0, coupling: str = "affine", bins: int = 8, bound: float = 4.0):
        super().__init__()
        if coupling not in COUPLINGS:
            raise InputError(f"flow coupling must be one of {list(COUPLINGS)}, got {coupling!r}")
        self.norm = ActNorm(channels)
        self.mix = InvertibleConv1x1(channels, lu=lu)
        if coupling == "affine":
            self.coupling = AffineCoupling(channels, hidden, kernel, depth, clamp, num_classes)
        else:
            self.coupling = SplineCoupling(channels, hidden, kernel, depth, bins, bound, num_classes)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x, ld1 = self.norm(x)
        x, ld2 = self.mix(x)
        x, ld3 = self.coupling(x, y)
        return x, ld1 + ld2 + ld3

    def inverse(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.norm.inverse(self.mix.inverse(self.coupling.inverse(z, y)))

__all__ = ["COUPLINGS", "FlowStep"]
