"""The first stage of latent diffusion: a KL-regularised autoencoder (Rombach et al. 2022, Sec. 3.1).

The encoder E maps an image x (C x H x W, model space [-1, 1]) to a diagonal Gaussian
q(z | x) = N(mu(x), diag sigma^2(x)) over a *spatial* latent z of shape c x H/f x W/f (f: the
downsampling factor); the decoder D maps z back to an image. The networks are the VAE backend's
:class:`~generative_bench.backends.vae.nets.ConvVAENet` with a spatial latent (``latent_dim``
null), not new ones. Training objective (the paper's "KL-reg." first stage, its App. G, without
the perceptual and patch-adversarial terms, whose pretrained LPIPS weights are not available
offline), in per-example sums divided by the number of pixels D:

    L_AE = ( ||x - D(z)||_p^p  +  lambda_KL * KL(q(z | x) || N(0, I)) ) / D,   z ~ q(z | x),

with p = 1 (``reconstruction: l1``, the paper's choice) or 2 (``l2``) and a small lambda_KL
(1e-6 in CompVis/latent-diffusion's ``autoencoder_kl_*`` configs), so the latent stays close to
an information-preserving code while its scale stays bounded. Optionally the VAE's 8-bit
likelihood is added (``likelihood`` + ``likelihood_weight``): the decoder then outputs that
likelihood's parameters, its mean is the reconstruction, and ``likelihood_weight`` times
-log p(x | z) in bits/dim joins the loss.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
from torch import nn

from generative_bench.backends.vae.backend import gaussian_kl
from generative_bench.backends.vae.nets import ConvVAENet
from generative_bench.errors import InputError

RECONSTRUCTION_LOSSES = ("l1", "l2")


def psnr(x: torch.Tensor, y: torch.Tensor, peak_to_peak: float = 2.0) -> torch.Tensor:
    """Per-example peak signal-to-noise ratio 10 log10(peak^2 / MSE) in dB (peak 2 for [-1, 1],
    255 for uint8 values)."""
    mse = (x.double() - y.double()).square().flatten(1).mean(1)
    return 10.0 * torch.log10(peak_to_peak ** 2 / mse.clamp_min(1e-20))


class KLAutoencoder(nn.Module):
    """KL-regularised autoencoder over a ConvVAENet (see the module docstring).

    ``net`` is a factory ``(data_shape=..., out_channels=...) -> ConvVAENet`` (a Hydra ``_partial_``
    config); its latent must be spatial (``latent_dim: null``).
    """

    def __init__(self, data_shape: Sequence[int], net: Callable[..., Any] | None = None, kl_weight: float = 1e-6,
                 reconstruction: str = "l1", likelihood: Any = None, likelihood_weight: float = 0.0):
        super().__init__()
        self.data_shape = tuple(int(s) for s in data_shape)
        if len(self.data_shape) != 3:
            raise InputError(f"the latent-diffusion autoencoder needs images [C, H, W], got data shape "
                             f"{list(self.data_shape)}; use model=ddpm for vector data")
        if reconstruction not in RECONSTRUCTION_LOSSES:
            raise InputError(f"model.backend.autoencoder.reconstruction must be one of {list(RECONSTRUCTION_LOSSES)}, "
                             f"got {reconstruction!r}")
        if not float(kl_weight) >= 0 or not float(likelihood_weight) >= 0:
            raise InputError(f"model.backend.autoencoder.kl_weight and likelihood_weight must be >= 0, got "
                             f"{kl_weight} and {likelihood_weight}")
        if float(likelihood_weight) > 0 and likelihood is None:
            raise InputError("model.backend.autoencoder.likelihood_weight > 0 needs a likelihood (e.g. "
                             "generative_bench.backends.vae.DiscretizedLogisticMixture)")
        self.kl_weight = float(kl_weight)
        self.reconstruction = reconstruction
        self.likelihood = likelihood
        self.likelihood_weight = float(likelihood_weight)
        channels = self.data_shape[0]
        out_channels = channels if likelihood is None else likelihood.num_params(channels)
        factory = net if net is not None else ConvVAENet
        self.net = factory(data_shape=self.data_shape, out_channels=out_channels)
        self.latent_shape = tuple(int(s) for s in self.net.latent_shape)
        if len(self.latent_shape) != 3:
            raise InputError(f"latent diffusion needs a spatial latent, got latent shape {list(self.latent_shape)}; "
                             "set model.backend.autoencoder.net.latent_dim=null")
        if likelihood is not None and hasattr(likelihood, "initial_bias"):
            with torch.no_grad():
                self.net.output_layer.bias.copy_(likelihood.initial_bias(channels))

    @property
    def downsampling_factor(self) -> int:
        """f = H / h of the latent (Rombach et al. 2022, Sec. 3.1)."""
        return self.data_shape[1] // self.latent_shape[1]

    # ----------------------------------------------------------------- the two maps
    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log-variance) of q(z | x)."""
        return self.net.encode(x)

    def encode(self, x: torch.Tensor, sample: bool = True) -> torch.Tensor:
        """z ~ q(z | x) (one reparameterised draw from the global RNG), or its mean."""
        mean, log_var = self.posterior(x)
        return mean + torch.exp(0.5 * log_var) * torch.randn_like(mean) if sample else mean

    def decode_params(self, z: torch.Tensor) -> torch.Tensor:
        return self.net.decode(z)

    def image(self, params: torch.Tensor) -> torch.Tensor:
        """The reconstruction in model space: the decoder output, or the likelihood's mean."""
        return params if self.likelihood is None else self.likelihood.mean(params, self.data_shape[0])

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """D(z) in model space (unclipped; uint8 conversion rounds and clamps)."""
        return self.image(self.decode_params(z))

    # ----------------------------------------------------------------- objective
    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """L_AE of the module docstring and its parts (batch means; ``psnr`` in dB on [-1, 1])."""
        mean, log_var = self.posterior(x)
        z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
        params = self.decode_params(z)
        rec_img = self.image(params).float()
        diff = rec_img - x.float()
        rec = (diff.abs() if self.reconstruction == "l1" else diff.square()).flatten(1).sum(1)
        kl = gaussian_kl(mean.float(), log_var.float()).flatten(1).sum(1)
        dims = math.prod(self.data_shape)
        total = (rec + self.kl_weight * kl) / dims
        out = {"rec": rec.mean() / dims, "kl": kl.mean(), "psnr": psnr(rec_img.detach().clamp(-1, 1), x).mean()}
        if self.likelihood is not None:
            nll_bpd = -self.likelihood.log_prob(x, params).flatten(1).sum(1) / (dims * math.log(2.0))
            total = total + self.likelihood_weight * nll_bpd
            out["recon_bpd"] = nll_bpd.mean()
        out["loss"] = total.mean()
        return out

    def describe(self) -> dict[str, Any]:
        return {"net": type(self.net).__name__, "parameters": sum(p.numel() for p in self.parameters()),
                "latent_shape": list(self.latent_shape), "downsampling_factor": self.downsampling_factor,
                "regularisation": "KL", "kl_weight": self.kl_weight, "reconstruction": self.reconstruction,
                "likelihood": None if self.likelihood is None else self.likelihood.describe(),
                "likelihood_weight": self.likelihood_weight,
                "omitted": "perceptual (LPIPS) and patch-adversarial losses of the paper's first stage"}


__all__ = ["KLAutoencoder", "RECONSTRUCTION_LOSSES", "psnr"]
