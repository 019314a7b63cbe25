"""Reverse-process solvers: ancestral DDPM and DDIM, as plain functions of a process.

Each solver is a ``moments`` function giving the mean and variance of x_{t-1} given x_t; one
loop draws x_T ~ N(0, I) and steps x_{t-1} = mean + sqrt(var) z (no noise at the last step).
Respaced sampling passes a respaced process (respace.py); the loop is the same.

* ancestral (Ho et al. Alg. 2): p(x_{t-1} | x_t) with the process's variance type.
* DDIM (Song et al. 2021, Eq. 12): x_{t-1} = sqrt(ab_{t-1}) x0_hat + sqrt(1 - ab_{t-1} - s^2) eps_hat
  + s z with s = eta sqrt((1 - ab_{t-1}) / (1 - ab_t)) sqrt(1 - ab_t / ab_{t-1}); eta = 0 is
  deterministic, eta = 1 matches ancestral sampling with the fixed-small variance.

Classifier guidance (Dhariwal & Nichol 2021) enters through a ``guidance`` object: ancestral
sampling shifts the mean by ``Sigma * grad`` (Alg. 1), DDIM shifts the noise prediction by
``-sqrt(1 - ab_t) * grad`` (Alg. 2), where ``grad = s * grad_x log p(y | x_t, t)``
(see guidance.py). All noise comes from a noise source (``sampler.ImageNoise``: one generator
per image, or ``sampler.GeneratorNoise``).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from generative_bench.backends.diffusion.gaussian import Clip, GaussianDiffusion, ModelFn
from generative_bench.errors import InputError
from generative_bench.sampler import as_noise

Moments = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def randn(shape, generator: torch.Generator | None, device: torch.device | str, dtype=torch.float32) -> torch.Tensor:
    """Standard normal noise drawn from ``generator`` (on the generator's device), moved to ``device``."""
    gen_device = generator.device if generator is not None else device
    return torch.randn(tuple(shape), generator=generator, device=gen_device, dtype=dtype).to(device)


def ancestral_moments(process: GaussianDiffusion, model: ModelFn, x: torch.Tensor, t: torch.Tensor,
                      clip_denoised: Clip = True, eta: float = 0.0, guidance: Any = None):
    """Mean and variance of p(x_{t-1} | x_t) (``eta`` does not apply and must be 0)."""
    if eta:
        raise InputError(f"sampling option eta={eta} applies to method=ddim only; set eta=0.0 for ancestral sampling")
    out = process.p_mean_variance(model, x, t, clip_denoised=clip_denoised)
    mean = out["mean"] if guidance is None else guidance.shift_mean(process, out, x, t)
    return mean, out["variance"]


def ddim_moments(process: GaussianDiffusion, model: ModelFn, x: torch.Tensor, t: torch.Tensor,
                 clip_denoised: Clip = True, eta: float = 0.0, guidance: Any = None):
    """Mean and variance of the DDIM update (Song et al. Eq. 12)."""
    if not 0.0 <= float(eta):
        raise InputError(f"ddim eta must be >= 0, got {eta}")
    out = process.p_mean_variance(model, x, t, clip_denoised=clip_denoised)
    if guidance is not None:
        out = guidance.shift_eps(process, out, x, t)
    ab = process.coef("alphas_cumprod", t, x)
    ab_prev = process.coef("alphas_cumprod_prev", t, x)
    var = (eta ** 2) * (1.0 - ab_prev) / (1.0 - ab) * (1.0 - ab / ab_prev)
    mean = ab_prev.sqrt() * out["pred_xstart"] + (1.0 - ab_prev - var).clamp(min=0.0).sqrt() * out["eps"]
    return mean, var.expand_as(x)


SOLVERS: dict[str, Moments] = {"ancestral": ancestral_moments, "ddim": ddim_moments}


def sample_loop(process: GaussianDiffusion, model: ModelFn, shape, noise: Any = None,
                method: str = "ancestral", eta: float = 0.0, clip_denoised: Clip = True,
                device: torch.device | str = "cpu", progress: bool = False, guidance: Any = None) -> torch.Tensor:
    """Run the reverse process from x_T ~ N(0, I) to x_0; all noise comes from ``noise``
    (an ``ImageNoise``, a ``torch.Generator`` or None)."""
    if method not in SOLVERS:
        raise InputError(f"unknown diffusion sampling method {method!r}; choose one of {sorted(SOLVERS)}")
    moments = SOLVERS[method]
    noise = as_noise(noise, device)
    x = noise.randn(shape).to(device)
    steps = reversed(range(process.num_timesteps))
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(list(steps), desc=f"{method} sampling", unit="step", leave=False)
    for i in steps:
        t = torch.full((shape[0],), i, device=device, dtype=torch.long)
        mean, var = moments(process, model, x, t, clip_denoised=clip_denoised, eta=eta, guidance=guidance)
        z = noise.randn(shape).to(device)
        x = mean + var.sqrt() * z if i > 0 else mean
    return x
