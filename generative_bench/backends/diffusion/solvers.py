"""Reverse-process solvers: ancestral DDPM and DDIM, DPM-Solver++ (2M), and Heun / Euler on the
probability-flow ODE, as plain functions of a process.

Ancestral and DDIM are ``moments`` functions (registry ``SOLVERS``) giving the mean and variance
of x_{t-1} given x_t; one loop draws x_T ~ N(0, I) and steps x_{t-1} = mean + sqrt(var) z (no
noise at the last step). Respaced sampling passes a respaced process (respace.py); the loop is the
same.

* ancestral (Ho et al. Alg. 2): p(x_{t-1} | x_t) with the process's variance type.
* DDIM (Song et al. 2021, Eq. 12): x_{t-1} = sqrt(ab_{t-1}) x0_hat + sqrt(1 - ab_{t-1} - s^2) eps_hat
  + s z with s = eta sqrt((1 - ab_{t-1}) / (1 - ab_t)) sqrt(1 - ab_t / ab_{t-1}); eta = 0 is
  deterministic, eta = 1 matches ancestral sampling with the fixed-small variance.

The deterministic ODE solvers (registry ``ODE_SOLVERS``) are whole sampling functions:

* ``dpmpp_2m``: DPM-Solver++ (2M) (Lu et al. 2022, "DPM-Solver++", Alg. 2; multistep, second
  order, data prediction) on the log-SNR times lambda = log(alpha / sigma) of the (respaced)
  process, alpha = sqrt(ab), sigma = sqrt(1 - ab). One network evaluation per step of the
  process; the first step is first order (no history yet) and so is the last one, which goes to
  sigma = 0 and returns the data prediction at the smallest kept step (diffusers'
  ``final_sigmas_type="zero"`` with ``lower_order_final``; with a sigma = 0 target the last step is
  first order for every step count). NFE = the number of steps of the process.
* ``heun`` and ``euler_ode``: Karras et al. 2022 ("EDM") Alg. 1 with S_churn = 0 (deterministic),
  second order (Heun) and first order (Euler), on the ODE dx/dsigma = (x - D(x; sigma)) / sigma of
  the sigma parameterisation sigma = sqrt((1 - ab) / ab), x = x_vp / sqrt(ab), where
  D(x; sigma) = x0_hat(x_vp, t) is the denoiser. Time grid (EDM Eq. 5, rho = 7):
  sigma_i = (sigma_max^(1/rho) + i / (N - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho,
  i = 0..N-1, then sigma_N = 0, with sigma_min the sigma of the smallest training step and
  sigma_max = min(80, the sigma of the largest training step) (80: Karras et al. Table 1 for the
  discrete VP models; the cosine schedule's last steps reach sigma ~ 2e4, where a rho = 7 grid
  would spend most of its levels). The denoiser is queried at the **nearest training
  timestep**: every sigma_i is rounded to the nearest training sigma (EDM's ``round_sigma``
  for discrete-time models, nearest in |sigma - sigma_j|), so each step uses exactly the sigma
  the network was trained at; grid points that round to the same step are merged (only for
  large N, where the rho = 7 grid is denser than the training steps near sigma_min), and the
  NFE counts the merged grid. Heun:
  NFE = 2N - 1 (no correction on the step to sigma = 0); Euler: NFE = N. Euler on this ODE
  is DDIM (eta = 0) on the rounded grid (Song et al. 2021 Sec. 4.3, Karras et al. 2022 Sec. 3).
  ``steps`` is the grid size N (an int >= 2); respacing specs do not apply. With few levels and
  strong classifier guidance Heun's correction can overshoot near sigma_min, where the guided
  slope is steep (on the exact ring at s = 5: 10 levels fail, 20 are fine); Euler and
  DPM-Solver++ stay stable there.

Classifier guidance (Dhariwal & Nichol 2021) enters through a ``guidance`` object: ancestral
sampling shifts the mean by ``Sigma * grad`` (Alg. 1), DDIM and every ODE solver shift the noise
prediction by ``-sqrt(1 - ab_t) * grad`` (Alg. 2) and recompute x0 from it, where
``grad = s * grad_x log p(y | x_t, t)`` (see guidance.py). Classifier-free guidance lives in the
model function, so every solver supports it. All noise comes from a noise source
(``sampler.ImageNoise``: one generator per image, or ``sampler.GeneratorNoise``).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from generative_bench.backends.diffusion.gaussian import Clip, GaussianDiffusion, ModelFn
from generative_bench.errors import InputError
from generative_bench.sampler import as_noise

Moments = Callable[..., tuple[torch.Tensor, torch.Tensor]]

#: the rho of the Karras et al. (2022) time discretisation (their Eq. 5)
KARRAS_RHO = 7.0
#: the largest noise level of the grid: Karras et al. (2022) Table 1 use sigma_max = 80 for the
#: discrete-time VP models (ADM / improved DDPM); a training process whose largest sigma is
#: smaller starts there
KARRAS_SIGMA_MAX = 80.0


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


# ---------------------------------------------------------------------- shared pieces of the ODE solvers
def predict(process: GaussianDiffusion, model: ModelFn, x: torch.Tensor, t: torch.Tensor, clip_denoised: Clip = True,
            guidance: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0_hat, eps_hat) at x_t (VP space), with x0 clipping and the classifier-guidance eps shift."""
    out = process.p_mean_variance(model, x, t, clip_denoised=clip_denoised)
    if guidance is not None:
        out = guidance.shift_eps(process, out, x, t)
    return out["pred_xstart"], out["eps"]


def _no_eta(method: str, eta: float) -> None:
    if eta:
        raise InputError(f"sampling option eta={eta} applies to method=ddim only; {method} is deterministic, "
                         "set eta=0.0")


def _progress(steps, progress: bool, method: str):
    if not progress:
        return steps
    from tqdm.auto import tqdm

    return tqdm(list(steps), desc=f"{method} sampling", unit="step", leave=False)


def log_snr(process: GaussianDiffusion) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(alpha, sigma, lambda) per step in float64: alpha = sqrt(ab), sigma = sqrt(1 - ab), lambda = log(alpha/sigma)."""
    ab = process.alphas_cumprod
    alpha, sigma = ab.sqrt(), (1.0 - ab).sqrt()
    return alpha, sigma, alpha.log() - sigma.log()


# ---------------------------------------------------------------------- DPM-Solver++ (2M)
def dpmpp_2m_sample(process: GaussianDiffusion, model: ModelFn, shape, noise: Any = None, clip_denoised: Clip = True,
                    eta: float = 0.0, device: torch.device | str = "cpu", progress: bool = False,
                    guidance: Any = None) -> torch.Tensor:
    """DPM-Solver++ (2M) from x_T ~ N(0, I) over every step of ``process`` (Lu et al. 2022, Alg. 2).

    From step s to t (h = lambda_t - lambda_s, h_prev the previous step's h, r = h_prev / h):
    x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) D with D = x0_s (first order) or
    D = (1 + 1/(2r)) x0_s - 1/(2r) x0_prev (second order). The step from the smallest kept step to
    sigma = 0 is first order and gives D = x0.
    """
    _no_eta("dpmpp_2m", eta)
    noise = as_noise(noise, device)
    x = noise.randn(shape).to(device)
    alpha, sigma, lam = log_snr(process)
    x0_prev = None
    for i in _progress(reversed(range(process.num_timesteps)), progress, "dpmpp_2m"):
        t = torch.full((shape[0],), i, device=device, dtype=torch.long)
        x0, _ = predict(process, model, x, t, clip_denoised, guidance)
        if i == 0:  # to sigma = 0: first order, x = alpha * x0 with alpha = 1
            return x0
        h = float(lam[i - 1] - lam[i])
        d = x0
        if x0_prev is not None:
            r = float(lam[i] - lam[i + 1]) / h
            d = x0 + (x0 - x0_prev) / (2.0 * r)
        x = float(sigma[i - 1] / sigma[i]) * x - float(alpha[i - 1]) * math.expm1(-h) * d
        x0_prev = x0
    return x  # not reached: the loop returns at step 0


# ---------------------------------------------------------------------- Karras et al. (2022) Heun / Euler
def training_sigmas(process: GaussianDiffusion) -> torch.Tensor:
    """sigma_j = sqrt((1 - ab_j) / ab_j) of every step of ``process`` (float64, increasing)."""
    ab = process.alphas_cumprod
    return ((1.0 - ab) / ab).sqrt()


def karras_sigmas(sigma_min: float, sigma_max: float, n: int, rho: float = KARRAS_RHO) -> torch.Tensor:
    """EDM Eq. 5: (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, i = 0..n-1 (float64)."""
    if int(n) < 2:
        raise InputError(f"the Karras et al. time grid needs at least 2 noise levels, got {n}")
    ramp = torch.arange(int(n), dtype=torch.float64) / (int(n) - 1)
    hi, lo = float(sigma_max) ** (1.0 / rho), float(sigma_min) ** (1.0 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def karras_grid(process: GaussianDiffusion, n: int, rho: float = KARRAS_RHO) -> tuple[torch.Tensor, torch.Tensor]:
    """(training step indices, their sigmas), decreasing: the EDM grid of ``n`` levels rounded to the
    nearest training sigma, repeats merged."""
    train = training_sigmas(process)
    grid = karras_sigmas(float(train[0]), min(float(train[-1]), KARRAS_SIGMA_MAX), n, rho)
    nearest = (grid[:, None] - train[None, :]).abs().argmin(1)
    idx = torch.unique_consecutive(nearest)
    return idx, train[idx]


def heun_step(x: torch.Tensor, sigma: float, sigma_next: float, denoise: Callable[[torch.Tensor], torch.Tensor],
              denoise_next: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """One step of EDM Alg. 1 (S_churn = 0) from ``sigma`` to ``sigma_next``: Euler, then Heun's
    correction with the slope at ``sigma_next`` when ``denoise_next`` is given and sigma_next > 0.
    ``denoise(x)`` / ``denoise_next(x)`` are D(x; sigma) / D(x; sigma_next)."""
    d = (x - denoise(x)) / sigma
    x_next = x + (sigma_next - sigma) * d
    if denoise_next is not None and sigma_next > 0:
        d_next = (x_next - denoise_next(x_next)) / sigma_next
        x_next = x + (sigma_next - sigma) * (0.5 * d + 0.5 * d_next)
    return x_next


def _karras_sample(process: GaussianDiffusion, model: ModelFn, shape, noise: Any, steps: int, second_order: bool,
                   clip_denoised: Clip, device, progress: bool, guidance: Any, method: str) -> torch.Tensor:
    idx, sig = karras_grid(process, check_grid_steps(method, steps, process))
    noise = as_noise(noise, device)
    x = noise.randn(shape).to(device) * float(sig[0])
    n = shape[0]

    def denoiser(k: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """D(x; sigma_k): the network at training step idx[k] on x_vp = x sqrt(ab) = x / sqrt(1 + sigma^2)."""
        t = torch.full((n,), int(idx[k]), device=device, dtype=torch.long)
        scale = float(process.alphas_cumprod[idx[k]].sqrt())
        return lambda y: predict(process, model, y * scale, t, clip_denoised, guidance)[0]

    m = len(idx)
    for k in _progress(range(m), progress, method):
        last = k + 1 == m
        x = heun_step(x, float(sig[k]), 0.0 if last else float(sig[k + 1]), denoiser(k),
                      denoiser(k + 1) if second_order and not last else None)
    return x


def heun_sample(process: GaussianDiffusion, model: ModelFn, shape, noise: Any = None, steps: int | None = None,
                clip_denoised: Clip = True, eta: float = 0.0, device: torch.device | str = "cpu",
                progress: bool = False, guidance: Any = None) -> torch.Tensor:
    """EDM Heun (2nd order, deterministic) on the rho = 7 grid of ``steps`` levels of the training process."""
    _no_eta("heun", eta)
    return _karras_sample(process, model, shape, noise, steps, True, clip_denoised, device, progress, guidance, "heun")


def euler_ode_sample(process: GaussianDiffusion, model: ModelFn, shape, noise: Any = None, steps: int | None = None,
                     clip_denoised: Clip = True, eta: float = 0.0, device: torch.device | str = "cpu",
                     progress: bool = False, guidance: Any = None) -> torch.Tensor:
    """Euler on the probability-flow ODE on the same grid as ``heun`` (EDM Alg. 1 without the correction)."""
    _no_eta("euler_ode", eta)
    return _karras_sample(process, model, shape, noise, steps, False, clip_denoised, device, progress, guidance,
                          "euler_ode")


#: whole-trajectory solvers; ``GRID_METHODS`` run on the training process's Karras grid (steps = N)
ODE_SOLVERS: dict[str, Callable[..., torch.Tensor]] = {"dpmpp_2m": dpmpp_2m_sample, "heun": heun_sample,
                                                      "euler_ode": euler_ode_sample}
GRID_METHODS = ("heun", "euler_ode")
METHODS = tuple(sorted([*SOLVERS, *ODE_SOLVERS]))


def check_method(method: str) -> None:
    if method not in METHODS:
        raise InputError(f"unknown diffusion sampling method {method!r}; choose one of {list(METHODS)}")


def check_grid_steps(method: str, steps: Any, process: GaussianDiffusion) -> int:
    """``steps`` of a Karras-grid method as an int N in [2, T]."""
    if isinstance(steps, str) and steps.strip().isdigit():
        steps = int(steps)
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise InputError(f"method={method} needs steps=N, an int >= 2 (the noise levels of the Karras et al. grid, "
                         f"NFE {'2N-1' if method == 'heun' else 'N'}); got steps={steps!r} (respacing specs apply "
                         "to ancestral, ddim and dpmpp_2m)")
    if not 2 <= steps <= process.num_timesteps:
        raise InputError(f"method={method}: steps={steps} must be in [2, {process.num_timesteps}] (the training "
                         f"process has T={process.num_timesteps} steps)")
    return steps


def sample_loop(process: GaussianDiffusion, model: ModelFn, shape, noise: Any = None,
                method: str = "ancestral", eta: float = 0.0, clip_denoised: Clip = True,
                device: torch.device | str = "cpu", progress: bool = False, guidance: Any = None,
                steps: int | None = None) -> torch.Tensor:
    """Run the reverse process from x_T ~ N(0, I) to x_0; all noise comes from ``noise``
    (an ``ImageNoise``, a ``torch.Generator`` or None). ``steps`` is the grid size of ``heun`` /
    ``euler_ode`` (which take the training process); the other methods run every step of ``process``."""
    check_method(method)
    if method in ODE_SOLVERS:
        kw = {"steps": steps} if method in GRID_METHODS else {}
        return ODE_SOLVERS[method](process, model, shape, noise, clip_denoised=clip_denoised, eta=eta, device=device,
                                   progress=progress, guidance=guidance, **kw)
    moments = SOLVERS[method]
    noise = as_noise(noise, device)
    x = noise.randn(shape).to(device)
    step_noise = noise.randn_steps(shape, process.num_timesteps)
    for i in _progress(reversed(range(process.num_timesteps)), progress, method):
        t = torch.full((shape[0],), i, device=device, dtype=torch.long)
        mean, var = moments(process, model, x, t, clip_denoised=clip_denoised, eta=eta, guidance=guidance)
        z = next(step_noise).to(device)
        x = mean + var.sqrt() * z if i > 0 else mean
    return x
