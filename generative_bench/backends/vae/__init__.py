"""VAE backend: conv/MLP encoder-decoder, discretized logistic mixture or Gaussian likelihood,
ELBO training and an importance-weighted (IWAE) NLL bound."""

from generative_bench.backends.vae.backend import VAEBackend, gaussian_kl
from generative_bench.backends.vae.likelihoods import DiscretizedLogisticMixture, GaussianLikelihood
from generative_bench.backends.vae.nets import ConvVAENet, MLPVAENet

__all__ = ["VAEBackend", "gaussian_kl", "DiscretizedLogisticMixture", "GaussianLikelihood", "ConvVAENet",
           "MLPVAENet"]
