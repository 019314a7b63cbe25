"""The Gaussian diffusion process: forward moments, posterior moments and the reverse model.

Notation of Ho et al. (2020): alpha_t = 1 - beta_t, alpha_bar_t = prod_{s<=t} alpha_s.

* q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)                       (Eq. 4)
* q(x_{t-1} | x_t, x_0) = N(mu~_t, beta~_t I) with
  mu~_t = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x_0
          + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t,
  beta~_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t                           (Eq. 6-7)
* p(x_{t-1} | x_t) = N(mu~_t(x_t, x0_hat), Sigma_t) where x0_hat comes from the predicted noise
  (Eq. 11) and Sigma_t is fixed-small (beta~_t), fixed-large (beta_t) or learned-range
  (Nichol & Dhariwal Eq. 15: exp(v log beta_t + (1 - v) log beta~_t) with v = (out + 1) / 2).

As in improved-diffusion, log beta~_0 (= -inf) is replaced by log beta~_1 ("clipped"), and the
fixed-large variance at t = 0 is beta~_1 rather than beta_0. Indices run 0..T-1 (index i is
step t = i + 1 of the paper).

Schedules are kept in float64 and cast to the working dtype after indexing. A process may be a
respaced view of a longer one (see respace.py): ``timestep_map`` maps its indices to the indices
of the original process, which is what the network is conditioned on.
"""

from __future__ import annotations

from typing import Any, Callable, Tuple, Union

import torch

from generative_bench.errors import InputError

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: x_0 clipping: False/None (none), True ([-1, 1]) or a (low, high) pair
Clip = Union[bool, None, Tuple[Any, Any]]
VARIANCES = ("fixed_small", "fixed_large", "learned_range")


class GaussianDiffusion:
    """Schedule-derived quantities and the moments of q and p for one beta schedule."""

    def __init__(self, betas: torch.Tensor, variance: str = "fixed_small", rescale_timesteps: bool = True,
                 timestep_map: torch.Tensor | None = None, original_num_timesteps: int | None = None):
        betas = torch.as_tensor(betas, dtype=torch.float64).flatten()
        if len(betas) < 1 or not ((betas > 0) & (betas < 1)).all():
            raise InputError("diffusion betas must be a non-empty sequence in (0, 1)")
        if variance not in VARIANCES:
            raise InputError(f"unknown variance type {variance!r}; choose one of {list(VARIANCES)}")
        self.variance = variance
        self.rescale_timesteps = bool(rescale_timesteps)
        self.num_timesteps = T = len(betas)
        self.timestep_map = torch.arange(T) if timestep_map is None else torch.as_tensor(timestep_map).long()
        self.original_num_timesteps = int(original_num_timesteps or T)

        alphas = 1.0 - betas
        ab = torch.cumprod(alphas, 0)
        ab_prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
        post_var = betas * (1.0 - ab_prev) / (1.0 - ab)
        first = post_var[1] if T > 1 else betas[0]
        post_var_nonzero = torch.cat([first.reshape(1), post_var[1:]])
        large = torch.cat([first.reshape(1), betas[1:]])
        self.tables: dict[str, torch.Tensor] = {
            "betas": betas,
            "log_betas": betas.log(),
            "alphas_cumprod": ab,
            "alphas_cumprod_prev": ab_prev,
            "sqrt_alphas_cumprod": ab.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1.0 - ab).sqrt(),
            "log_one_minus_alphas_cumprod": (1.0 - ab).log(),
            "sqrt_recip_alphas_cumprod": ab.rsqrt(),
            "sqrt_recipm1_alphas_cumprod": (1.0 / ab - 1.0).sqrt(),
            "posterior_variance": post_var,
            "posterior_log_variance_clipped": post_var_nonzero.log(),
            "posterior_mean_coef1": betas * ab_prev.sqrt() / (1.0 - ab),
            "posterior_mean_coef2": (1.0 - ab_prev) * alphas.sqrt() / (1.0 - ab),
            "fixed_large_variance": large,
            "fixed_large_log_variance": large.log(),
        }
        self._cache: dict[tuple, dict[str, torch.Tensor]] = {}

    # ------------------------------------------------------------------ helpers
    @property
    def betas(self) -> torch.Tensor:
        return self.tables["betas"]

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return self.tables["alphas_cumprod"]

    @property
    def model_channel_factor(self) -> int:
        """Network outputs per data channel: 2 (eps and v) for learned variances, else 1."""
        return 2 if self.variance == "learned_range" else 1

    def _table(self, name: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        key = (str(device), dtype)
        if key not in self._cache:
            self._cache[key] = {k: v.to(device).to(dtype) for k, v in self.tables.items()}
        return self._cache[key][name]

    def coef(self, name: str, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Table ``name`` at indices ``t`` (shape (B,)), broadcastable against ``x``."""
        vals = self._table(name, x.device, x.dtype)[t]
        return vals.reshape(-1, *([1] * (x.ndim - 1)))

    def model_time(self, t: torch.Tensor) -> torch.Tensor:
        """Timestep fed to the network: the original-process index, scaled to [0, 1000) if asked."""
        orig = self.timestep_map.to(t.device)[t].float()
        return orig * (1000.0 / self.original_num_timesteps) if self.rescale_timesteps else orig

    # ------------------------------------------------------------------ forward process
    def q_mean_variance(self, x0: torch.Tensor, t: torch.Tensor):
        """Mean, variance and log-variance of q(x_t | x_0) (Ho et al. Eq. 4)."""
        mean = self.coef("sqrt_alphas_cumprod", t, x0) * x0
        var = (1.0 - self.coef("alphas_cumprod", t, x0)).expand_as(x0)
        return mean, var, self.coef("log_one_minus_alphas_cumprod", t, x0).expand_as(x0)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps."""
        return self.coef("sqrt_alphas_cumprod", t, x0) * x0 + self.coef("sqrt_one_minus_alphas_cumprod", t, x0) * noise

    def q_posterior_mean_variance(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor):
        """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0) (Ho et al. Eq. 6-7)."""
        mean = self.coef("posterior_mean_coef1", t, xt) * x0 + self.coef("posterior_mean_coef2", t, xt) * xt
        var = self.coef("posterior_variance", t, xt).expand_as(xt)
        return mean, var, self.coef("posterior_log_variance_clipped", t, xt).expand_as(xt)

    def predict_xstart_from_eps(self, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)."""
        return self.coef("sqrt_recip_alphas_cumprod", t, xt) * xt - self.coef("sqrt_recipm1_alphas_cumprod", t, xt) * eps

    def predict_eps_from_xstart(self, xt: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """Inverse of ``predict_xstart_from_eps``."""
        return (self.coef("sqrt_recip_alphas_cumprod", t, xt) * xt - x0) / self.coef("sqrt_recipm1_alphas_cumprod", t, xt)

    # ------------------------------------------------------------------ reverse model
    def split_output(self, out: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Network output -> (eps, v or None); v is the learned-range interpolation input."""
        out = out.to(x.dtype)
        c = x.shape[1]
        if out.shape[1] != c * self.model_channel_factor:
            raise InputError(f"network returned {out.shape[1]} channels; variance {self.variance!r} needs "
                             f"{c * self.model_channel_factor} for {c}-channel data")
        return (out[:, :c], out[:, c:]) if self.model_channel_factor == 2 else (out, None)

    def model_variance(self, v: torch.Tensor | None, t: torch.Tensor, x: torch.Tensor):
        """(variance, log-variance) of p(x_{t-1} | x_t) for this process's variance type."""
        if self.variance == "fixed_small":
            log_var = self.coef("posterior_log_variance_clipped", t, x).expand_as(x)
        elif self.variance == "fixed_large":
            log_var = self.coef("fixed_large_log_variance", t, x).expand_as(x)
        else:  # learned_range, Nichol & Dhariwal Eq. 15 (v is not clamped, as in improved-diffusion)
            frac = (v + 1.0) / 2.0
            log_var = frac * self.coef("log_betas", t, x) + (1.0 - frac) * self.coef("posterior_log_variance_clipped", t, x)
        return log_var.exp(), log_var

    def p_mean_variance(self, model: ModelFn, x: torch.Tensor, t: torch.Tensor, clip_denoised: Clip = False,
                        model_output: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Moments of p(x_{t-1} | x_t) plus the predicted x_0 and eps.

        ``model(x, model_time(t))`` predicts eps (and v for learned variances); pass
        ``model_output`` to reuse an output already computed. ``clip_denoised`` clamps the
        predicted x_0 to the data range before it enters the posterior mean: ``True`` = [-1, 1]
        (images), or a ``(low, high)`` pair of floats or tensors broadcastable to x.
        """
        out = model(x, self.model_time(t)) if model_output is None else model_output
        eps, v = self.split_output(out, x)
        var, log_var = self.model_variance(v, t, x)
        x0 = self.predict_xstart_from_eps(x, t, eps)
        if clip_denoised is not False and clip_denoised is not None:
            low, high = (-1.0, 1.0) if clip_denoised is True else clip_denoised
            if torch.is_tensor(low) or torch.is_tensor(high):
                low, high = (torch.as_tensor(b, dtype=x0.dtype, device=x0.device) for b in (low, high))
                x0 = torch.maximum(torch.minimum(x0, high), low)
            else:
                x0 = x0.clamp(float(low), float(high))
            eps = self.predict_eps_from_xstart(x, t, x0)
        mean, _, _ = self.q_posterior_mean_variance(x0, x, t)
        return {"mean": mean, "variance": var, "log_variance": log_var, "pred_xstart": x0, "eps": eps,
                "output": out}

    def describe(self) -> dict:
        return {"num_timesteps": self.num_timesteps, "original_num_timesteps": self.original_num_timesteps,
                "variance": self.variance, "rescale_timesteps": self.rescale_timesteps}
