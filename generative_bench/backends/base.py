"""The backend contract shared by the GAN, the VAE, DDPM and improved DDPM.

Every backend is one ``nn.Module`` with the same surface:

* ``training_step(x, ctx)``: one optimisation step on a batch ``x`` in model space (float in
  [-1, 1] for images). The backend computes its losses and calls ``ctx.optimize(name, loss)``
  for each of its optimizers (the GAN calls it for the discriminator and the generator); the
  generic trainer owns AMP, clipping, NaN guards, EMA, checkpoints and logs.
* ``sample(n, generator=..., **sampling)``: the common sampler interface. Returns uint8 NCHW for
  image backends and float32 ``(n, d)`` for vector (toy) data. Sampling options are the
  backend's own (diffusion: steps / respacing / ddim eta; VAE: temperature).
* ``nll(x)``: negative log-likelihood in bits/dim per example as an :class:`NLLResult`, or
  :class:`~generative_bench.errors.NLLNotDefined` for families without a likelihood (GAN).
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator, Sequence

import torch
from torch import nn

from generative_bench.data.codec import to_uint8
from generative_bench.errors import NLLNotDefined


@dataclass
class OptimGroup:
    """Parameters of one optimizer and the hyper-parameters this backend needs for it.

    ``overrides`` take precedence over ``train.optim`` (e.g. SNGAN's Adam betas (0, 0.9)).
    """

    params: list[nn.Parameter]
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class NLLResult:
    """Per-example NLL in bits/dim and the name of the bound it is.

    ``bound`` says exactly which quantity ``bpd`` is, e.g. ``"IWAE bound, k=64"`` or
    ``"full variational bound (prior + KL terms + discretized decoder), T=1000"``; ``terms``
    holds optional per-example components (bits/dim) such as prior/kl/decoder.
    """

    bpd: torch.Tensor
    bound: str
    terms: dict[str, torch.Tensor] = field(default_factory=dict)


class StepContext(abc.ABC):
    """What the trainer hands to ``Backend.training_step`` (implemented in training/step.py)."""

    step: int

    @abc.abstractmethod
    def optimize(self, name: str, loss: torch.Tensor) -> None:
        """zero_grad, backward (AMP-scaled), clip, finite-check and step optimizer ``name``."""

    @abc.abstractmethod
    def next_batch(self) -> torch.Tensor:
        """Another batch in model space (for backends that take several per step, e.g. n_dis)."""

    @abc.abstractmethod
    def autocast(self):
        """Context manager for mixed precision forward passes (a no-op on CPU / when disabled)."""


class Trainable(nn.Module, abc.ABC):
    """What the generic trainer needs: optimizer groups and a training step (backends, classifiers)."""

    family: ClassVar[str] = "generic"
    #: parameter-name prefixes that the trainer's EMA does not average (e.g. the discriminator).
    ema_exclude: ClassVar[tuple[str, ...]] = ()

    def optimizer_groups(self) -> dict[str, OptimGroup]:
        """Name -> parameters (+ overrides) for each optimizer; one ``"model"`` by default."""
        return {"model": OptimGroup(list(self.parameters()))}

    @abc.abstractmethod
    def training_step(self, batch: Any, ctx: StepContext) -> dict[str, float]:
        """One optimisation step; returns scalars to log (losses, diagnostics)."""


class Backend(Trainable):
    """Base class of every generator backend (see module docstring for the contract)."""

    #: False for families with no likelihood: ``nll`` raises NLLNotDefined, tables show "—".
    nll_defined: ClassVar[bool] = True

    def __init__(self, data_shape: Sequence[int]):
        super().__init__()
        self.data_shape = tuple(int(s) for s in data_shape)

    # ----------------------------------------------------------------- properties
    @property
    def is_image(self) -> bool:
        return len(self.data_shape) == 3

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    @property
    def num_dims(self) -> int:
        return math.prod(self.data_shape)

    # ----------------------------------------------------------------- training
    @abc.abstractmethod
    def training_step(self, x: torch.Tensor, ctx: StepContext) -> dict[str, float]:
        """One optimisation step on model-space ``x``; returns scalars to log."""

    # ----------------------------------------------------------------- sampling
    def default_sampling(self) -> dict[str, Any]:
        """The sampler settings used when none are given (recorded in the protocol fingerprint)."""
        return {}

    def sampler_settings(self, **sampling: Any) -> dict[str, Any]:
        """Defaults merged with ``sampling``: exactly what ``sample`` will use."""
        settings = dict(self.default_sampling())
        unknown = set(sampling) - set(settings)
        if unknown:
            raise TypeError(
                f"{type(self).__name__}.sample got unknown sampling option(s) {sorted(unknown)}; "
                f"valid options: {sorted(settings)}"
            )
        settings.update(sampling)
        return settings

    @abc.abstractmethod
    def sample_model_space(
        self, n: int, generator: torch.Generator | None = None, **sampling: Any
    ) -> torch.Tensor:
        """``n`` samples in model space (float, [-1, 1] for images), on ``self.device``."""

    def sample_batches(
        self, n: int, generator: torch.Generator | None = None, batch_size: int = 256, **sampling: Any
    ) -> Iterator[torch.Tensor]:
        """Yield boundary-typed sample batches (uint8 NCHW images / float vectors) summing to n."""
        settings = self.sampler_settings(**sampling)
        was_training = self.training
        self.eval()
        try:
            done = 0
            while done < n:
                m = min(batch_size, n - done)
                with torch.inference_mode():
                    x = self.sample_model_space(m, generator=generator, **settings)
                yield to_uint8(x).cpu() if self.is_image else x.float().cpu()
                done += m
        finally:
            self.train(was_training)

    def sample(
        self, n: int, generator: torch.Generator | None = None, batch_size: int = 256, **sampling: Any
    ) -> torch.Tensor:
        """The common sampler interface: ``n`` samples, uint8 NCHW for images."""
        return torch.cat(list(self.sample_batches(n, generator, batch_size, **sampling)))

    # ----------------------------------------------------------------- likelihood
    def nll(self, x: torch.Tensor, generator: torch.Generator | None = None, **options: Any) -> NLLResult:
        """Per-example NLL (bits/dim) of model-space ``x``; NLLNotDefined where there is none."""
        raise NLLNotDefined(f"{self.family} backends define no likelihood")

    # ----------------------------------------------------------------- description
    def describe(self) -> dict[str, Any]:
        cls = type(self)
        return {
            "family": self.family,
            "class": f"{cls.__module__}.{cls.__qualname__}",
            "parameters": sum(p.numel() for p in self.parameters()),
            "data_shape": list(self.data_shape),
            "nll_defined": self.nll_defined,
        }
