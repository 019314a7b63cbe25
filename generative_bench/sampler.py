"""The one sampler contract: what the harness, ``gbench sample`` and the report see.

A *sampler* is anything that draws a sample set: a trained backend, or a fixed set of samples
made elsewhere (an npz, an image folder). It implements :class:`Sampler`:

* ``resolve_settings(**sampling)``: the backend's defaults merged with the requested options,
  checked once; exactly what ``draw`` will use and what the record stores;
* ``draw(start, stop, seed, settings, labels=None)``: images ``start .. stop-1`` of the sample
  set with seed ``seed``, as a :class:`SampleBatch` (uint8 NCHW images or float vectors, and
  the class labels of conditional samplers);
* ``network_evaluations(settings)``: network evaluations per image (NFE), ``None`` if unknown;
* ``knobs()``: the sampling options that trade fidelity for diversity, with their neutral values;
* ``check_count(n)``: a clear error when the sampler cannot give ``n`` images (fixed sets);
* ``image_shape``: the shape of one sample (checked against the reference data);
* ``describe()``: what the record says about the sampler.

Seeds are per image (as EDM's per-image seeds): image ``i`` of the set drawn with seed ``s``
takes every random number it needs (its class, its latent, every step's noise) from its own
``torch.Generator`` seeded with :func:`image_seed` ``(s, i)``, and the networks run on the set's
chunks of ``chunk`` images: image ``i`` is row ``i % chunk`` of network call ``i // chunk``
whatever part of that chunk a draw keeps. So the same seed gives bit-identical samples whatever
the batch size, the number of ranks, or the stage that draws them, even where rounding depends on
the row (BLAS products in a guidance gradient) - on one device, BLAS build and thread count.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Protocol, Sequence, runtime_checkable

import torch

#: networks see chunks of exactly this many images unless the caller says otherwise
DEFAULT_CHUNK = 256
IMAGE_SEED_RULE = ("image i of a set drawn with seed s uses its own torch.Generator seeded with "
                   "splitmix64(s * 2^32 + i); networks run on fixed chunks of images")

_MASK64 = (1 << 64) - 1

#: torch's CPU ``normal_`` fills a tensor of fewer elements than this one element at a time from
#: the generator's stream of normals (Box-Muller pairs, the second one kept in the generator for
#: the next draw), so back-to-back draws of such sizes give the same numbers as one draw of their
#: total size; at this size and above it switches to a vectorised fill whose numbers differ
SERIAL_NORMAL_ELEMENTS = 16


def _splitmix64(x: int) -> int:
    """One step of SplitMix64 (Steele et al. 2014): a bijective 64-bit mix."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def image_seed(seed: int, index: int) -> int:
    """The seed of image ``index`` in the set drawn with ``seed`` (63 bits, never colliding
    for indices below 2^32)."""
    return _splitmix64(((int(seed) & 0xFFFFFFFF) << 32) | (int(index) & 0xFFFFFFFF)) >> 1


def seed_from_generator(generator: torch.Generator | None) -> int:
    """A set seed taken from ``generator`` (one draw), or 0 without one."""
    if generator is None:
        return 0
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device).item())


class ImageNoise:
    """Random numbers drawn image by image: one ``torch.Generator`` per image.

    Every call returns a tensor whose first dimension runs over the images, each row drawn from
    that image's generator, so an image's numbers do not depend on which other images share its
    batch (EDM ``generate.py``'s stacked generator).
    """

    def __init__(self, seeds: Sequence[int], device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.seeds = [int(s) for s in seeds]
        self._gens = [torch.Generator(device=self.device).manual_seed(s) for s in self.seeds]

    def __len__(self) -> int:
        return len(self._gens)

    def _check(self, shape: Sequence[int]) -> tuple[int, ...]:
        shape = tuple(int(s) for s in shape)
        if not shape or shape[0] != len(self):
            raise ValueError(f"ImageNoise holds {len(self)} images; asked for shape {shape}")
        return shape[1:]

    def randn(self, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        rest = self._check(shape)
        return torch.stack([torch.randn(rest, generator=g, device=self.device, dtype=dtype) for g in self._gens])

    def rand(self, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        rest = self._check(shape)
        return torch.stack([torch.rand(rest, generator=g, device=self.device, dtype=dtype) for g in self._gens])

    def randint(self, high: int, shape: Sequence[int] | None = None) -> torch.Tensor:
        rest = self._check(shape if shape is not None else (len(self),))
        return torch.stack([torch.randint(0, int(high), rest, generator=g, device=self.device) for g in self._gens])

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        return self.randn(x.shape, dtype=x.dtype).to(x.device)

    def randn_steps(self, shape: Sequence[int], steps: int, dtype: torch.dtype = torch.float32) -> Iterator[torch.Tensor]:
        """``steps`` successive :meth:`randn` draws of ``shape`` (a sampler's per-step noise), yielded
        one at a time with exactly the numbers and generator states of ``steps`` separate calls.

        Where an image's draw is small (2-D points: two numbers) and the generators are on the CPU,
        each generator call takes the next few steps at once: up to ``SERIAL_NORMAL_ELEMENTS - 1``
        numbers, which torch still draws one by one from the same stream (see
        :data:`SERIAL_NORMAL_ELEMENTS`; :func:`serial_normal_stream` checks it on this torch once).
        That is one generator call per image every few steps instead of every step. No number
        is drawn ahead of the last step, so the generators end where ``steps`` calls leave them.
        """
        rest, steps = self._check(shape), int(steps)
        per = math.prod(rest)
        block = (SERIAL_NORMAL_ELEMENTS - 1) // per if per else 0
        if block < 2 or self.device.type != "cpu" or not serial_normal_stream(dtype):
            yield from randn_each_step(self, shape, steps, dtype)
            return
        done = 0
        while done < steps:
            m = min(block, steps - done)
            drawn = torch.stack([torch.randn((m, *rest), generator=g, dtype=dtype) for g in self._gens], dim=1)
            yield from drawn.unbind(0)
            done += m


def randn_each_step(noise: Any, shape: Sequence[int], steps: int, dtype: torch.dtype = torch.float32) -> Iterator[torch.Tensor]:
    """``steps`` successive ``noise.randn(shape)`` draws, one call per step (the plain form of
    ``randn_steps``; usable as that method of either noise class)."""
    for _ in range(int(steps)):
        yield noise.randn(shape, dtype)


@functools.cache
def serial_normal_stream(dtype: torch.dtype = torch.float32) -> bool:
    """Whether this torch draws small CPU normals from one stream (see :data:`SERIAL_NORMAL_ELEMENTS`):
    a few back-to-back draws of 1, 2 and 3 numbers against one draw of their total size."""
    for per in (1, 2, 3):
        k = (SERIAL_NORMAL_ELEMENTS - 1) // per
        g1, g2 = torch.Generator().manual_seed(12345), torch.Generator().manual_seed(12345)
        steps = torch.stack([torch.randn(per, generator=g1, dtype=dtype) for _ in range(k)])
        whole = torch.randn((k, per), generator=g2, dtype=dtype)
        if not (torch.equal(steps, whole) and torch.equal(g1.get_state(), g2.get_state())):
            return False
    return True


class GeneratorNoise:
    """The same interface over one ``torch.Generator`` for the whole batch (training, tests)."""

    def __init__(self, generator: torch.Generator | None = None, device: torch.device | str = "cpu"):
        self.generator = generator
        self.device = generator.device if generator is not None else torch.device(device)

    def randn(self, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.randn(tuple(shape), generator=self.generator, device=self.device, dtype=dtype)

    def rand(self, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.rand(tuple(shape), generator=self.generator, device=self.device, dtype=dtype)

    def randint(self, high: int, shape: Sequence[int]) -> torch.Tensor:
        return torch.randint(0, int(high), tuple(shape), generator=self.generator, device=self.device)

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        return self.randn(x.shape, dtype=x.dtype).to(x.device)

    def randn_steps(self, shape: Sequence[int], steps: int, dtype: torch.dtype = torch.float32) -> Iterator[torch.Tensor]:
        """``steps`` successive :meth:`randn` draws of ``shape``, one per step."""
        return randn_each_step(self, shape, steps, dtype)


def as_noise(noise: Any, device: torch.device | str = "cpu"):
    """``ImageNoise`` / ``GeneratorNoise`` pass through; a ``torch.Generator`` or None is wrapped."""
    if isinstance(noise, (ImageNoise, GeneratorNoise)):
        return noise
    if noise is None or isinstance(noise, torch.Generator):
        return GeneratorNoise(noise, device)
    raise TypeError(f"expected an ImageNoise, a torch.Generator or None, got {type(noise).__name__}")


@dataclass
class SampleBatch:
    """Images (uint8 NCHW) or vectors (float32) and, for conditional samplers, their labels."""

    images: torch.Tensor
    labels: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.images)

    @staticmethod
    def concat(parts: Iterable["SampleBatch"]) -> "SampleBatch":
        parts = list(parts)
        labels = [p.labels for p in parts]
        if any(lbl is None for lbl in labels) and not all(lbl is None for lbl in labels):
            raise ValueError("cannot concatenate labelled and unlabelled sample batches")
        return SampleBatch(torch.cat([p.images for p in parts]),
                           None if labels[0] is None else torch.cat(labels))


@runtime_checkable
class Sampler(Protocol):
    """What every sampler implements (see the module docstring)."""

    name: str

    def resolve_settings(self, **sampling: Any) -> dict[str, Any]: ...

    def draw(self, start: int, stop: int, seed: int, settings: dict[str, Any],
             labels: torch.Tensor | None = None, chunk: int = DEFAULT_CHUNK) -> SampleBatch: ...

    def network_evaluations(self, settings: dict[str, Any]) -> int | None: ...

    def knobs(self) -> dict[str, Any]: ...

    def check_count(self, n: int) -> None: ...

    @property
    def image_shape(self) -> tuple[int, ...] | None: ...

    def describe(self) -> dict[str, Any]: ...


def check_range(start: int, stop: int, labels: torch.Tensor | None) -> None:
    if not 0 <= int(start) <= int(stop):
        raise ValueError(f"bad sample range {start}..{stop}")
    if labels is not None and len(labels) != int(stop) - int(start):
        raise ValueError(f"{len(labels)} labels given for {int(stop) - int(start)} images")


__all__ = ["DEFAULT_CHUNK", "GeneratorNoise", "IMAGE_SEED_RULE", "ImageNoise", "SampleBatch", "Sampler", "as_noise",
           "check_range", "image_seed", "seed_from_generator"]
