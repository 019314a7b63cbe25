"""The uint8 boundary: images cross every boundary as uint8 NCHW, backends work in [-1, 1].

``to_uint8`` rounds to the nearest level: ``((x + 1) * 127.5).round().clamp(0, 255)`` (``torch.round``,
ties to even; the only tie inside [-1, 1] is x = 0 -> 127.5 -> 128). This is *not* what
guided-diffusion and improved-diffusion do: their ``scripts/image_sample.py`` writes
``((sample + 1) * 127.5).clamp(0, 255).to(th.uint8)``, and the uint8 cast truncates toward zero.
The two differ by at most one level per pixel (truncation is never higher), and truncation makes
images darker by half a level on average; rounding is unbiased, so the project keeps it.
:data:`UINT8_RULE` names the rule so that results can record how their samples were decoded.
"""

from __future__ import annotations

import torch

from generative_bench.errors import InputError

#: The float -> uint8 rule of :func:`to_uint8`, recorded in results fingerprints.
UINT8_RULE = "round((x + 1) * 127.5) clamped to [0, 255]"


def to_model_space(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [-1, 1]; float vectors (toy data) pass through as float32."""
    if x.dtype == torch.uint8:
        return x.float().div(127.5).sub(1.0)
    if not torch.is_floating_point(x):
        raise InputError(f"expected uint8 images or float vectors, got dtype {x.dtype}")
    return x.float()


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1] -> uint8: (x + 1) * 127.5 rounded to nearest (ties to even), clamped to [0, 255].

    guided-diffusion's sampling script truncates instead (``.clamp(0, 255).to(th.uint8)``), which gives
    one level less wherever the fractional part is >= 0.5, e.g. 10.7 -> 10 there and 11 here.
    """
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
