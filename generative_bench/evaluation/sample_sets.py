"""Sample sets made elsewhere, scored exactly like a trained backend (the sampler contract of
:mod:`generative_bench.sampler`).

* :class:`NpzSampleSet` — a guided-diffusion style ``.npz`` (``arr_0`` uint8 NHWC, optional
  ``arr_1`` class labels).
* :class:`FolderSampleSet` — a folder of image files (recursively, sorted by path).
* :class:`CallableSampler` — any object with ``sample(n, generator)`` (the minimal sampler).

A fixed set returns images ``start .. stop-1`` in file order whatever the seed; asking for more
images than it holds is a clear error.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from generative_bench.data.codec import check_uint8_images
from generative_bench.data.images import IMAGE_EXTENSIONS, load_npz_images, pil_to_uint8_chw
from generative_bench.errors import InputError
from generative_bench.sampler import DEFAULT_CHUNK, SampleBatch, Sampler, check_range


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class ExternalSampler:
    """What every sampler made elsewhere shares: no sampling options, no knobs, no known NFE."""

    family = "external"
    nll_defined = False
    name = "external"
    kind = "an external sampler"

    def resolve_settings(self, **sampling: Any) -> dict[str, Any]:
        if sampling:
            raise InputError(f"{self.name} is {self.kind} and takes no sampling options, got {sorted(sampling)}")
        return {}

    def knobs(self) -> dict[str, Any]:
        return {}

    def network_evaluations(self, settings: dict[str, Any]) -> int | None:
        return None  # made elsewhere: not known


class ExternalSampleSet(ExternalSampler):
    """Base for fixed sample sets; subclasses provide ``__len__``, ``_load(start, stop)`` and ``image_shape``."""

    kind = "a fixed sample set"
    labels: np.ndarray | None = None

    def _load(self, start: int, stop: int) -> torch.Tensor:
        raise NotImplementedError

    @property
    def conditional(self) -> bool:
        return self.labels is not None

    def check_count(self, n: int) -> None:
        if n > len(self):
            raise InputError(
                f"{self.name}: holds {len(self)} samples but {n} were asked for; lower eval.num_samples "
                f"to <= {len(self)} or provide more samples"
            )

    def draw(self, start: int, stop: int, seed: int = 0, settings: dict[str, Any] | None = None,
             labels: torch.Tensor | None = None, chunk: int = DEFAULT_CHUNK) -> SampleBatch:
        """Samples ``start:stop`` in file order, validated as uint8 NCHW (``seed`` does not apply)."""
        check_range(start, stop, labels)
        if labels is not None:
            raise InputError(f"{self.name} is a fixed sample set: its classes cannot be chosen")
        self.check_count(int(stop))
        images = check_uint8_images(self._load(int(start), int(stop)), name=self.name)
        y = None if self.labels is None else torch.from_numpy(self.labels[int(start):int(stop)]).long()
        return SampleBatch(images, y)

    def sample(self, n: int, generator: torch.Generator | None = None, **sampling: Any):
        batch = self.draw(0, int(n), 0, self.resolve_settings(**sampling))
        return batch.images if batch.labels is None else (batch.images, batch.labels)


class TensorSampleSet(ExternalSampleSet):
    """A fixed sample set held in memory as a uint8 NCHW tensor (``_images``)."""

    _images: torch.Tensor

    def __len__(self) -> int:
        return len(self._images)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self._images.shape[1:])

    def _load(self, start: int, stop: int) -> torch.Tensor:
        return self._images[start:stop].contiguous()


class NpzSampleSet(TensorSampleSet):
    """Samples stored as ``arr_0`` (uint8 NHWC) in an npz, e.g. from guided-diffusion's scripts;
    ``arr_1``, when present, holds their class labels."""

    def __init__(self, path: str, name: str | None = None):
        self.path = Path(path)
        arr, labels = load_npz_images(self.path)
        if arr.shape[-1] == 1:
            arr = np.repeat(arr, 3, axis=-1)
        self._images = torch.from_numpy(arr).permute(0, 3, 1, 2)
        if labels is not None:  # checked by load_npz_images: one integer per image, >= 0
            self.labels = labels
        self.name = name or self.path.stem

    def describe(self) -> dict[str, Any]:
        return {"family": self.family, "class": "NpzSampleSet", "path": str(self.path), "samples": len(self),
                "sha256": file_sha256(self.path), "nll_defined": False, "shape": list(self.image_shape),
                "labels": self.labels is not None}


class FolderSampleSet(ExternalSampleSet):
    """Every image file below ``path`` (sorted), decoded to uint8 RGB; all must have one size."""

    def __init__(self, path: str, name: str | None = None):
        self.path = Path(path)
        if not self.path.is_dir():
            raise InputError(f"sample folder {str(self.path)!r} does not exist; fix sampler.path")
        self.files = sorted(p for p in self.path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not self.files:
            raise InputError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) under {str(self.path)!r}")
        self.name = name or self.path.name
        self._shape: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self.files)

    def _decode(self, p: Path) -> torch.Tensor:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(p) as img:
                return pil_to_uint8_chw(img)
        except (UnidentifiedImageError, OSError) as e:
            raise InputError(f"cannot decode sample image {str(p)!r} ({e}); remove or replace it") from e

    @property
    def image_shape(self) -> tuple[int, ...]:
        """The first image's shape; every other image must match it."""
        if self._shape is None:
            self._shape = tuple(self._decode(self.files[0]).shape)
        return self._shape

    def _load(self, start: int, stop: int) -> torch.Tensor:
        out = []
        for p in self.files[start:stop]:
            img = self._decode(p)
            if tuple(img.shape) != self.image_shape:
                raise InputError(
                    f"sample image {str(p)!r} is {img.shape[2]}x{img.shape[1]} but {str(self.files[0])!r} is "
                    f"{self.image_shape[2]}x{self.image_shape[1]}: every image of a sample folder must have one "
                    "size; resize them first")
            out.append(img)
        return torch.stack(out)

    def describe(self) -> dict[str, Any]:
        return {"family": self.family, "class": "FolderSampleSet", "path": str(self.path), "samples": len(self),
                "nll_defined": False, "shape": list(self.image_shape)}


def images_as_uint8_nchw(images: Any, value_range: tuple[float, float] | None = None,
                         where: str = "the samples") -> torch.Tensor:
    """A uint8 NCHW tensor from images in memory: uint8 NCHW or NHWC (1 or 3 channels), or floats
    with their ``value_range`` stated ((-1, 1) or (0, 1); converted with the suite's rounding rule,
    :mod:`generative_bench.data.codec`). Floats without a range are refused: the same array could
    be either."""
    from generative_bench.data.arrays import float_conversion

    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(np.asarray(images)))
    if x.ndim != 4:
        raise InputError(f"{where} have shape {tuple(x.shape)}; expected a batch of images (N, C, H, W) or (N, H, W, C)")
    if x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = x.permute(0, 3, 1, 2)
    if x.dtype.is_floating_point:
        if value_range is None:
            raise InputError(f"{where} are {x.dtype} ({float_conversion(x.detach().cpu().numpy())}); state their range: "
                             "value_range=(-1, 1) or value_range=(0, 1)")
        lo, hi = (float(v) for v in value_range)
        if (lo, hi) not in ((-1.0, 1.0), (0.0, 1.0)):
            raise InputError(f"value_range={value_range!r}: must be (-1, 1) or (0, 1)")
        from generative_bench.data.codec import to_uint8

        x = to_uint8(x.float() * 2.0 - 1.0 if lo == 0.0 else x.float())
    elif x.dtype != torch.uint8:
        raise InputError(f"{where} have dtype {x.dtype}; expected uint8 images (or floats with value_range)")
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.contiguous()


class ArraySampleSet(TensorSampleSet):
    """Images already in memory (a tensor or array; see :func:`images_as_uint8_nchw`), with
    optional class labels."""

    def __init__(self, images: Any, labels: Any = None, name: str = "samples",
                 value_range: tuple[float, float] | None = None):
        from generative_bench.data.arrays import check_labels

        self._images = images_as_uint8_nchw(images, value_range)
        self.name = name
        if labels is not None:
            self.labels = check_labels(np.asarray(labels), len(self._images), f"{name} labels")

    def describe(self) -> dict[str, Any]:
        digest = hashlib.sha256(self._images.numpy().tobytes()).hexdigest()
        return {"family": self.family, "class": "ArraySampleSet", "samples": len(self), "sha256": digest,
                "nll_defined": False, "shape": list(self.image_shape), "labels": self.labels is not None}


class FunctionSampler(ExternalSampler):
    """A generator function ``fn(n, seed) -> images`` (uint8, or floats with ``value_range``) as a
    sampler. Batch ``[start, stop)`` is ``fn(stop - start, seed * 1_000_003 + start)``: the images
    are reproducible for a seed and a batch size (a model with per-image seeds should implement
    the sampler contract instead)."""

    kind = "a function of (n, seed)"
    conditional = False

    def __init__(self, fn: Any, name: str | None = None, value_range: tuple[float, float] | None = None,
                 image_shape: tuple[int, ...] | None = None):
        if not callable(fn):
            raise InputError(f"{fn!r} is not callable: pass fn(n, seed) -> images")
        self.fn, self.value_range = fn, value_range
        self.name = name or getattr(fn, "__name__", type(fn).__name__)
        self._shape = tuple(image_shape) if image_shape is not None else None

    def check_count(self, n: int) -> None:
        """A function draws as many as asked."""

    @property
    def image_shape(self) -> tuple[int, ...] | None:
        if self._shape is None:  # one image tells the shape
            self._shape = tuple(self.draw(0, 1, 0).images.shape[1:])
        return self._shape

    def draw(self, start: int, stop: int, seed: int = 0, settings: dict[str, Any] | None = None,
             labels: torch.Tensor | None = None, chunk: int = DEFAULT_CHUNK) -> SampleBatch:
        check_range(start, stop, labels)
        if labels is not None:
            raise InputError(f"{self.name} takes no labels")
        n = int(stop) - int(start)
        out = self.fn(n, (int(seed) * 1_000_003 + int(start)) % (2**63 - 1))
        images = images_as_uint8_nchw(out, self.value_range, where=f"the images of {self.name}")
        if len(images) != n:
            raise InputError(f"{self.name}({n}, seed) returned {len(images)} images; it must return exactly n")
        return SampleBatch(images, None)

    def describe(self) -> dict[str, Any]:
        return {"family": self.family, "class": "FunctionSampler", "function": self.name,
                "seeding": "fn(n, seed * 1000003 + first index of the batch)", "nll_defined": False}


class CallableSampler:
    """Adapts any object with ``sample(n, generator)`` to the sampler contract.

    Such an object draws a whole batch from one generator, so its images are reproducible for the
    same seed *and* the same batch layout only: batch ``b`` of ``batch_size`` images uses a
    generator seeded with ``(seed, b)``.
    """

    family = "external"
    nll_defined = False

    def __init__(self, obj: Any, batch_size: int, name: str | None = None):
        if not callable(getattr(obj, "sample", None)):
            raise InputError(f"{type(obj).__name__} is not a sampler: it has no sample(n, generator) method")
        self.obj = obj
        self.batch_size = int(batch_size)
        self.name = name or getattr(obj, "name", type(obj).__name__)
        self.conditional = False

    def resolve_settings(self, **sampling: Any) -> dict[str, Any]:
        return dict(sampling)

    def knobs(self) -> dict[str, Any]:
        return {}

    def network_evaluations(self, settings: dict[str, Any]) -> int | None:
        return getattr(self.obj, "nfe", None)

    def check_count(self, n: int) -> None:
        """Whatever the wrapped object can draw."""

    @property
    def image_shape(self) -> tuple[int, ...] | None:
        shape = getattr(self.obj, "image_shape", None) or getattr(self.obj, "data_shape", None)
        return tuple(shape) if shape is not None else None

    def draw(self, start: int, stop: int, seed: int, settings: dict[str, Any], labels=None,
             chunk: int = DEFAULT_CHUNK) -> SampleBatch:
        if labels is not None:
            raise InputError(f"{self.name} takes no labels")
        if start % self.batch_size:
            raise ValueError("CallableSampler draws whole batches")
        b = start // self.batch_size
        g = torch.Generator().manual_seed((int(seed) * 1_000_003 + b) % (2**63 - 1))
        out = self.obj.sample(int(stop) - int(start), generator=g, **settings)
        images, y = (out if isinstance(out, tuple) else (out, None))
        return SampleBatch(images, None if y is None else torch.as_tensor(y).long())

    def describe(self) -> dict[str, Any]:
        return {"family": self.family, "class": type(self.obj).__name__, "seeding": "per batch (seed, batch index)"}


def as_sampler(obj: Any, batch_size: int) -> Any:
    """``obj`` itself when it implements the sampler contract, else a :class:`CallableSampler`."""
    return obj if isinstance(obj, Sampler) else CallableSampler(obj, batch_size)


__all__ = ["ArraySampleSet", "CallableSampler", "ExternalSampleSet", "ExternalSampler", "FolderSampleSet", "FunctionSampler",
           "NpzSampleSet", "TensorSampleSet", "as_sampler", "file_sha256", "images_as_uint8_nchw"]
