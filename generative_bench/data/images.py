"""Image sources. Each is a torch ``Dataset`` yielding ``(uint8 CHW tensor, int label)``.

* :class:`CIFAR10` — the official CIFAR-10 through ``torchvision.datasets.CIFAR10``.
* :class:`ImageFolderImages` — any image folder (``root/<split>/<class>/*.png|jpg``), e.g. the
  JPEG re-encoding of CIFAR-10 shipped for offline use.
* :class:`NpzImages` — a guided-diffusion style ``.npz`` with ``arr_0`` uint8 NHWC (and optional
  ``arr_1`` labels).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from generative_bench.data.arrays import check_image_array, check_labels
from generative_bench.errors import InputError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def pil_to_uint8_chw(img) -> torch.Tensor:
    """PIL image -> uint8 CHW RGB tensor (no resampling, no normalisation)."""
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


class ImageSource(Dataset):
    """Common surface: ``__len__``, ``__getitem__ -> (uint8 CHW, label)``, ``labels``, ``describe``."""

    name: str = "images"
    labels: np.ndarray

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "size": len(self)}


class TensorImages(ImageSource):
    """Images already in memory as a uint8 NCHW tensor (npz files, materialised subsets)."""

    def __init__(self, images: torch.Tensor, labels=None, name: str = "tensor", info: dict | None = None):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise InputError(f"{name}: expected uint8 NCHW images, got {images.dtype} {tuple(images.shape)}")
        self.images = images
        self.labels = np.zeros(len(images), np.int64) if labels is None else np.asarray(labels, np.int64)
        self.name = name
        self.info = dict(info or {})

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "size": len(self), **self.info}


class CIFAR10(ImageSource):
    """Official CIFAR-10 (Krizhevsky 2009) via torchvision; ``download=True`` fetches it."""

    name = "cifar10"

    def __init__(self, root: str, split: str = "train", download: bool = False):
        from torchvision.datasets import CIFAR10 as TVCIFAR10

        if split not in ("train", "test"):
            raise InputError(f"CIFAR-10 split must be 'train' or 'test', got {split!r}")
        try:
            ds = TVCIFAR10(root=str(root), train=split == "train", download=download)
        except RuntimeError as e:  # torchvision: "Dataset not found or corrupted"
            raise InputError(
                f"official CIFAR-10 not found under {root!r} ({e}). Fix: pass data.source.download=true "
                "(needs internet), point data.source.root at an existing copy, or use the offline "
                "JPEG copy with data=cifar10_jpeg"
            ) from e
        self.split = split
        self.root = str(root)
        # torchvision keeps the whole split in memory as uint8 NHWC already
        self.images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
        self.labels = np.asarray(ds.targets, np.int64)
        self.classes = list(ds.classes)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])

    def describe(self) -> dict[str, Any]:
        return {"name": "cifar10", "variant": "official (torchvision pickle)", "split": self.split, "size": len(self)}


class ImageFolderImages(ImageSource):
    """Images in ``root/<split>/<class>/*`` (or ``root/<class>/*`` when there is no split folder).

    Decoded lazily with PIL; ``variant`` names the copy in reports (e.g. the JPEG CIFAR-10).
    """

    def __init__(self, root: str, split: str = "train", name: str | None = None, variant: str | None = None):
        root_path = Path(root).expanduser()
        if not root_path.is_dir():
            raise InputError(f"image folder {str(root_path)!r} does not exist; fix data.source.root")
        base = root_path / split if (root_path / split).is_dir() else root_path
        class_dirs = sorted(d for d in base.iterdir() if d.is_dir())
        files: list[tuple[Path, int]] = []
        if class_dirs:
            for k, d in enumerate(class_dirs):
                files += [(p, k) for p in sorted(d.iterdir()) if p.suffix.lower() in IMAGE_EXTENSIONS]
            self.classes = [d.name for d in class_dirs]
        else:
            files = [(p, 0) for p in sorted(base.iterdir()) if p.suffix.lower() in IMAGE_EXTENSIONS]
            self.classes = ["images"]
        if not files:
            raise InputError(
                f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {str(base)!r}; "
                "expected <root>/<split>/<class>/<image> or a flat folder of images"
            )
        self.files = [f for f, _ in files]
        self.labels = np.asarray([k for _, k in files], np.int64)
        self.split = split
        self.root = str(root_path)
        self.name = name or root_path.name
        self.variant = variant

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i):
        from PIL import Image, UnidentifiedImageError

        path = self.files[i]
        try:
            with Image.open(path) as img:
                return pil_to_uint8_chw(img), int(self.labels[i])
        except (UnidentifiedImageError, OSError) as e:
            raise InputError(f"cannot decode image {str(path)!r} ({e}); remove or replace the file") from e

    def describe(self) -> dict[str, Any]:
        d = {"name": self.name, "split": self.split, "size": len(self), "root": self.root}
        if self.variant:
            d["variant"] = self.variant
        return d


def load_npz_images(path: str | os.PathLike, key: str = "arr_0") -> tuple[np.ndarray, np.ndarray | None]:
    """Read uint8 NHWC images (and ``arr_1`` labels if present) from a guided-diffusion npz."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"npz file {str(path)!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            if key not in f.files:
                raise InputError(f"{str(path)!r} has no array {key!r} (found {f.files}); save the images as {key} "
                                 f"(np.savez(path, {key}=images))")
            arr = f[key]
            labels = f["arr_1"] if "arr_1" in f.files and key == "arr_0" else None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        if isinstance(e, InputError):
            raise
        if "allow_pickle" in str(e):
            raise InputError(f"{str(path)!r} holds an object array (pickled Python objects), which is never "
                             "unpickled here; save the images as a uint8 array (and labels as integers)") from None
        raise InputError(f"{str(path)!r} is not a readable npz file ({e}); re-create or re-download it") from e
    check_image_array(arr, f"{str(path)!r}:{key}")
    if labels is not None:
        labels = check_labels(labels, len(arr), f"{str(path)!r}:arr_1")
    return arr, labels


class NpzImages(TensorImages):
    """uint8 NHWC images from an npz (``arr_0``); ``test_path`` serves ``split='test'``."""

    def __init__(self, path: str, split: str = "train", test_path: str | None = None, name: str | None = None):
        chosen = test_path if (split == "test" and test_path) else path
        arr, labels = load_npz_images(chosen)
        images = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1).contiguous()
        super().__init__(images, labels, name=name or Path(chosen).stem, info={"path": str(chosen), "split": split})
