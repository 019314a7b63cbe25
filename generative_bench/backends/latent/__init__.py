"""Latent diffusion (Rombach et al. 2022): a KL-regularised autoencoder (the VAE's conv nets) and
the Gaussian diffusion backend on its scaled latents, trained in two stages of one run."""

from generative_bench.backends.latent.backend import LatentDiffusionBackend
from generative_bench.backends.latent.first_stage import KLAutoencoder, psnr
from generative_bench.backends.latent.scale import estimate_latent_scale

__all__ = ["LatentDiffusionBackend", "KLAutoencoder", "estimate_latent_scale", "psnr"]
