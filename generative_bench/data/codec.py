"""The uint8 boundary: images cross every boundary as uint8 NCHW, backends work in [-1, 1].

``to_uint8`` is the guided-diffusion conversion ``((x + 1) * 127.5).round().clamp(0, 255)``.
"""

from __future__ import annotations

import torch

from generative_bench.errors import InputError


def to_model_space(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [-1, 1]; float vectors (toy data) pass through as float32."""
    if x.dtype == torch.uint8:
        return x.float().div(127.5).sub(1.0)
    if not torch.is_floating_point(x):
        raise InputError(f"expected uint8 images or float vectors, got dtype {x.dtype}")
    return x.float()


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1] -> uint8 with round-and-clamp of (x + 1) * 127.5."""
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).flatten(1).any(1).sum().item() if x.ndim > 1 else -1
        raise InputError(
            f"samples contain NaN/Inf ({bad} of {len(x)} samples affected); the model diverged "
            "or sampling is unstable: check the checkpoint, lower the learning rate or enable clipping"
        )
    return ((x + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


def check_uint8_images(x: torch.Tensor, name: str = "images", channels: int | None = 3) -> torch.Tensor:
    """Validate a uint8 NCHW batch and return it; raise InputError naming the problem and the fix."""
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dtype != torch.uint8:
        hint = (
            "convert float images in [-1, 1] with generative_bench.data.codec.to_uint8, "
            "or in [0, 1] with (x * 255).round().clamp(0, 255).to(torch.uint8)"
        )
        if torch.is_floating_point(x) and not torch.isfinite(x).all():
            raise InputError(f"{name}: contains NaN/Inf values and is {x.dtype}, not uint8; {hint}")
        raise InputError(f"{name}: expected dtype torch.uint8, got {x.dtype}; {hint}")
    if x.ndim != 4:
        raise InputError(f"{name}: expected a 4-D NCHW batch, got shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        layout = " (it looks like NHWC: permute(0, 3, 1, 2))" if x.shape[-1] == channels else ""
        raise InputError(
            f"{name}: expected {channels} channels in dim 1 (NCHW), got shape {tuple(x.shape)}{layout}"
        )
    return x
