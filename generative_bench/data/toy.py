"""Embedded 2-D toy mixtures with exact densities (offline default data).

* ring: 8 Gaussians evenly spaced on a circle of radius 1, std 0.01 (Metz et al. 2017).
* grid: 25 Gaussians on {-4, -2, 0, 2, 4}^2, std 0.05 (PacGAN, Lin et al. 2018).

Both are equal-weight isotropic mixtures p(x) = 1/K sum_k N(x; mu_k, s^2 I), so the data NLL is
known exactly and serves as the floor for every model's bits/dim. Each mode is one class: the
label of a point is its component k, with the exact class-conditional density
p(x | y = k) = N(x; mu_k, s^2 I) and class posterior p(y | x) (``class_log_prob``,
``class_posterior_log_prob``).
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

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

    @property
    def num_classes(self) -> int:
        return self.num_modes

    def class_log_prob(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Exact log p(x | y) = log N(x; mu_y, s^2 I) in nats per point (float64)."""
        x = x.double()
        mu = self.means.to(x.device)[torch.as_tensor(y, device=x.device).long()]
        return -0.5 * ((x - mu) ** 2).sum(1) / self.std**2 - math.log(2 * math.pi * self.std**2)

    def class_posterior_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(y | x) for every class, shape (N, K) (float64)."""
        d2 = torch.cdist(x.double(), self.means.to(x.device)) ** 2
        return torch.log_softmax(-0.5 * d2 / self.std**2, dim=1)

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

    def describe(self) -> dict[str, Any]:
        # the first mean is (radius, 0): the ring is fully described by modes, radius and std
        return {**super().describe(), "radius": float(self.means[0, 0])}


class GridOfGaussians(GaussianMixture2D):
    """25 Gaussians on {-4, -2, 0, 2, 4}^2, std 0.05."""

    name = "grid25"

    def __init__(self, size: int = 50_000, seed: int = 0, split: str = "train", std: float = 0.05):
        ticks = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0], dtype=torch.float64)
        means = torch.cartesian_prod(ticks, ticks)
        super().__init__(means, std, size, seed, split)


def is_toy(dataset) -> bool:
    return isinstance(dataset, GaussianMixture2D)


#: bounds a description's parameters must lie in to be rebuilt
MAX_MODES = 1000
MAX_ABS_PARAM = 1e6


def _number(desc: Mapping[str, Any], key: str, default: float) -> float | None:
    """``desc[key]`` as a finite float (``default`` when absent); None when it is not a plain number."""
    value = desc.get(key, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and abs(value) < MAX_ABS_PARAM else None


def mixture_from_description(desc: Mapping[str, Any] | None, size: int = 64) -> GaussianMixture2D | None:
    """Rebuild a ring or grid mixture from its ``describe()`` output (e.g. a record's ``data``), or None.

    Only the two known families are rebuilt, from plain numbers: a ring (``ring8``-style name;
    ``modes`` 1..1000, ``radius`` and ``std``) and the 5x5 grid (``grid25``; ``std``). Missing
    parameters take the class defaults; a description with any other name, a parameter that is
    not a finite number in range (``0 < std``, ``|radius|`` and ``std`` below 1e6) or a mode
    count the family cannot have gives None. ``size`` points are drawn (the density is exact
    whatever the size).
    """
    if not isinstance(desc, Mapping):
        return None
    name = desc.get("name") if isinstance(desc.get("name"), str) else desc.get("dataset")
    if not isinstance(name, str):
        return None
    name = name.strip().lower()
    std_default = 0.01 if name.startswith("ring") else 0.05
    std = _number(desc, "std", std_default)
    if std is None or std <= 0:
        return None
    modes = _number(desc, "modes", 8 if name.startswith("ring") else 25)
    if modes is None or modes != int(modes) or not 1 <= modes <= MAX_MODES:
        return None
    if re.fullmatch(r"ring\d*", name):
        radius = _number(desc, "radius", 1.0)
        if radius is None:
            return None
        return RingOfGaussians(size=size, modes=int(modes), radius=radius, std=std)
    if re.fullmatch(r"grid\d*", name):
        if int(modes) != 25:
            return None
        return GridOfGaussians(size=size, std=std)
    return None


__all__ = ["GaussianMixture2D", "RingOfGaussians", "GridOfGaussians", "is_toy", "mixture_from_description"]
