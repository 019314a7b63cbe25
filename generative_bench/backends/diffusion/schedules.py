"""Noise schedules beta_1..beta_T (float64).

* ``linear``: Ho et al. (2020), betas linearly spaced in [1e-4, 0.02] for T = 1000; for other T
  both ends are multiplied by 1000 / T so the total noise stays comparable (Nichol & Dhariwal
  2021, Sec. 3.2 / improved-diffusion ``get_named_beta_schedule``).
* ``cosine``: Nichol & Dhariwal (2021) Eq. 17, alpha_bar(t) = cos^2(((t/T + s) / (1 + s)) * pi/2)
  with s = 0.008, beta_t = min(1 - alpha_bar(t) / alpha_bar(t-1), 0.999).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from generative_bench.errors import InputError


def linear_betas(num_timesteps: int) -> torch.Tensor:
    """Ho et al. linear schedule, rescaled by 1000 / T (needs T > 20 so that beta_T < 1)."""
    scale = 1000.0 / num_timesteps
    if scale * 0.02 >= 1.0:
        raise InputError(f"the linear schedule needs T > 20 (its last beta, 0.02 * 1000 / T, must stay below 1); "
                         f"got T={num_timesteps}: use more timesteps or schedule=cosine")
    return torch.linspace(scale * 1e-4, scale * 0.02, num_timesteps, dtype=torch.float64)


def betas_from_alpha_bar(num_timesteps: int, alpha_bar: Callable[[float], float],
                         max_beta: float = 0.999) -> torch.Tensor:
    """beta_i = min(1 - alpha_bar((i+1)/T) / alpha_bar(i/T), max_beta) for i = 0..T-1."""
    betas = [min(1.0 - alpha_bar((i + 1) / num_timesteps) / alpha_bar(i / num_timesteps), max_beta)
             for i in range(num_timesteps)]
    return torch.tensor(betas, dtype=torch.float64)


def cosine_alpha_bar(t: float, s: float = 0.008) -> float:
    """Nichol & Dhariwal Eq. 17 (unnormalised; the ratio in ``betas_from_alpha_bar`` cancels f(0))."""
    return math.cos((t + s) / (1.0 + s) * math.pi / 2.0) ** 2


def cosine_betas(num_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Cosine schedule with offset ``s`` and betas clipped at ``max_beta``."""
    return betas_from_alpha_bar(num_timesteps, lambda t: cosine_alpha_bar(t, s), max_beta)


SCHEDULES: dict[str, Callable[[int], torch.Tensor]] = {"linear": linear_betas, "cosine": cosine_betas}


def make_betas(name: str, num_timesteps: int) -> torch.Tensor:
    """Betas of the named schedule; a clear error for unknown names or bad T."""
    if name not in SCHEDULES:
        raise InputError(f"unknown noise schedule {name!r}; choose one of {sorted(SCHEDULES)}")
    if int(num_timesteps) < 1:
        raise InputError(f"diffusion timesteps must be >= 1, got {num_timesteps}")
    return SCHEDULES[name](int(num_timesteps))
