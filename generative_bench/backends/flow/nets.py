"""The flows: a multi-scale Glow for images and a coupling flow for vectors, one class underneath.

:class:`MultiScaleFlow` (Dinh et al. 2017, Sec. 3.6; Kingma & Dhariwal 2018, Fig. 2b): at each
of ``levels`` levels, squeeze, ``steps_per_level`` steps of flow (actnorm, 1x1 conv, affine
coupling), then factor out half the channels as a latent z_i with a learned prior conditioned on
the other half. log p(x) = sum_i log p(z_i | h_i) + log p(z_top) + sum log|det| (change of
variables, Dinh et al. 2017, eq. 3). ``inverse`` maps latents back exactly; ``sample`` draws
every latent as mean + T * std * eps, T the temperature (Glow, Sec. 5.1).

:class:`GlowImageFlow` uses 3x3 coupling convs and the squeeze; :class:`CouplingVectorFlow` runs
the same steps on (N, d, 1, 1) with 1x1 convs (an MLP conditioner), one level, no squeeze.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from generative_bench.backends.flow.coupling import SplitPrior, TopPrior, gaussian_log_prob
from generative_bench.backends.flow.step import FlowStep
from generative_bench.backends.flow.layers import squeeze2d, unsqueeze2d
from generative_bench.errors import InputError

#: pick(level, mean, log_std) -> the latent of that level (given, or drawn)
Pick = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]


class MultiScaleFlow(nn.Module):
    """See the module docstring; ``shape`` is (C, H, W) of the input."""

    def __init__(self, shape: Sequence[int], levels: int, steps_per_level: int, hidden: int, kernel: int,
                 depth: int = 1, clamp: float = 2.0, lu: bool = True, squeeze: bool = True, num_classes: int = 0,
                 coupling: str = "affine", bins: int = 8, bound: float = 4.0):
        super().__init__()
        c, h, w = (int(s) for s in shape)
        if int(levels) < 1 or int(steps_per_level) < 1:
            raise InputError(f"a flow needs levels >= 1 and steps_per_level >= 1, got {levels} and {steps_per_level}")
        if squeeze and (h % 2 ** int(levels) or w % 2 ** int(levels)):
            raise InputError(f"image size {h}x{w} is not divisible by 2**levels = {2 ** int(levels)}; "
                             "lower model.backend.image_net.levels")
        self.squeeze, self.levels = bool(squeeze), int(levels)
        self.steps, self.split_priors = nn.ModuleList(), nn.ModuleList()
        for level in range(self.levels):
            if self.squeeze:
                c, h, w = 4 * c, h // 2, w // 2
            if c < 2:
                raise InputError(f"a coupling layer needs at least 2 channels, got {c}")
            self.steps.append(nn.ModuleList(FlowStep(c, int(hidden), int(kernel), depth, clamp, lu, num_classes,
                                                     coupling, bins, bound) for _ in range(int(steps_per_level))))
            if level + 1 < self.levels:
                self.split_priors.append(SplitPrior(c // 2, c - c // 2, int(kernel)))
                c = c // 2
        self.top_prior = TopPrior((c, h, w), num_classes)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        """x -> (latents, log|det| per example, log prior per example)."""
        h, logdet = x, x.new_zeros(len(x))
        log_prior = x.new_zeros(len(x))
        zs = []
        for level in range(self.levels):
            if self.squeeze:
                h = squeeze2d(h)
            for step in self.steps[level]:
                h, ld = step(h, y)
                logdet = logdet + ld
            if level + 1 < self.levels:
                h, z = h[:, :h.shape[1] // 2], h[:, h.shape[1] // 2:]
                log_prior = log_prior + gaussian_log_prob(z, *self.split_priors[level](h))
                zs.append(z)
        log_prior = log_prior + gaussian_log_prob(h, *self.top_prior(len(h), y))
        zs.append(h)
        return zs, logdet, log_prior

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x) in nats per example (a density over the flow's continuous input)."""
        _, logdet, log_prior = self(x, y)
        return log_prior + logdet

    def _reverse(self, n: int, pick: Pick, y: torch.Tensor | None) -> torch.Tensor:
        h = pick(self.levels - 1, *self.top_prior(n, y))
        for level in reversed(range(self.levels)):
            if level + 1 < self.levels:
                h = torch.cat([h, pick(level, *self.split_priors[level](h))], dim=1)
            for step in reversed(self.steps[level]):
                h = step.inverse(h, y)
            if self.squeeze:
                h = unsqueeze2d(h)
        return h

    def inverse(self, zs: Sequence[torch.Tensor], y: torch.Tensor | None = None) -> torch.Tensor:
        """The latents of ``forward`` -> x."""
        return self._reverse(len(zs[-1]), lambda level, mean, log_std: zs[level], y)

    def sample(self, n: int, noise: Any, temperature: float = 1.0, y: torch.Tensor | None = None) -> torch.Tensor:
        """Every latent = mean + T * std * eps, eps from ``noise`` (one row per sample)."""
        def pick(level: int, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
            eps = noise.randn(mean.shape).to(mean.device, mean.dtype)
            return mean + float(temperature) * torch.exp(log_std) * eps

        return self._reverse(int(n), pick, y)


class GlowImageFlow(MultiScaleFlow):
    """Multi-scale Glow for (C, H, W) images: 3x3 coupling convs, squeeze and split at every level."""

    def __init__(self, data_shape: Sequence[int], levels: int = 3, steps_per_level: int = 4, hidden: int = 64,
                 depth: int = 1, clamp: float = 2.0, lu: bool = True, num_classes: int = 0, coupling: str = "affine",
                 bins: int = 8, bound: float = 4.0):
        if len(data_shape) != 3:
            raise InputError(f"GlowImageFlow needs images [C, H, W], got shape {list(data_shape)}")
        super().__init__(data_shape, levels, steps_per_level, hidden, kernel=3, depth=depth, clamp=clamp, lu=lu,
                         squeeze=True, num_classes=num_classes, coupling=coupling, bins=bins, bound=bound)


class CouplingVectorFlow(MultiScaleFlow):
    """Coupling flow for d-dimensional vectors (RealNVP with Glow's actnorm and 1x1 mixing, affine or
    rational-quadratic spline couplings): the conditioners are MLPs of ``depth`` + 1 hidden layers
    of ``hidden`` units."""

    def __init__(self, data_shape: Sequence[int], steps: int = 8, hidden: int = 128, depth: int = 2,
                 clamp: float = 3.0, lu: bool = True, num_classes: int = 0, coupling: str = "affine", bins: int = 8,
                 bound: float = 4.0):
        if len(data_shape) != 1 or int(data_shape[0]) < 2:
            raise InputError(f"CouplingVectorFlow needs vectors of d >= 2 dimensions, got shape {list(data_shape)}")
        super().__init__((int(data_shape[0]), 1, 1), 1, steps, hidden, kernel=1, depth=depth, clamp=clamp, lu=lu,
                         squeeze=False, num_classes=num_classes, coupling=coupling, bins=bins, bound=bound)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        return super().forward(x[:, :, None, None], y)

    def _reverse(self, n: int, pick: Pick, y: torch.Tensor | None) -> torch.Tensor:
        return super()._reverse(n, pick, y).flatten(1)


__all__ = ["CouplingVectorFlow", "GlowImageFlow", "MultiScaleFlow"]
