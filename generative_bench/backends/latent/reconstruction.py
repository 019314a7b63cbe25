"""First-stage reconstruction quality of latent diffusion, as the paper reports it (Rombach et al.
2022, Tab. 8; CompVis/latent-diffusion's "Pretrained Autoencoding Models": PSNR and R-FID).

* PSNR in dB of the uint8 round trip x -> D(E(x)) (posterior mean), per image
  10 log10(255^2 / MSE), mean and standard deviation over the held-out images;
* rFD: the Frechet distance (float64, the harness's rule) between the features of the
  reconstructions and of the originals, in the evaluation's feature space (Inception for R-FID,
  or a domain extractor, named in the record). With few images it is biased upwards like any FD.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from generative_bench.backends.latent.first_stage import psnr
from generative_bench.data.codec import check_uint8_images, to_model_space, to_uint8


def reconstruct_uint8(backend, images: torch.Tensor, batch_size: int = 100) -> torch.Tensor:
    """uint8 reconstructions of uint8 NCHW ``images``, ``batch_size`` at a time."""
    out = [to_uint8(backend.reconstruct(to_model_space(images[i:i + batch_size].to(backend.device)))).cpu()
           for i in range(0, len(images), int(batch_size))]
    return torch.cat(out) if out else images[:0].clone()


def reconstruction_record(backend, images: torch.Tensor, batch_size: int = 100,
                          distance: Callable[[torch.Tensor, torch.Tensor], dict[str, Any]] | None = None
                          ) -> dict[str, Any]:
    """PSNR of ``backend``'s first stage on held-out uint8 ``images``, plus what ``distance``
    (originals, reconstructions) -> fields adds (the evaluation's rFD: the caller owns the feature
    space, so a backend needs nothing of the evaluation package)."""
    check_uint8_images(images, name="held-out images", channels=None)
    rec = reconstruct_uint8(backend, images, batch_size)
    per_image = psnr(rec.double(), images.double(), peak_to_peak=255.0)
    finite = per_image[torch.isfinite(per_image)]
    out: dict[str, Any] = {
        "examples": int(len(images)),
        "psnr_db": float(finite.mean()) if len(finite) else None,
        "psnr_db_std": float(finite.std()) if len(finite) > 1 else None,
        "mse_uint8": float((rec.double() - images.double()).square().mean()),
        "encoding": "posterior mean, uint8 round trip (round-and-clamp)",
        "downsampling_factor": backend.downsampling_factor,
        "latent_shape": list(backend.latent_shape),
        "latent_scale": float(backend.latent_scale),
    }
    if distance is not None:
        out.update(distance(images, rec))
    return out


__all__ = ["reconstruct_uint8", "reconstruction_record"]
