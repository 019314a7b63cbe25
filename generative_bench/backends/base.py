"""The backend contract shared by the GAN, the VAE, DDPM and improved DDPM.

Every backend is one ``nn.Module`` with the same surface:

* ``training_step(batch, ctx)``: one optimisation step on a batch in model space (float in
  [-1, 1] for images): ``x``, or ``(x, labels)`` for class-conditional backends
  (``num_classes > 0``; :func:`split_batch` unpacks both). The backend computes its losses and
  calls ``ctx.optimize(name, loss)`` for each of its optimizers (the GAN calls it for the
  discriminator and the generator); the generic trainer owns AMP, clipping, NaN guards, EMA,
  checkpoints and logs.
* the sampler contract of :mod:`generative_bench.sampler` (``resolve_settings``, ``draw``,
  ``network_evaluations``, ``describe``), built here on one method per backend,
  ``sample_model_space(n, noise, labels=None, **settings)``, which takes every random number
  from ``noise`` (one generator per image, so samples do not depend on the batch);
* ``sample(n, generator=None, labels=None, seed=None, **sampling)``: the common sampler
  interface. Returns uint8 NCHW for image backends and float32 ``(n, d)`` for vector (toy)
  data; conditional backends return ``(samples, labels)``, drawing the classes uniformly
  unless ``labels`` are given. Sampling options are the backend's own (diffusion: steps /
  respacing / ddim eta / guidance; VAE: temperature; GAN: truncation).
* ``nll(x)``: negative log-likelihood in bits/dim per example as an :class:`NLLResult`, or
  :class:`~generative_bench.errors.NLLNotDefined` for families without a likelihood (GAN).
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import torch
from torch import nn

from generative_bench.data.codec import to_uint8
from generative_bench.errors import InputError, NLLNotDefined
from generative_bench.sampler import (DEFAULT_CHUNK, ImageNoise, SampleBatch, check_range, image_seed,
                                      seed_from_generator)


def split_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(x, labels)`` of a training batch that is ``x`` or ``(x, labels)``."""
    if isinstance(batch, (tuple, list)):
        x, y = batch
        return x, y
    return batch, None


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


def finite_knob(owner: str, name: str, value: Any, neutral: Any) -> float:
    """A fidelity–diversity knob's value as a float, or a clear error: a knob is a finite real number
    (NaN or infinity would give all-NaN or degenerate samples without a word)."""
    import math

    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise InputError(f"{owner} sampling option {name}={value!r} must be a finite number (its neutral value is "
                         f"{neutral}); set model.sampling.{name} to a number")
    return float(value)


class Backend(Trainable):
    """Base class of every generator backend (see module docstring for the contract)."""

    #: False for families with no likelihood: ``nll`` raises NLLNotDefined, tables show "—".
    nll_defined: ClassVar[bool] = True
    #: why there is no NLL (the record's reason, the table's "—" footnote) when nll_defined is False
    nll_note: ClassVar[str] = "implicit model, no likelihood"
    #: the family's name in reports (a model preset's ``display_name`` names one configuration)
    display_name: ClassVar[str] = ""
    #: the symbols of the sampling knobs (:meth:`knobs`) in figures and captions, e.g. ψ for truncation
    KNOB_SYMBOLS: ClassVar[dict[str, str]] = {}

    def __init__(self, data_shape: Sequence[int], num_classes: int = 0):
        super().__init__()
        self.data_shape = tuple(int(s) for s in data_shape)
        if int(num_classes) < 0:
            raise InputError(f"num_classes must be >= 0 (0 = unconditional), got {num_classes}")
        #: classes of a class-conditional backend; 0 = unconditional
        self.num_classes = int(num_classes)

    # ----------------------------------------------------------------- properties
    @property
    def is_image(self) -> bool:
        return len(self.data_shape) == 3

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    @property
    def name(self) -> str:
        return self.family

    @property
    def image_shape(self) -> tuple[int, ...]:
        """The shape of one sample (the sampler contract's name for ``data_shape``)."""
        return self.data_shape

    def check_count(self, n: int) -> None:
        """A trained model draws any number of samples."""

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
    def training_step(self, batch: Any, ctx: StepContext) -> dict[str, float]:
        """One optimisation step on a model-space batch (``x`` or ``(x, labels)``); returns scalars to log."""

    def check_labels(self, labels: torch.Tensor | None, n: int | None = None) -> torch.Tensor | None:
        """``labels`` as a long tensor of valid classes (or None); a clear error otherwise."""
        if labels is None:
            return None
        if not self.conditional:
            raise InputError(f"{type(self).__name__} is unconditional (num_classes=0) and takes no labels; "
                             "set model.backend.num_classes to train a class-conditional model")
        labels = torch.as_tensor(labels).long().flatten()
        if n is not None and len(labels) != n:
            raise InputError(f"{len(labels)} labels given for {n} samples")
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise InputError(f"labels must be class indices in [0, {self.num_classes}), got values "
                             f"{int(labels.min())}..{int(labels.max())}")
        return labels

    # ----------------------------------------------------------------- sampling
    def default_sampling(self) -> dict[str, Any]:
        """The sampler settings used when none are given (recorded in the protocol fingerprint)."""
        return {}

    def resolve_settings(self, **sampling: Any) -> dict[str, Any]:
        """Defaults merged with ``sampling``: exactly what ``draw`` will use."""
        settings = dict(self.default_sampling())
        unknown = set(sampling) - set(settings)
        if unknown:
            raise InputError(
                f"{type(self).__name__} got unknown sampling option(s) {sorted(unknown)}; "
                f"valid options: {sorted(settings)}"
            )
        settings.update(sampling)
        for name, neutral in self.knobs().items():  # one rule for every family's knobs
            if name in settings:
                settings[name] = finite_knob(type(self).__name__, name, settings[name], neutral)
        return settings

    def knobs(self) -> dict[str, Any]:
        """Sampling options that trade fidelity for diversity, with their neutral value."""
        return {}

    def network_evaluations(self, settings: dict[str, Any]) -> int | None:
        """Network evaluations per generated image with ``settings`` (1 for one-pass generators)."""
        return 1

    @abc.abstractmethod
    def sample_model_space(self, n: int, noise: Any, labels: torch.Tensor | None = None,
                           **settings: Any) -> torch.Tensor:
        """``n`` samples in model space (float, [-1, 1] for images) on ``self.device``.

        Every random number comes from ``noise`` (``ImageNoise``: one generator per image, or
        ``GeneratorNoise``); ``labels`` are the classes of a conditional backend.
        """

    def draw(self, start: int, stop: int, seed: int, settings: dict[str, Any],
             labels: torch.Tensor | None = None, chunk: int = DEFAULT_CHUNK) -> SampleBatch:
        """Images ``start .. stop-1`` of the set with ``seed`` (see :mod:`generative_bench.sampler`).

        The network runs on the set's chunks: chunk ``k`` holds images ``k*chunk .. (k+1)*chunk-1``
        of the whole set, each in its own row, whichever part of it this call keeps. An image thus
        sits in the same row of the same network call however the set is split into calls (batch
        size, ranks, stages), so even computations whose rounding depends on the row (a BLAS
        product in a guidance gradient) give it the same bits; a call that starts or stops inside
        a chunk pays for the whole chunk. The class of a conditional image is the first draw of
        its own generator (also when ``labels`` are given, so its other noise stays the same).
        """
        check_range(start, stop, labels)
        labels = self.check_labels(labels)
        chunk = int(chunk)
        if chunk < 1:
            raise InputError(f"sampling chunk must be >= 1, got {chunk}")
        start, stop = int(start), int(stop)
        device = self.device
        images, classes = [], []
        was_training = self.training
        self.eval()
        try:
            for first in range(start - start % chunk, stop, chunk):
                lo, hi = max(start, first) - first, min(stop, first + chunk) - first  # the rows kept
                noise = ImageNoise([image_seed(seed, first + j) for j in range(chunk)], device)
                y = None
                if self.conditional:
                    y = noise.randint(self.num_classes)
                    if labels is not None:
                        y[lo:hi] = labels[first + lo - start:first + hi - start].to(device)
                with torch.no_grad():
                    x = self.sample_model_space(chunk, noise, labels=y, **settings)[lo:hi]
                images.append(to_uint8(x).cpu() if self.is_image else x.float().cpu())
                if y is not None:
                    classes.append(y[lo:hi].cpu())
        finally:
            self.train(was_training)
        if not images:
            shape = (0, *self.data_shape)
            empty = torch.empty(shape, dtype=torch.uint8 if self.is_image else torch.float32)
            return SampleBatch(empty, torch.empty(0, dtype=torch.long) if self.conditional else None)
        return SampleBatch(torch.cat(images), torch.cat(classes) if classes else None)

    def sample(self, n: int, generator: torch.Generator | None = None, labels: torch.Tensor | None = None,
               seed: int | None = None, batch_size: int | None = None, chunk: int = DEFAULT_CHUNK, **sampling: Any):
        """The common sampler interface: ``n`` samples, uint8 NCHW for images.

        The set seed is ``seed``, else one draw from ``generator`` (0 without either); image i
        then uses its own seed (``sampler.image_seed``), so ``batch_size`` (images per draw) only
        bounds memory. Conditional backends return ``(samples, labels)``.
        """
        seed = seed_from_generator(generator) if seed is None else int(seed)
        settings = self.resolve_settings(**sampling)
        labels = self.check_labels(labels, int(n))
        step = int(batch_size or n or 1)
        parts = [self.draw(s, min(int(n), s + step), seed, settings,
                           labels=None if labels is None else labels[s:s + step], chunk=chunk)
                 for s in range(0, int(n), step)] or [self.draw(0, 0, seed, settings, chunk=chunk)]
        batch = SampleBatch.concat(parts)
        return (batch.images, batch.labels) if self.conditional else batch.images

    # ----------------------------------------------------------------- likelihood
    def nll(self, x: torch.Tensor, generator: torch.Generator | None = None, labels: torch.Tensor | None = None,
            **options: Any) -> NLLResult:
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
            "num_classes": self.num_classes,
        }
