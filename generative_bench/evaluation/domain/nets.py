"""Compact classifier nets whose penultimate layer serves as a domain feature space.

:class:`CompactResNet` is a small residual conv net in the spirit of the fast CIFAR-10 training
nets (Page 2018, "How to train your ResNet"; Jordan 2024, "94% on CIFAR-10 in 3.29 seconds",
arXiv:2404.00498): a 2x2 patch-whitening stem, then per stage ``conv3x3 -> maxpool2 -> BN ->
GELU`` followed by a residual unit ``x + GELU(BN(conv3x3(x)))``, a global max pool (the
``pool`` features) and a bias-free linear layer (the ``logits``) scaled by a fixed factor.

Every net of this module subclasses :class:`DomainNet`: it maps model-space images (float in
[-1, 1], NCHW) to ``(pool, logits)`` and exposes ``feature_dim`` / ``num_classes`` and the
keyword arguments that rebuild it (``arch_kwargs``), so a manifest can describe it exactly.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn


class DomainNet(nn.Module):
    """Base class: ``features(x) -> (pool, logits)``; ``forward(x) -> logits``."""

    feature_dim: int
    num_classes: int

    def __init__(self, **arch_kwargs: Any):
        super().__init__()
        self.arch_kwargs = dict(arch_kwargs)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)[1]

    def prepare(self, x: torch.Tensor) -> None:
        """Data-dependent initialisation from a model-space batch (default: nothing)."""


class _Stage(nn.Module):
    """``conv3x3 -> maxpool2 -> BN -> act``, then ``depth`` residual units ``x + act(BN(conv(x)))``."""

    def __init__(self, cin: int, cout: int, depth: int, residual: bool, bn_momentum: float):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout, momentum=bn_momentum)
        self.units = nn.ModuleList(
            nn.Sequential(nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout, momentum=bn_momentum))
            for _ in range(depth)
        )
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.bn(F.max_pool2d(self.conv(x), 2)))
        for unit in self.units:
            y = F.gelu(unit(x))
            x = x + y if self.residual else y
        return x


class CompactResNet(DomainNet):
    """Small residual net for 32x32 images (~1-2M parameters at widths (64, 256, 256)).

    Args:
        num_classes: classes of the training set.
        widths: channels of the three stages.
        depth: residual units per stage (each one 3x3 conv + BN + GELU).
        stem_width: channels of the 2x2 stem; ``2 * 3 * 2 * 2 = 24`` holds the whitening
            eigenvectors with both signs (see :meth:`prepare`).
        residual: add the unit input back (ResNet) or not (plain conv net).
        logit_scale: fixed multiplier of the logits (keeps high learning rates stable).
        bn_momentum: BatchNorm running-stat momentum.
        in_channels: image channels.
    """

    def __init__(self, num_classes: int = 10, widths: Sequence[int] = (64, 256, 256), depth: int = 1,
                 stem_width: int = 24, residual: bool = True, logit_scale: float = 0.125,
                 bn_momentum: float = 0.1, in_channels: int = 3):
        widths = [int(w) for w in widths]
        super().__init__(num_classes=int(num_classes), widths=widths, depth=int(depth), stem_width=int(stem_width),
                         residual=bool(residual), logit_scale=float(logit_scale), bn_momentum=float(bn_momentum),
                         in_channels=int(in_channels))
        if len(widths) < 1 or min(widths) < 1:
            raise ValueError(f"widths must be positive channel counts, got {widths}")
        self.num_classes = int(num_classes)
        self.feature_dim = widths[-1]
        self.logit_scale = float(logit_scale)
        self.stem = nn.Conv2d(in_channels, stem_width, 2, padding=0, bias=True)
        chans = [stem_width] + widths
        self.stages = nn.ModuleList(_Stage(chans[i], chans[i + 1], depth, residual, bn_momentum)
                                    for i in range(len(widths)))
        self.head = nn.Linear(widths[-1], num_classes, bias=False)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.gelu(self.stem(x))
        for stage in self.stages:
            x = stage(x)
        pool = torch.amax(x, dim=(2, 3))
        return pool, self.head(pool) * self.logit_scale

    @torch.no_grad()
    def prepare(self, x: torch.Tensor, eps: float = 5e-4) -> None:
        """Patch-whitening init of the stem (Jordan 2024, sec. 3.2): the 2x2 patch covariance's
        eigenvectors scaled by ``1/sqrt(eigenvalue + eps)``, with both signs; the stem is then frozen
        (its bias stays trainable)."""
        k = self.stem.kernel_size
        cin = self.stem.in_channels
        dim = cin * k[0] * k[1]
        if self.stem.out_channels != 2 * dim:
            raise ValueError(f"whitening init needs stem_width = 2 * {dim} = {2 * dim}, got {self.stem.out_channels}")
        patches = F.unfold(x.float(), k).transpose(1, 2).reshape(-1, dim).double()  # (N*L, C*kh*kw)
        cov = patches.T @ patches / len(patches)
        evals, evecs = torch.linalg.eigh(cov)
        w = (evecs.T / torch.sqrt(evals.clamp_min(0) + eps)[:, None]).flip(0)  # largest variance first
        w = torch.cat([w, -w]).reshape(self.stem.weight.shape)
        self.stem.weight.copy_(w.to(self.stem.weight.dtype))
        self.stem.weight.requires_grad_(False)


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def _flip_mean(net: DomainNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pool, logits = net.features(x)
    pool_f, logits_f = net.features(x.flip(-1))
    return (pool + pool_f) / 2, (logits + logits_f) / 2


@torch.no_grad()
def net_outputs(net: DomainNet, x_uint8: torch.Tensor, tta_flip: bool = True,
                device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 ``(pool, logits)`` of one uint8 NCHW batch in eval mode; with ``tta_flip`` both are
    the mean over the image and its mirror (flip test-time augmentation)."""
    device = torch.device(device) if device is not None else next(net.parameters()).device
    x = x_uint8.to(device).float().div_(127.5).sub_(1.0).contiguous(memory_format=torch.channels_last)
    was = net.training
    net.eval()
    try:
        pool, logits = _flip_mean(net, x) if tta_flip else net.features(x)
    finally:
        net.train(was)
    return pool.float(), logits.float()


@torch.no_grad()
def predict(net: DomainNet, x_uint8: torch.Tensor, batch_size: int = 500, tta_flip: bool = True,
            device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``net_outputs`` over a whole uint8 tensor in batches; returns CPU float32 (pool, logits)."""
    pools, logits = [], []
    for i in range(0, len(x_uint8), batch_size):
        p, lg = net_outputs(net, x_uint8[i:i + batch_size], tta_flip, device)
        pools.append(p.cpu())
        logits.append(lg.cpu())
    return torch.cat(pools), torch.cat(logits)


__all__ = ["CompactResNet", "DomainNet", "count_parameters", "net_outputs", "predict"]
