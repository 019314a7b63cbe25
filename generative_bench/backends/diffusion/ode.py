"""Probability-flow ODE likelihood: exact log-densities of a diffusion model by the
instantaneous change of variables (Song et al. 2021, "Score-based generative modeling through
stochastic differential equations", Sec. 4.3 and App. D; Chen et al. 2018, Grathwohl et al. 2019).

The ODE is the one of the Karras et al. (2022) sigma parameterisation: with
sigma = sqrt((1 - ab) / ab) and x = x_vp / sqrt(ab) = x_vp sqrt(1 + sigma^2),

    dx / dsigma = eps_hat(x / sqrt(1 + sigma^2), sigma),

which is the probability-flow ODE of the VP diffusion written in x and sigma (its marginals are
those of x_0 + sigma n, n ~ N(0, I)). It is integrated in u = log sigma (dx/du = sigma dx/dsigma)
from ``sigma_start`` (near 0: the data) to ``sigma_end`` (the largest training sigma) with the
classical fixed-step Runge-Kutta scheme (RK4, 4 network evaluations per step), carrying
d log p / du = -div_x(dx/du) along. Then

    log p_start(x) = log N(x_end; 0, (1 + sigma_end^2) I) + int div_x(dx/du) du,

the prior being N(0, I) in VP space at the last step. The density is that of a continuous
normalising flow, so it is a likelihood, not a bound; it is a different quantity from the
variational bound of likelihood.py and is named apart from it.

* Divergence: exact (one autograd pass per dimension) or Hutchinson's estimator
  E_v[v^T (d f / d x) v] (Hutchinson 1989) with ``probes`` Rademacher vectors per example, drawn
  once per example from the passed generator and kept along the path (as in FFJORD), so the
  integral is estimated without bias.
* Continuous time for a discrete-time network: a sigma between two training sigmas is mapped to a
  fractional timestep by interpolating the step index linearly in log sigma (as
  k-diffusion / diffusers' ``_sigma_to_t``); below the smallest training sigma sigma_0 the index
  runs linearly in sigma^2 from -1 (sigma = 0, ab = 1) to 0 (``timestep_of_sigma``; the network
  sees a model time in (-1, 0) there, a one-step extrapolation). ``sigma_of_timestep`` inverts it.
* 8-bit images: uniform dequantization y = (k + u) / 256, u ~ U[0, 1)^D (Theis et al. 2016; as in
  Song et al.'s code), mapped to model space z = 2 y - 1; with the log-det of that affine map,
  -log2 P(k) / D <= E_u[-log2 p_z(z)] / D + log2(256) - log2(2), i.e. +7 bits/dim
  (``DEQUANT_BITS``): a uniform density on [-1, 1]^D scores exactly 8 bits/dim.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from generative_bench.backends.diffusion.gaussian import GaussianDiffusion, ModelFn
from generative_bench.backends.diffusion.solvers import training_sigmas
from generative_bench.errors import InputError

LN2 = math.log(2.0)
#: log2(256) - log2(2): dequantization of 8-bit levels to [0, 1) and the map to [-1, 1)
DEQUANT_BITS = math.log2(256.0) - math.log2(2.0)
DIVERGENCES = ("auto", "exact", "hutchinson")
#: "auto" uses the exact divergence up to this many dimensions, Hutchinson above
EXACT_MAX_DIMS = 16

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------------- continuous time of a discrete model
def timestep_of_sigma(process: GaussianDiffusion, sigma: torch.Tensor) -> torch.Tensor:
    """Fractional step index of ``sigma`` (float64; see the module docstring), clamped at T - 1."""
    train = training_sigmas(process)
    s = torch.as_tensor(sigma, dtype=torch.float64).clamp(min=0.0, max=float(train[-1]))
    log_train = train.log()
    k = torch.searchsorted(train, s.clamp(min=float(train[0]))).clamp(1, len(train) - 1) if len(train) > 1 else None
    if k is None:
        above = torch.zeros_like(s)
    else:
        lo, hi = log_train[k - 1], log_train[k]
        frac = (s.clamp(min=float(train[0])).log() - lo) / (hi - lo)
        above = (k - 1).double() + frac
    below = (s / train[0]) ** 2 - 1.0
    return torch.where(s < train[0], below, above)


def sigma_of_timestep(process: GaussianDiffusion, index: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`timestep_of_sigma` for indices in [-1, T - 1] (float64)."""
    train = training_sigmas(process)
    s = torch.as_tensor(index, dtype=torch.float64).clamp(-1.0, len(train) - 1.0)
    below = train[0] * (s + 1.0).clamp(min=0.0).sqrt()
    if len(train) == 1:
        return torch.where(s < 0, below, train[0].expand_as(s))
    k = s.clamp(min=0.0).floor().long().clamp(max=len(train) - 2)
    frac = s.clamp(min=0.0) - k.double()
    log_train = train.log()
    above = torch.exp(log_train[k] + frac * (log_train[k + 1] - log_train[k]))
    return torch.where(s < 0, below, above)


def network_eps(process: GaussianDiffusion, model: ModelFn) -> EpsFn:
    """``eps(x_vp, sigma)``: the network's noise prediction at the fractional timestep of each sigma.

    ``process`` is the training process (its model time is the index, times 1000 / T when it
    rescales timesteps); learned-variance channels are dropped.
    """
    if process.num_timesteps != process.original_num_timesteps:
        raise InputError("the probability-flow ODE runs on the training process, not a respaced one")
    scale = 1000.0 / process.original_num_timesteps if process.rescale_timesteps else 1.0

    def eps(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        t = (timestep_of_sigma(process, sigma) * scale).to(x.device, torch.float32)
        return process.split_output(model(x, t), x)[0]

    return eps


# ---------------------------------------------------------------------- divergence
def rademacher(shape, generator: torch.Generator | None, device, dtype=torch.float32) -> torch.Tensor:
    """+-1 with probability 1/2 each, drawn from ``generator``."""
    gen_device = generator.device if generator is not None else device
    v = torch.randint(0, 2, tuple(shape), generator=generator, device=gen_device).to(device, dtype)
    return 2.0 * v - 1.0


def divergence(f: torch.Tensor, x: torch.Tensor, probes: torch.Tensor | None = None) -> torch.Tensor:
    """div_x f per example: exact (``probes`` None: one autograd pass per dimension) or Hutchinson's
    estimate mean_k v_k^T (df/dx) v_k with ``probes`` of shape (K, *x.shape).

    ``f`` must be computed from ``x`` (which requires grad) example by example.
    """
    if probes is None:
        flat = f.flatten(1)
        d = flat.shape[1]
        out = torch.zeros(len(x), dtype=f.dtype, device=f.device)
        for i in range(d):
            (g,) = torch.autograd.grad(flat[:, i].sum(), x, retain_graph=i + 1 < d)
            out = out + g.flatten(1)[:, i]
        return out
    k = len(probes)
    out = torch.zeros(len(x), dtype=f.dtype, device=f.device)
    for j, v in enumerate(probes):
        (g,) = torch.autograd.grad((f * v).sum(), x, retain_graph=j + 1 < k)
        out = out + (g * v).flatten(1).sum(1)
    return out / k


# ---------------------------------------------------------------------- the ODE and its likelihood
def pf_ode_log_likelihood(eps: EpsFn, x: torch.Tensor, sigma_start: float, sigma_end: float, steps: int,
                          probes: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """log p_{sigma_start}(x) per example in nats, by RK4 in u = log sigma with ``steps`` steps.

    ``x`` is a point at sigma_start in the sigma parameterisation (data: x itself); ``probes``
    (K, *x.shape) selects Hutchinson's estimator, None the exact divergence. Returns the prior
    term log N(x_end; 0, (1 + sigma_end^2) I), the divergence integral, their sum ``log_p`` and
    the end point ``x_end``.
    """
    if not 0.0 < float(sigma_start) < float(sigma_end):
        raise InputError(f"the ODE likelihood needs 0 < sigma_start < sigma_end, got {sigma_start} and {sigma_end}")
    if int(steps) < 1:
        raise InputError(f"the ODE likelihood needs steps >= 1, got {steps}")
    n = len(x)
    u0, u1 = math.log(float(sigma_start)), math.log(float(sigma_end))
    h = (u1 - u0) / int(steps)

    def field(y: torch.Tensor, u: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(dx/du, div_x dx/du) at (y, u), detached."""
        sigma = math.exp(u)
        with torch.enable_grad():
            y = y.detach().requires_grad_(True)
            s = torch.full((n,), sigma, dtype=torch.float64)
            f = sigma * eps(y / math.sqrt(1.0 + sigma * sigma), s).to(y.dtype)
            div = divergence(f, y, probes)
        return f.detach(), div.detach()

    y = x.detach().clone()
    acc = torch.zeros(n, dtype=torch.float64, device=x.device)
    for m in range(int(steps)):
        u = u0 + m * h
        k1, d1 = field(y, u)
        k2, d2 = field(y + 0.5 * h * k1, u + 0.5 * h)
        k3, d3 = field(y + 0.5 * h * k2, u + 0.5 * h)
        k4, d4 = field(y + h * k3, u + h)
        y = y + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        acc = acc + (h / 6.0) * (d1 + 2.0 * d2 + 2.0 * d3 + d4).double()
    var = 1.0 + float(sigma_end) ** 2
    dims = y[0].numel()
    prior = -0.5 * (y.double().flatten(1) ** 2).sum(1) / var - 0.5 * dims * math.log(2.0 * math.pi * var)
    return {"prior": prior, "divergence": acc, "log_p": prior + acc, "x_end": y}


def dequantize(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """8-bit images in model space (k / 127.5 - 1) -> z = 2 (k + u) / 256 - 1, u ~ U[0, 1) from ``generator``."""
    levels = ((x.double() + 1.0) * 127.5).round().clamp(0, 255)
    gen_device = generator.device if generator is not None else x.device
    u = torch.rand(tuple(x.shape), generator=generator, device=gen_device, dtype=torch.float64).to(x.device)
    return (2.0 * (levels + u) / 256.0 - 1.0).to(x.dtype)


def resolve_divergence(divergence_name: str, dims: int, probes: int) -> str:
    """``exact`` or ``hutchinson`` for ``divergence_name`` (auto: exact up to EXACT_MAX_DIMS dimensions)."""
    if divergence_name not in DIVERGENCES:
        raise InputError(f"model.nll.divergence must be one of {list(DIVERGENCES)}, got {divergence_name!r}")
    if int(probes) < 1:
        raise InputError(f"model.nll.probes must be >= 1, got {probes}")
    if divergence_name == "auto":
        return "exact" if dims <= EXACT_MAX_DIMS else "hutchinson"
    return divergence_name


def ode_nll_bpd(process: GaussianDiffusion, model: ModelFn, x: torch.Tensor, generator: torch.Generator | None,
                dequantize_8bit: bool, steps: int = 100, sigma_start: float = 1e-3, divergence_name: str = "auto",
                probes: int = 1) -> tuple[dict[str, torch.Tensor], str]:
    """Per-example probability-flow ODE NLL in bits/dim and its name.

    Terms: ``prior`` (-log N(x_end) / (D ln 2)), ``divergence`` (-int div / (D ln 2)) and, for 8-bit
    data, ``dequantization`` (+7); ``total`` is their sum. Dequantization noise and the Hutchinson
    probes are drawn from ``generator`` (in that order).
    """
    dims = x[0].numel()
    how = resolve_divergence(divergence_name, dims, probes)
    sigma_end = float(training_sigmas(process)[-1])
    if not 0.0 < float(sigma_start) < sigma_end:
        raise InputError(f"model.nll.sigma_start must be in (0, {sigma_end:.4g}) (the largest training sigma), "
                         f"got {sigma_start}")
    z = dequantize(x, generator) if dequantize_8bit else x
    v = rademacher((int(probes), *x.shape), generator, x.device, x.dtype) if how == "hutchinson" else None
    out = pf_ode_log_likelihood(network_eps(process, model), z, float(sigma_start), sigma_end, int(steps), v)
    norm = dims * LN2
    terms = {"prior": -out["prior"] / norm, "divergence": -out["divergence"] / norm}
    if dequantize_8bit:
        terms["dequantization"] = torch.full_like(terms["prior"], DEQUANT_BITS)
    terms["total"] = sum(terms.values())
    div = (f"exact divergence ({dims} autograd passes per evaluation)" if how == "exact" else
           f"Hutchinson divergence estimator, {int(probes)} Rademacher probe{'s' if int(probes) > 1 else ''} "
           "per example fixed along the path")
    deq = ", uniform dequantization (k + u) / 256 (+7 bits/dim)" if dequantize_8bit else ""
    name = (f"probability-flow ODE likelihood (RK4, {int(steps)} steps uniform in log sigma from "
            f"sigma={float(sigma_start):.3g} to {sigma_end:.4g}, {4 * int(steps)} network evaluations per example, "
            f"{div}{deq}), T={process.num_timesteps}")
    return terms, name


__all__ = ["DEQUANT_BITS", "DIVERGENCES", "dequantize", "divergence", "network_eps", "ode_nll_bpd",
           "pf_ode_log_likelihood", "rademacher", "sigma_of_timestep", "timestep_of_sigma"]
