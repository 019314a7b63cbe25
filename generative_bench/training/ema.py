"""Exponential moving average of weights (Polyak averaging), kept as a full copy of the backend."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """``shadow = d * shadow + (1 - d) * param`` after every step.

    With ``warmup=True`` the decay is ``min(decay, (1 + n) / (10 + n))`` (TensorFlow's
    ``num_updates`` rule), so short runs are not dominated by the initial weights. Parameters
    whose names start with one of ``exclude`` (e.g. a GAN's discriminator) are copied, not
    averaged; buffers are copied.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, warmup: bool = True, exclude: tuple[str, ...] = ()):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"train.ema_decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.exclude = tuple(exclude)
        self.shadow = copy.deepcopy(model).eval()
        for p in self.shadow.parameters():
            p.requires_grad_(False)
        self.num_updates = 0

    def current_decay(self) -> float:
        if self.warmup:
            return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        return self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        src = dict(model.named_parameters())
        for name, p in self.shadow.named_parameters():
            if self.exclude and name.startswith(self.exclude):
                p.copy_(src[name])
            else:
                p.lerp_(src[name].detach().to(p.dtype), 1.0 - d)
        for b_shadow, b in zip(self.shadow.buffers(), model.buffers()):
            b_shadow.copy_(b)
        self.num_updates += 1

    def state_dict(self) -> dict:
        return {"shadow": self.shadow.state_dict(), "num_updates": self.num_updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.shadow.load_state_dict(state["shadow"])
        self.num_updates = int(state["num_updates"])
