"""NLL of exact-likelihood backends (the flow and the autoregressive model) in bits/dim.

Both compute log p(x | y) exactly, so a class-conditional model's marginal likelihood is exact
too: -log p(x) = -log sum_y p(y) p(x | y) with uniform p(y), a logsumexp over the classes
(``condition="marginal"``, K times the cost), or -log p(x | y) at the true class
(``condition="label"``). :func:`exact_nll` checks the input, runs the per-class scores and
converts nats per example to bits per dimension.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from generative_bench.errors import InputError

NLL_CONDITIONS = ("marginal", "label")

#: ``score(x, y) -> log p(x | y)`` in nats per example (``y`` None for an unconditional model)
Score = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


def check_model_input(backend, x: torch.Tensor) -> torch.Tensor:
    """Model-space float ``x`` of the backend's shape as float32 on its device; a clear error otherwise."""
    name = type(backend).__name__
    if not isinstance(x, torch.Tensor) or not torch.is_floating_point(x):
        raise InputError(f"{name}.nll expects model-space float input; convert uint8 images with "
                         "generative_bench.data.codec.to_model_space")
    if tuple(x.shape[1:]) != tuple(backend.data_shape):
        raise InputError(f"{name}.nll: expected shape (N, {', '.join(map(str, backend.data_shape))}), "
                         f"got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise InputError(f"{name}.nll: input contains NaN/Inf")
    if backend.is_image and x.abs().max() > 1.0 + 1e-4:
        raise InputError(f"{name}.nll: images must be in model space [-1, 1], got max |x| = "
                         f"{x.abs().max().item():.3g}; convert uint8 with to_model_space")
    return x.to(backend.device, torch.float32)


def exact_nll(backend, score: Score, x: torch.Tensor, labels: torch.Tensor | None,
              condition: str = "marginal") -> torch.Tensor:
    """Per-example -log2 p(x) / D (or -log2 p(x | y) / D with ``condition="label"``)."""
    if condition not in NLL_CONDITIONS:
        raise InputError(f"model.nll.condition must be one of {list(NLL_CONDITIONS)}, got {condition!r}")
    x = check_model_input(backend, x)
    if not backend.conditional:
        log_p = score(x, None)
    elif condition == "label":
        labels = backend.check_labels(labels, len(x))
        if labels is None:
            raise InputError("model.nll.condition=label needs the data's labels")
        log_p = score(x, labels.to(x.device))
    else:
        per_class = torch.stack([score(x, torch.full((len(x),), c, device=x.device, dtype=torch.long))
                                 for c in range(backend.num_classes)])
        log_p = torch.logsumexp(per_class, dim=0) - math.log(backend.num_classes)
    return -log_p / (backend.num_dims * math.log(2.0))


def condition_name(backend, condition: str) -> str:
    """What a conditional model's NLL is of (empty for an unconditional model)."""
    if not backend.conditional:
        return ""
    return ("; marginal -log sum_y p(y) p(x|y), uniform p(y)" if condition == "marginal"
            else "; conditional -log p(x|y) at the true class")


__all__ = ["NLL_CONDITIONS", "check_model_input", "condition_name", "exact_nll"]
