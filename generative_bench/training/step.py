"""The trainer's side of ``Backend.training_step``: AMP, clipping and NaN guards per optimizer."""

from __future__ import annotations

import contextlib
import math
from typing import Callable

import torch

from generative_bench.backends.base import StepContext
from generative_bench.distributed import average_gradients
from generative_bench.errors import NonFiniteLossError


class TrainerStepContext(StepContext):
    """Implements ``optimize(name, loss)``: zero_grad -> scaled backward -> unscale -> clip -> step."""

    def __init__(self, optimizers: dict[str, torch.optim.Optimizer], scaler: torch.amp.GradScaler,
                 grad_clip: float | None, amp_dtype: torch.dtype | None, device_type: str,
                 next_batch: Callable[[], torch.Tensor]):
        self.optimizers = optimizers
        self.scaler = scaler
        self.grad_clip = grad_clip
        self.amp_dtype = amp_dtype
        self.device_type = device_type
        self._next_batch = next_batch
        self.step = 0
        self.grad_norms: dict[str, float] = {}

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.amp_dtype)

    def next_batch(self) -> torch.Tensor:
        return self._next_batch()

    def optimize(self, name: str, loss: torch.Tensor) -> None:
        if name not in self.optimizers:
            raise KeyError(f"backend asked for optimizer {name!r}; it declared {sorted(self.optimizers)}")
        if not torch.isfinite(loss.detach()).all():
            raise NonFiniteLossError(
                f"step {self.step}: loss of optimizer {name!r} is {loss.detach().float().mean().item()}. "
                "Training stopped; the last good checkpoint is kept. Fix: lower train.optim.lr, set "
                "train.grad_clip, or check the data for NaN"
            )
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
        average_gradients(params)  # data-parallel: mean over ranks (no-op in one process)
        if self.grad_clip is not None or not self.scaler.is_enabled():
            self.scaler.unscale_(opt)
            max_norm = self.grad_clip if self.grad_clip is not None else math.inf
            norm = torch.nn.utils.clip_grad_norm_(params, max_norm) if params else torch.tensor(0.0)
            norm = float(norm)
            self.grad_norms[name] = norm
            if not math.isfinite(norm) and not self.scaler.is_enabled():
                raise NonFiniteLossError(
                    f"step {self.step}: gradient norm of optimizer {name!r} is {norm}. Training stopped; the "
                    "last good checkpoint is kept. Fix: lower train.optim.lr or set train.grad_clip"
                )
        self.scaler.step(opt)  # skipped by the scaler when fp16 gradients overflowed
