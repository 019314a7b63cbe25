"""Autoregressive backend: a gated PixelCNN over sub-pixels with the shared discretized logistic
mixture for images, a MADE mixture of Gaussians for vectors; exact NLL, sequential sampling."""

from generative_bench.backends.autoregressive.backend import AutoregressiveBackend
from generative_bench.backends.autoregressive.made import MADEMixture, mixture_log_prob
from generative_bench.backends.autoregressive.pixelcnn import GatedPixelCNN

__all__ = ["AutoregressiveBackend", "GatedPixelCNN", "MADEMixture", "mixture_log_prob"]
