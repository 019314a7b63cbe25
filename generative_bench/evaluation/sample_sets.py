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


class ExternalSampleSet:
    """Base for fixed sample sets; subclasses provide ``__len__``, ``_load(start, stop)`` and ``image_shape``."""

    family = "external"
    nll_defined = False
    name = "external"
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

    def resolve_settings(self, **sampling: Any) -> dict[str, Any]:
        if sampling:
            raise InputError(f"{self.name} is a fixed sample set and takes no sampling options, got {sorted(sampling)}")
        return {}

    def knobs(self) -> dict[str, Any]:
        return {}

    def network_evaluations(self, settings: dict[str, Any]) -> int | None:
        return None  # made elsewhere: not known

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


class NpzSampleSet(ExternalSampleSet):
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

    def __len__(self) -> int:
        return len(self._images)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self._images.shape[1:])

    def _load(self, start: int, stop: int) -> torch.Tensor:
        return self._images[start:stop].contiguous()

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


__all__ = ["CallableSampler", "ExternalSampleSet", "FolderSampleSet", "NpzSampleSet", "as_sampler", "file_sha256"]
