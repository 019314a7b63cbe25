"""A family built from the suite's parts: the diagonal Gaussian with a temperature knob τ that
scales its standard deviation when sampling (1: the fitted model)."""

from typing import Any

import torch

from generative_bench.backends.gaussian import DiagonalGaussian
from generative_bench.errors import InputError
from generative_bench.sampler import as_noise


class ShrunkGaussian(DiagonalGaussian):
    family = "shrunk_gaussian"
    display_name = "Shrunk Gaussian"
    KNOB_SYMBOLS = {"temperature": "τ"}

    def default_sampling(self) -> dict[str, Any]:
        return {"temperature": 1.0}

    def knobs(self) -> dict[str, Any]:
        return {"temperature": 1.0}

    def sample_model_space(self, n: int, noise: Any = None, labels: torch.Tensor | None = None,
                           temperature: float = 1.0, **sampling: Any) -> torch.Tensor:
        if not temperature > 0:
            raise InputError(f"temperature must be > 0, got {temperature}")
        eps = as_noise(noise, self.device).randn((int(n), *self.data_shape)).to(self.device)
        return self.mean + float(temperature) * torch.exp(self.log_std) * eps
