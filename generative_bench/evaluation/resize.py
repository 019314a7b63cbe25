"""How uint8 images are resized to the Inception input (``eval.features.resize``).

The resize is part of the feature space: the same samples get different FIDs under different
resizes (Parmar et al. 2022, "On Aliased Resizing and Surprising Subtleties in GAN Evaluation"),
so the mode is recorded in the extractor's fingerprint and reference caches are keyed by it.

* ``tf1_bilinear`` (default): TF-1.x ``ResizeBilinear`` (align_corners=False, no half-pixel
  centres), the resize inside the TF FID graph that pytorch-fid, torch-fidelity and
  guided-diffusion's evaluator reproduce (:func:`generative_bench.evaluation.inception.tf1_resize_bilinear`).
* ``clean_bicubic``: clean-fid's "clean" mode: each channel of each uint8 image as a float32 PIL
  image (mode ``F``), ``Image.resize(299x299, BICUBIC)`` (PIL's filter widens its support when
  downscaling, i.e. antialiased), clipped to [0, 255] (clean-fid ``resize.py``
  ``make_resizer("PIL", False, "bicubic", (299, 299))``).
* ``torchvision_antialias``: ``torchvision.transforms.functional.resize(x, [299, 299],
  BILINEAR, antialias=True)`` on the float image (half-pixel centres, antialiased when downscaling).

Every mode then maps [0, 255] to the network input with ``(x - 128) / 128``.
"""

from __future__ import annotations

import numpy as np
import torch

from generative_bench.errors import InputError
from generative_bench.evaluation import inception as inc

MODES = ("tf1_bilinear", "clean_bicubic", "torchvision_antialias")
DEFAULT = "tf1_bilinear"
DESCRIPTIONS = {
    "tf1_bilinear": "uint8 -> float32, TF1 bilinear resize to 299 (align_corners=False), (x-128)/128",
    "clean_bicubic": "uint8 -> float32, per-channel PIL BICUBIC resize to 299 (mode F, antialiased, clean-fid "
                     "'clean'), clip [0, 255], (x-128)/128",
    "torchvision_antialias": "uint8 -> float32, torchvision bilinear resize to 299 (antialias=True), (x-128)/128",
}


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise InputError(f"eval.features.resize={mode!r} is not a resize mode; choose one of {list(MODES)}")
    return mode


def clean_bicubic(x_uint8: torch.Tensor, size: int = inc.INPUT_SIZE) -> torch.Tensor:
    """clean-fid's PIL bicubic resize of a uint8 NCHW batch -> float32 NCHW in [0, 255]."""
    from PIL import Image

    arr = x_uint8.detach().to("cpu").numpy().astype(np.float32)
    out = np.empty((arr.shape[0], arr.shape[1], size, size), np.float32)
    for i in range(arr.shape[0]):
        for c in range(arr.shape[1]):
            img = Image.fromarray(arr[i, c], mode="F").resize((size, size), resample=Image.BICUBIC)
            out[i, c] = np.asarray(img, dtype=np.float32).clip(0, 255)
    return torch.from_numpy(out).to(x_uint8.device)


def torchvision_antialias(x_uint8: torch.Tensor, size: int = inc.INPUT_SIZE) -> torch.Tensor:
    """torchvision's antialiased bilinear resize of a uint8 NCHW batch -> float32 NCHW."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    return TF.resize(x_uint8.to(torch.float32), [size, size], interpolation=InterpolationMode.BILINEAR, antialias=True)


def resize(x_uint8: torch.Tensor, mode: str = DEFAULT, size: int = inc.INPUT_SIZE) -> torch.Tensor:
    """uint8 NCHW -> float32 NCHW of ``size x size`` in [0, 255] with the named mode."""
    check_mode(mode)
    if mode == "tf1_bilinear":
        return inc.tf1_resize_bilinear(x_uint8, size)
    out = clean_bicubic(x_uint8, size) if mode == "clean_bicubic" else torchvision_antialias(x_uint8, size)
    return out.contiguous(memory_format=torch.channels_last)


def inception_input(x_uint8: torch.Tensor, mode: str = DEFAULT) -> torch.Tensor:
    """The network input: resize to 299 with ``mode``, then ``(x - 128) / 128``."""
    if mode == "tf1_bilinear":
        return inc.tf_inception_input(x_uint8)
    return resize(x_uint8, mode).sub_(128.0).mul_(1.0 / 128.0)


__all__ = ["DEFAULT", "DESCRIPTIONS", "MODES", "check_mode", "clean_bicubic", "inception_input", "resize",
           "torchvision_antialias"]
