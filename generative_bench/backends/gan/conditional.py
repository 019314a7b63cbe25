"""Class conditioning for the GAN networks.

* :class:`ConditionalBatchNorm2d`: BatchNorm without its own affine transform followed by a
  per-class scale and shift, gamma_y * BN(x) + beta_y (de Vries et al. 2017; the conditional
  generator of Miyato & Koyama 2018). It subclasses ``nn.BatchNorm2d`` (``affine=False``), so
  :mod:`generative_bench.backends.gan.batchnorm` finds it by type like any BatchNorm layer: the
  running / batch / standing statistics modes apply to it unchanged.
* :class:`ProjectionHead`: the projection discriminator's class term <embed(y), phi(x)>
  (Miyato & Koyama 2018, eq. 3), added to the unconditional linear output psi(phi(x)).

Standing statistics of a conditional generator must be estimated with labels: the class
changes gamma/beta, hence every later layer's input, so statistics estimated without labels
(or with other labels) belong to a different input distribution. Give
``batchnorm.standing_statistics`` a ``latents`` callable that returns the pair ``(z, y)``
(classes drawn as in sampling, e.g. uniformly); the generator is then called as ``gen(z, y)``.
"""

from __future__ import annotations

import torch
from torch import nn

from generative_bench.backends.gan.nets_common import maybe_sn
from generative_bench.errors import InputError


class ConditionalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d(affine=False) then ``gamma[y] * x_hat + beta[y]``; gamma starts at 1, beta at 0.

    ``forward(x, y)`` with ``y`` int64 labels of shape (B,). The parameters are ``gamma.weight``
    and ``beta.weight``, each (num_classes, num_features); the running statistics are shared by
    all classes.
    """

    def __init__(self, num_features: int, num_classes: int, eps: float = 1e-5, momentum: float | None = 0.1):
        super().__init__(num_features, eps=eps, momentum=momentum, affine=False, track_running_stats=True)
        if int(num_classes) < 1:
            raise InputError(f"ConditionalBatchNorm2d needs num_classes >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.gamma = nn.Embedding(self.num_classes, num_features)
        self.beta = nn.Embedding(self.num_classes, num_features)
        nn.init.ones_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None:
            raise InputError("ConditionalBatchNorm2d needs the class labels y")
        out = super().forward(x)
        y = y.to(device=x.device, dtype=torch.long)
        return self.gamma(y)[:, :, None, None].to(out.dtype) * out + self.beta(y)[:, :, None, None].to(out.dtype)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_classes={self.num_classes}"


class ProjectionHead(nn.Module):
    """Projection term <embed(y), h> of Miyato & Koyama 2018 (eq. 3); ``forward(h, y) -> (B,)``.

    The embedding is an ``nn.Embedding(num_classes, features)``; with ``spectral=True`` it is
    spectrally normalised with ``torch.nn.utils.parametrizations.spectral_norm`` (``dim=0``:
    sigma is the largest singular value of the whole (num_classes, features) matrix, as in the
    reference SNEmbedID). Xavier-uniform initialisation, as in the reference code.
    """

    def __init__(self, features: int, num_classes: int, spectral: bool):
        super().__init__()
        if int(num_classes) < 1:
            raise InputError(f"ProjectionHead needs num_classes >= 1, got {num_classes}")
        embed = nn.Embedding(int(num_classes), int(features))
        nn.init.xavier_uniform_(embed.weight)
        self.embed = maybe_sn(embed, spectral)

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (self.embed(y.to(device=h.device, dtype=torch.long)).to(h.dtype) * h).sum(1)


def batch_norm_2d(num_features: int, num_classes: int) -> nn.BatchNorm2d:
    """``nn.BatchNorm2d`` for an unconditional net, :class:`ConditionalBatchNorm2d` otherwise."""
    return ConditionalBatchNorm2d(num_features, num_classes) if num_classes else nn.BatchNorm2d(num_features)


def apply_norm(norm: nn.Module, h: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """``norm(h, y)`` for a conditional BatchNorm, ``norm(h)`` for any other layer."""
    return norm(h, y) if isinstance(norm, ConditionalBatchNorm2d) else norm(h)


def check_labels(net: nn.Module, y: torch.Tensor | None, batch: int) -> torch.Tensor | None:
    """Labels as int64 (B,) for a conditional net (``net.num_classes > 0``; then required);
    ``None`` for an unconditional one (which must not get labels)."""
    name = type(net).__name__
    if not net.num_classes:
        if y is not None:
            raise InputError(f"{name} is unconditional (num_classes=0) but got class labels")
        return None
    if y is None:
        raise InputError(f"{name} is class-conditional (num_classes={net.num_classes}): pass the labels y")
    y = torch.as_tensor(y).long().reshape(-1)
    if len(y) != batch:
        raise InputError(f"{name}: got {len(y)} class labels for a batch of {batch}")
    return y


def check_num_classes(num_classes: int, name: str) -> int:
    if int(num_classes) < 0:
        raise InputError(f"{name}.num_classes must be >= 0, got {num_classes}")
    return int(num_classes)


__all__ = ["ConditionalBatchNorm2d", "ProjectionHead", "apply_norm", "batch_norm_2d",
           "check_labels", "check_num_classes"]
