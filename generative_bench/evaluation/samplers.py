"""External samplers: anything with ``sample(n, generator)`` is scored like a trained backend.

* :class:`NpzSampler` — a guided-diffusion style ``.npz`` (``arr_0`` uint8 NHWC).
* :class:`FolderSampler` — a folder of image files (recursively, sorted by path).

Both return the first ``n`` images in file order (``generator`` is accepted for interface
compatibility; the samples are fixed), and raise a clear error when fewer than ``n`` exist.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from generative_bench.data.codec import check_uint8_images
from generative_bench.data.images import IMAGE_EXTENSIONS, load_npz_images, pil_to_uint8_chw
from generative_bench.errors import InputError


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class ExternalSampler:
    """Base for fixed sample sets; subclasses provide ``__len__`` and ``_load(start, stop)``."""

    family = "external"
    nll_defined = False
    is_image = True
    name = "external"

    def _load(self, start: int, stop: int) -> torch.Tensor:
        raise NotImplementedError

    def load_range(self, start: int, stop: int) -> torch.Tensor:
        """Samples ``start:stop`` in file order, validated as uint8 NCHW."""
        return check_uint8_images(self._load(start, stop), name=self.name)

    def check_count(self, n: int) -> None:
        if n > len(self):
            raise InputError(
                f"{self.name}: holds {len(self)} samples but {n} were asked for; lower eval.num_samples "
                f"to <= {len(self)} or provide more samples"
            )

    def sampler_settings(self, **sampling: Any) -> dict[str, Any]:
        if sampling:
            raise TypeError(f"{self.name} is a fixed sample set and takes no sampling options, got {sorted(sampling)}")
        return {}

    def default_sampling(self) -> dict[str, Any]:
        return {}

    def sample_batches(self, n: int, generator: torch.Generator | None = None, batch_size: int = 256,
                       **sampling: Any) -> Iterator[torch.Tensor]:
        self.sampler_settings(**sampling)
        self.check_count(n)
        for start in range(0, n, batch_size):
            yield self.load_range(start, min(n, start + batch_size))

    def sample(self, n: int, generator: torch.Generator | None = None, batch_size: int = 256, **sampling: Any):
        return torch.cat(list(self.sample_batches(n, generator, batch_size, **sampling)))


class NpzSampler(ExternalSampler):
    """Samples stored as ``arr_0`` (uint8 NHWC) in an npz, e.g. from guided-diffusion's scripts."""

    def __init__(self, path: str, name: str | None = None):
        self.path = Path(path)
        arr, _ = load_npz_images(self.path)
        if arr.shape[-1] == 1:
            arr = np.repeat(arr, 3, axis=-1)
        self._images = torch.from_numpy(arr).permute(0, 3, 1, 2)
        self.name = name or self.path.stem

    def __len__(self) -> int:
        return len(self._images)

    def _load(self, start: int, stop: int) -> torch.Tensor:
        return self._images[start:stop].contiguous()

    def describe(self) -> dict[str, Any]:
        return {"family": self.family, "class": "NpzSampler", "path": str(self.path), "samples": len(self),
                "sha256": file_sha256(self.path), "nll_defined": False, "shape": list(self._images.shape[1:])}


class FolderSampler(ExternalSampler):
    """Every image file below ``path`` (sorted), decoded to uint8 RGB."""

    def __init__(self, path: str, name: str | None = None):
        self.path = Path(path)
        if not self.path.is_dir():
            raise InputError(f"sample folder {str(self.path)!r} does not exist")
        self.files = sorted(p for p in self.path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not self.files:
            raise InputError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) under {str(self.path)!r}")
        self.name = name or self.path.name

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, start: int, stop: int) -> torch.Tensor:
        from PIL import Image, UnidentifiedImageError

        out = []
        for p in self.files[start:stop]:
            try:
                with Image.open(p) as img:
                    out.append(pil_to_uint8_chw(img))
            except (UnidentifiedImageError, OSError) as e:
                raise InputError(f"cannot decode sample image {str(p)!r} ({e}); remove or replace it") from e
        shapes = {tuple(t.shape) for t in out}
        if len(shapes) > 1:
            raise InputError(f"sample images in {str(self.path)!r} have different sizes {sorted(shapes)}; resize them first")
        return torch.stack(out)

    def describe(self) -> dict[str, Any]:
        return {"family": self.family, "class": "FolderSampler", "path": str(self.path), "samples": len(self),
                "nll_defined": False}
