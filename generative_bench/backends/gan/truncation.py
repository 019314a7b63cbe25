"""The truncation trick (Brock et al. 2019, Sec. 3.1): latents from a truncated standard normal.

``psi`` in (0, 1] is the share of each coordinate's standard-normal mass that is kept: the
threshold is tau = Phi^{-1}((1 + psi) / 2), so P(|z| <= tau) = psi, and entries with |z| > tau
are redrawn until none is left (psi = 1: tau = inf, plain sampling).
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any, Sequence

import torch

from generative_bench.errors import InputError


def _check_psi(psi: float) -> float:
    try:
        value = float(psi)
    except (TypeError, ValueError):
        raise InputError(f"truncation psi must be a number in (0, 1], got {psi!r}") from None
    if not 0.0 < value <= 1.0:
        raise InputError(f"truncation psi must be in (0, 1] (1 = no truncation), got {psi!r}")
    return value


def truncation_threshold(psi: float) -> float:
    """tau = Phi^{-1}((1 + psi) / 2), the |z| bound keeping mass ``psi`` of N(0, 1); inf for psi = 1."""
    psi = _check_psi(psi)
    if psi == 1.0:
        return math.inf
    return NormalDist().inv_cdf((1.0 + psi) / 2.0)


def truncated_latents(noise: Any, shape: Sequence[int], psi: float) -> torch.Tensor:
    """``noise.randn(shape)`` with every entry |z| > tau redrawn from ``noise`` until none is left.

    Every round draws a full ``shape`` tensor and each entry still out of range takes its value
    from the new draw at the same position, so with per-image noise (``ImageNoise``) an image's
    latents depend only on its own generator. The number of rounds is the batch's maximum, so
    an image's generator may be advanced past the draws its latents used; draw anything else an
    image needs from its generator before its latents. psi = 1 returns the first draw unchanged.
    """
    tau = truncation_threshold(psi)
    z = noise.randn(tuple(int(s) for s in shape))
    if math.isinf(tau):
        return z
    out = z.abs() > tau
    while bool(out.any()):
        z = torch.where(out, noise.randn(tuple(z.shape)).to(z.device), z)
        out = z.abs() > tau
    return z


__all__ = ["truncated_latents", "truncation_threshold"]
