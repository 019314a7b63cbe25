"""The domain classifier as a :class:`~generative_bench.backends.base.Trainable`.

The project's generic trainer runs it like any backend: ``BatchStream(..., labels=y)`` yields
``(x_model_space, y)`` pairs (with the stream's seeded horizontal flips) and
:meth:`Classifier.training_step` adds random translation (reflect padding, a per-image random
crop) drawn from the global torch RNG, so the trainer's exact resume also covers augmentation.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn.functional as F

from generative_bench.backends.base import OptimGroup, StepContext, Trainable
from generative_bench.errors import InputError
from generative_bench.evaluation.domain.nets import DomainNet


def random_translate(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Shift each image by an independent integer offset in [-pad, pad]^2 (reflect-padded crop)."""
    if pad <= 0:
        return x
    n, c, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (n,), device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None])[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None])[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return xp[batch, chan, rows, cols]


class Classifier(Trainable):
    """Cross-entropy training of a :class:`DomainNet` on labelled images.

    Args:
        net: the classifier net.
        label_smoothing: cross-entropy label smoothing (0 keeps the softmax sharp, which the
            classifier score -- the Inception-Score analogue -- relies on).
        translate: maximal random shift in pixels (0 disables).
        cpu_autocast: ``"bf16"`` runs forward passes in bfloat16 autocast on CPU (oneDNN/AMX
            kernels; several times faster on recent Xeons) or ``"off"``; on CUDA the trainer's
            ``train.amp`` applies.
    """

    family = "classifier"

    def __init__(self, net: DomainNet, label_smoothing: float = 0.0, translate: int = 2, cpu_autocast: str = "off"):
        super().__init__()
        if cpu_autocast not in ("off", "bf16"):
            raise InputError(f"classifier.cpu_autocast must be 'off' or 'bf16', got {cpu_autocast!r}")
        if not isinstance(net, DomainNet):
            raise InputError(f"extractor.net must build a DomainNet, got {type(net).__name__}")
        self.net = net.to(memory_format=torch.channels_last)
        self.label_smoothing = float(label_smoothing)
        self.translate = int(translate)
        self.cpu_autocast = cpu_autocast

    def optimizer_groups(self) -> dict[str, OptimGroup]:
        return {"model": OptimGroup([p for p in self.parameters() if p.requires_grad])}

    def _autocast(self, ctx: StepContext, device: torch.device):
        if device.type == "cpu":
            if self.cpu_autocast == "bf16":
                return torch.autocast("cpu", dtype=torch.bfloat16)
            return contextlib.nullcontext()
        return ctx.autocast()

    def training_step(self, batch: Any, ctx: StepContext) -> dict[str, float]:
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise InputError("the classifier trains on (images, labels) batches: build the BatchStream with labels=")
        x, y = batch
        x = random_translate(x, self.translate).contiguous(memory_format=torch.channels_last)
        with self._autocast(ctx, x.device):
            logits = self.net(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)
        ctx.optimize("model", loss)
        with torch.no_grad():
            acc = (logits.argmax(1) == y).float().mean()
        return {"loss": float(loss.detach()), "train_acc": float(acc)}


__all__ = ["Classifier", "random_translate"]
