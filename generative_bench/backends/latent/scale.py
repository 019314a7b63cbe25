"""The latent scale factor of latent diffusion (Rombach et al. 2022, Sec. 4.3.2 and App. D.1).

The KL-regularised latent has no fixed scale, and the signal-to-noise ratio of the diffusion
process on it depends on that scale. The paper rescales the latents to unit variance before the
diffusion model sees them: z' = s z with s = 1 / std(z), the standard deviation taken over every
element of the latents of the first batch(es) of the second stage (CompVis/latent-diffusion's
``scale_by_std``; Stable Diffusion's 0.18215 was estimated this way). Sampling divides by s again
before decoding.
"""

from __future__ import annotations

import torch

from generative_bench.errors import InputError


def estimate_latent_scale(latents: torch.Tensor) -> torch.Tensor:
    """s = 1 / std(z) over every element of ``latents`` (float64 accumulation, float32 result)."""
    if latents.numel() < 2:
        raise InputError("the latent scale needs at least two latent values; raise train.batch_size")
    std = latents.detach().double().flatten().std()
    if not torch.isfinite(std) or float(std) <= 0:
        raise InputError(f"the first-stage latents have standard deviation {float(std)}; the autoencoder "
                         "collapsed or diverged: lower the autoencoder learning rate "
                         "(model.backend.autoencoder_optim.lr) or raise model.backend.stage1_steps")
    return (1.0 / std).float()


__all__ = ["estimate_latent_scale"]
