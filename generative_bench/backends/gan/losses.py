"""GAN objectives on discriminator logits (tiny callables, one per loss).

* hinge (Lim & Ye 2017; Miyato et al. 2018 eq. 16-17):
  L_D = E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))],   L_G = -E[D(G(z))].
* non-saturating (Goodfellow et al. 2014, with the logistic D loss written with softplus):
  L_D = E[softplus(-D(x))] + E[softplus(D(G(z)))],     L_G = E[softplus(-D(G(z)))].
  softplus(-l) = -log sigmoid(l), so these are the binary cross-entropies of the original GAN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from generative_bench.errors import InputError


class HingeLoss:
    name = "hinge"

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return -fake.mean()


class NonSaturatingLoss:
    name = "non_saturating"

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return F.softplus(-real).mean() + F.softplus(fake).mean()

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return F.softplus(-fake).mean()


LOSSES = {cls.name: cls for cls in (HingeLoss, NonSaturatingLoss)}


def get_loss(name: str):
    """The loss object registered under ``name`` (``hinge`` or ``non_saturating``)."""
    if name not in LOSSES:
        raise InputError(f"unknown GAN loss {name!r}; set model.backend.loss to one of {sorted(LOSSES)}")
    return LOSSES[name]()
