"""generative-bench: train and compare image generators side by side.

Four interchangeable backends (GAN, VAE, DDPM, improved DDPM) share one sampler interface
(:class:`generative_bench.backends.base.Backend`); one evaluation harness scores any sampler.
"""

__version__ = "0.1.0"
