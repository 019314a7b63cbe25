"""generative-bench: train and compare image generators side by side.

Four interchangeable backends (GAN, VAE, DDPM, improved DDPM) share one sampler interface
(:class:`generative_bench.backends.base.Backend`); one evaluation harness scores any sampler.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``generative_bench.evaluate`` (the evaluator as a library, :mod:`generative_bench.api`),
    imported on first use so that ``import generative_bench`` stays light."""
    if name in ("evaluate", "EvaluationResult"):
        from generative_bench import api

        return getattr(api, name)
    raise AttributeError(f"module 'generative_bench' has no attribute {name!r}")
