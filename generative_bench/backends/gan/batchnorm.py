"""Which BatchNorm statistics a generator uses when sampling.

A generator trained with BatchNorm saw batch statistics during training. At sampling time there
are three choices (``bn_stats``):

* ``"standing"`` (default): statistics re-estimated for the weights being sampled from by
  running ``batches`` x ``batch_size`` fixed-seed latents through the generator in train mode and
  averaging (BigGAN's "standing statistics", Brock et al. 2019). Needed for an EMA generator,
  whose copied running statistics belong to the online weights, not the averaged ones. The
  estimate is deterministic, cached until the weights change, and never written into the
  model's state (its running buffers are swapped in for the forward pass and restored).
* ``"running"``: the BN running averages accumulated in training (plain ``eval()``).
* ``"batch"``: statistics of each sampling batch (train-mode BN without touching the buffers);
  samples then depend on the sampling batch size.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from generative_bench.errors import InputError

BN_MODES = ("standing", "running", "batch")
Stats = dict[str, tuple[torch.Tensor, torch.Tensor]]


def batchnorms(module: nn.Module) -> list[tuple[str, _BatchNorm]]:
    return [(n, m) for n, m in module.named_modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


def has_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, _BatchNorm) for m in module.modules())


def weights_key(module: nn.Module) -> tuple:
    """Changes whenever a parameter is updated in place (optimizer step, EMA, load_state_dict)."""
    return tuple((p.data_ptr(), p._version) for p in module.parameters())


@torch.no_grad()
def standing_statistics(gen: nn.Module, latents: Callable[[int, torch.Generator], torch.Tensor | tuple],
                        batches: int, batch_size: int, seed: int = 0) -> Stats:
    """Cumulative-average BN statistics of ``gen`` over ``batches`` fixed-seed latent batches.

    ``latents(n, generator)`` returns the generator's input, or a tuple of inputs (latents and
    labels of a class-conditional generator)."""
    bns = batchnorms(gen)
    saved = {n: (m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(), m.momentum, m.training)
             for n, m in bns}
    g = torch.Generator().manual_seed(int(seed))
    try:
        for _, m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average
            m.train()
        for _ in range(int(batches)):
            inputs = latents(int(batch_size), g)
            gen(*inputs) if isinstance(inputs, tuple) else gen(inputs)
        return {n: (m.running_mean.clone(), m.running_var.clone()) for n, m in bns}
    finally:
        for n, m in bns:
            mean, var, count, momentum, training = saved[n]
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(count)
            m.momentum = momentum
            m.train(training)


@contextmanager
def batchnorm_mode(gen: nn.Module, mode: str, standing: Stats | None = None) -> Iterator[None]:
    """Temporarily make ``gen``'s BatchNorm layers use ``mode`` statistics (see module doc)."""
    if mode not in BN_MODES:
        raise InputError(f"bn_stats must be one of {BN_MODES}, got {mode!r}")
    bns = batchnorms(gen)
    if not bns:
        yield
        return
    if mode == "running":
        saved = [(m, m.training) for _, m in bns]
        for _, m in bns:
            m.eval()
        try:
            yield
        finally:
            for m, training in saved:
                m.train(training)
        return
    if mode == "batch":
        saved = [(m, m.training) for _, m in bns]
        for _, m in bns:
            m.train()
            m.track_running_stats = False  # batch statistics, running buffers untouched
        try:
            yield
        finally:
            for m, training in saved:
                m.track_running_stats = True
                m.train(training)
        return
    if standing is None:
        raise InputError("bn_stats='standing' needs the standing statistics")
    saved_buffers = {n: (m.running_mean.clone(), m.running_var.clone()) for n, m in bns}
    with torch.no_grad():
        for n, m in bns:
            m.running_mean.copy_(standing[n][0])
            m.running_var.copy_(standing[n][1])
    modes = [(m, m.training) for _, m in bns]
    for _, m in bns:
        m.eval()
    try:
        yield
    finally:
        with torch.no_grad():
            for n, m in bns:
                m.running_mean.copy_(saved_buffers[n][0])
                m.running_var.copy_(saved_buffers[n][1])
        for m, training in modes:
            m.train(training)
