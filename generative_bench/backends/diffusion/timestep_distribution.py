"""Distributions over training timesteps, with importance weights that keep the loss unbiased.

* ``uniform``: t ~ U{0..T-1}, weight 1.
* ``loss-second-moment``: Nichol & Dhariwal (2021) Sec. 3.3 / Eq. 18: p_t proportional to
  sqrt(E[L_t^2]) over the last 10 losses seen at t, mixed with 0.1 % of the uniform
  distribution; uniform until every t has 10 losses. Each example's loss is weighted by
  1 / (T p_t). The loss history lives in buffers, so it is saved with the model and an
  interrupted run resumes exactly.

Both draw from the global torch RNG (saved and restored by the trainer's checkpoints).
"""

from __future__ import annotations

import torch
from torch import nn

from generative_bench.errors import InputError


class UniformTimesteps(nn.Module):
    """t ~ U{0..T-1} with unit weights."""

    def __init__(self, num_timesteps: int):
        super().__init__()
        self.num_timesteps = int(num_timesteps)

    def probabilities(self) -> torch.Tensor:
        return torch.full((self.num_timesteps,), 1.0 / self.num_timesteps, dtype=torch.float64)

    def sample(self, batch: int, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.randint(0, self.num_timesteps, (batch,)).to(device)
        return t, torch.ones(batch, device=device)

    def update(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        """Nothing to learn."""


class LossSecondMomentTimesteps(UniformTimesteps):
    """Importance sampling of t by the root mean square of its recent losses."""

    def __init__(self, num_timesteps: int, history_per_term: int = 10, uniform_prob: float = 0.001):
        super().__init__(num_timesteps)
        if not 0.0 <= uniform_prob <= 1.0:
            raise InputError(f"uniform_prob must be in [0, 1], got {uniform_prob}")
        self.history_per_term = int(history_per_term)
        self.uniform_prob = float(uniform_prob)
        self.register_buffer("loss_history", torch.zeros(self.num_timesteps, self.history_per_term, dtype=torch.float64))
        self.register_buffer("loss_counts", torch.zeros(self.num_timesteps, dtype=torch.long))

    @property
    def warmed_up(self) -> bool:
        return bool((self.loss_counts == self.history_per_term).all())

    def probabilities(self) -> torch.Tensor:
        if not self.warmed_up:
            return super().probabilities()
        w = self.loss_history.detach().cpu().pow(2).mean(-1).sqrt()
        w = w / w.sum()
        return w * (1.0 - self.uniform_prob) + self.uniform_prob / self.num_timesteps

    def sample(self, batch: int, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.probabilities()
        t = torch.multinomial(p, batch, replacement=True)
        weights = 1.0 / (self.num_timesteps * p[t])
        return t.to(device), weights.float().to(device)

    @torch.no_grad()
    def update(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        """Append each example's loss to the history of its timestep (oldest dropped when full)."""
        hist = self.loss_history.cpu().clone()
        counts = self.loss_counts.cpu().clone()
        h, c = hist.numpy(), counts.numpy()
        full = self.history_per_term
        for ti, li in zip(t.cpu().tolist(), losses.detach().double().cpu().tolist()):
            if c[ti] == full:
                h[ti, :-1] = h[ti, 1:].copy()
                h[ti, -1] = li
            else:
                h[ti, c[ti]] = li
                c[ti] += 1
        self.loss_history.copy_(hist)
        self.loss_counts.copy_(counts)


TIMESTEP_DISTRIBUTIONS = {"uniform": UniformTimesteps, "loss-second-moment": LossSecondMomentTimesteps}


def make_timestep_distribution(name: str, num_timesteps: int) -> UniformTimesteps:
    if name not in TIMESTEP_DISTRIBUTIONS:
        raise InputError(f"unknown timestep distribution {name!r}; choose one of {sorted(TIMESTEP_DISTRIBUTIONS)}")
    return TIMESTEP_DISTRIBUTIONS[name](num_timesteps)
