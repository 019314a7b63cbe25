"""Training objectives as small callables ``loss(process, model, x0, t, noise) -> per-example terms``.

* ``simple``: L_simple = ||eps - eps_theta(x_t, t)||^2 averaged over dimensions (Ho et al. Eq. 14).
* ``hybrid``: L_simple + lambda L_vlb with lambda = 0.001 (Nichol & Dhariwal Eq. 16). The VLB term
  sees the predicted mean through a stop-gradient, so only the variance learns from it; with
  L_vlb = sum_t L_t estimated by T * L_t for the sampled t, the term is lambda * T * L_t (bits/dim).
* ``vlb``: the bound itself, T * L_t (Nichol & Dhariwal Sec. 3.3), with no stop-gradient; pair it
  with the ``loss-second-moment`` timestep sampler.
Each returns a dict whose ``"loss"`` entry is the per-example objective to be averaged with the
timestep sampler's importance weights.
"""

from __future__ import annotations

import torch

from generative_bench.backends.diffusion.gaussian import GaussianDiffusion, ModelFn
from generative_bench.backends.diffusion.likelihood import mean_flat, vb_terms_bpd
from generative_bench.errors import InputError


def _forward(process: GaussianDiffusion, model: ModelFn, x0, t, noise):
    xt = process.q_sample(x0, t, noise)
    out = model(xt, process.model_time(t)).float()
    return xt, out


def _vb(process, x0, xt, t, out, decoder: str) -> torch.Tensor:
    return vb_terms_bpd(process, None, x0, xt, t, decoder=decoder, model_output=out)["output"]


class SimpleLoss:
    """L_simple: MSE between the true and the predicted noise."""

    name = "simple"

    def check(self, process: GaussianDiffusion) -> None:
        if process.variance == "learned_range":
            raise InputError("loss=simple does not train a learned variance; use loss=hybrid or loss=vlb, "
                             "or a fixed variance (fixed_small / fixed_large)")

    def __call__(self, process, model, x0, t, noise, decoder: str = "discretized") -> dict[str, torch.Tensor]:
        _, out = _forward(process, model, x0, t, noise)
        eps, _ = process.split_output(out, x0)
        mse = mean_flat((noise - eps) ** 2)
        return {"loss": mse, "mse": mse}


class HybridLoss:
    """L_hybrid = L_simple + lambda * L_vlb with a stop-gradient on the mean in the VLB term."""

    name = "hybrid"

    def __init__(self, vlb_weight: float = 0.001):
        self.vlb_weight = float(vlb_weight)

    def check(self, process: GaussianDiffusion) -> None:
        if process.variance != "learned_range":
            raise InputError("loss=hybrid needs variance=learned_range (its VLB term only trains the "
                             "variance); use loss=simple with a fixed variance")

    def __call__(self, process, model, x0, t, noise, decoder: str = "discretized") -> dict[str, torch.Tensor]:
        xt, out = _forward(process, model, x0, t, noise)
        eps, v = process.split_output(out, x0)
        mse = mean_flat((noise - eps) ** 2)
        frozen = torch.cat([eps.detach(), v], dim=1)
        vb = _vb(process, x0, xt, t, frozen, decoder)
        return {"loss": mse + self.vlb_weight * process.num_timesteps * vb, "mse": mse, "vb": vb}


class VLBLoss:
    """L_vlb: T * L_t, the single-timestep estimate of the whole bound."""

    name = "vlb"

    def check(self, process: GaussianDiffusion) -> None:
        pass

    def __call__(self, process, model, x0, t, noise, decoder: str = "discretized") -> dict[str, torch.Tensor]:
        xt, out = _forward(process, model, x0, t, noise)
        eps, _ = process.split_output(out, x0)
        vb = _vb(process, x0, xt, t, out, decoder)
        return {"loss": process.num_timesteps * vb, "mse": mean_flat((noise - eps) ** 2), "vb": vb}


LOSSES = {"simple": SimpleLoss, "hybrid": HybridLoss, "vlb": VLBLoss}


def make_loss(name: str, vlb_weight: float = 0.001):
    if name not in LOSSES:
        raise InputError(f"unknown diffusion loss {name!r}; choose one of {sorted(LOSSES)}")
    return HybridLoss(vlb_weight) if name == "hybrid" else LOSSES[name]()
