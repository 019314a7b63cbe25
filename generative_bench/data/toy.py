"""Embedded 2-D toy mixtures with exact densities (offline default data).

* ring: 8 Gaussians evenly spaced on a circle of radius 1, std 0.01 (Metz et al. 2017).
* grid: 25 Gaussians on {-4, -2, 0, 2, 4}^2, std 0.05 (PacGAN, Lin et al. 2018).

Both are equal-weight isotropic mixtures p(x) = 1/K sum_k N(x; mu_k, s^2 I), so the data NLL is
known exactly and serves as the floor for every model's bits/dim.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils.data import Dataset


class GaussianMixture2D(Dataset):
    """A fixed sample of ``size`` points from an isotropic equal-weight mixture, with exact density."""

    name = "mixture"

    def __init__(self, means: torch.Tensor, std: float, size: int = 50_000, seed: int = 0, split: str = "train"):
        self.means = means.double()
        self.std = float(std)
        self.split = split
        self.seed = int(seed)
        # disjoint fixed samples for the two splits
        g = torch.Generator().manual_seed(self.seed * 2 + (0 if split == "train" else 1))
        self.points, labels = self.sample(size, g, return_labels=True)
        self.labels = labels.numpy()

    @property
    def num_modes(self) -> int:
        return len(self.means)

    def sample(self, n: int, generator: torch.Generator | None = None, return_labels: bool = False):
        k = torch.randint(0, self.num_modes, (n,), generator=generator)
        x = self.means[k].float() + self.std * torch.randn(n, 2, generator=generator)
        return (x, k) if return_labels else x

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(x) in nats per point (float64)."""
        x = x.double()
        d2 = torch.cdist(x, self.means.to(x.device)) ** 2  # (N, K)
        log_norm = -math.log(2 * math.pi * self.std**2)  # 2-D isotropic Gaussian
        return torch.logsumexp(-0.5 * d2 / self.std**2 + log_norm, dim=1) - math.log(self.num_modes)

    def nll_bits_per_dim(self, x: torch.Tensor) -> torch.Tensor:
        """Exact -log2 p(x) / 2 per point (continuous density, so it can be negative)."""
        return -self.log_prob(x) / (2 * math.log(2))

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, i):
        return self.points[i], int(self.labels[i])

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "split": self.split, "size": len(self), "modes": self.num_modes,
                "std": self.std, "seed": self.seed}


class RingOfGaussians(GaussianMixture2D):
    """8 Gaussians on the unit circle, std 0.01."""

    name = "ring8"

    def __init__(self, size: int = 50_000, seed: int = 0, split: str = "train", modes: int = 8,
                 radius: float = 1.0, std: float = 0.01):
        angles = torch.arange(modes, dtype=torch.float64) * (2 * math.pi / modes)
        means = radius * torch.stack([angles.cos(), angles.sin()], 1)
        super().__init__(means, std, size, seed, split)


class GridOfGaussians(GaussianMixture2D):
    """25 Gaussians on {-4, -2, 0, 2, 4}^2, std 0.05."""

    name = "grid25"

    def __init__(self, size: int = 50_000, seed: int = 0, split: str = "train", std: float = 0.05):
        ticks = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0], dtype=torch.float64)
        means = torch.cartesian_prod(ticks, ticks)
        super().__init__(means, std, size, seed, split)


def is_toy(dataset) -> bool:
    return isinstance(dataset, GaussianMixture2D)


__all__ = ["GaussianMixture2D", "RingOfGaussians", "GridOfGaussians", "is_toy"]
