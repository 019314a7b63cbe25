"""Guidance for class-conditional diffusion sampling: classifier guidance and classifier-free guidance.

* Classifier guidance (Dhariwal & Nichol 2021, Alg. 1 and 2) with a noise-aware classifier
  p(y | x_t, t): ancestral sampling shifts the mean of p(x_{t-1} | x_t) by ``s * Sigma *
  grad_x log p(y | x_t, t)`` (Alg. 1); DDIM replaces the noise prediction by
  ``eps - sqrt(1 - ab_t) * s * grad_x log p(y | x_t, t)`` and recomputes x0 from it (Alg. 2).
  On a respaced process the classifier sees the original timestep, as the denoiser does.
* Classifier-free guidance (Ho & Salimans 2022, Eq. 6): one network trained with label dropout
  predicts both eps(x_t, y) and eps(x_t, null); ``eps = (1 + w) eps(x_t, y) - w eps(x_t, null)``.
  w = 0 is the conditional model, w = -1 the unconditional one (the null class); learned
  variances are taken from the conditional output.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from generative_bench.backends.diffusion.gaussian import GaussianDiffusion


class ClassifierGuidance:
    """``s * grad_x log p(y | x_t, t)`` of a noise-aware classifier, applied by the solvers."""

    def __init__(self, classifier: nn.Module, labels: torch.Tensor, scale: float):
        self.classifier = classifier
        self.labels = labels
        self.scale = float(scale)

    def grad(self, process: GaussianDiffusion, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``s * d/dx log p(y | x, t)`` per example (the classifier sees ``process.model_time(t)``).

        The gradient is taken in at least float32 (half precision inputs are promoted) and in
        float64 for float64 inputs, so double-precision sampling keeps its precision.
        """
        dtype = torch.promote_types(x.dtype, torch.float32)
        with torch.enable_grad():
            x_in = x.detach().to(dtype).requires_grad_(True)
            logits = self.classifier(x_in, process.model_time(t))
            logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
            chosen = F.log_softmax(logits, dim=-1).gather(1, self.labels.view(-1, 1)).sum()
            (g,) = torch.autograd.grad(chosen, x_in)
        return self.scale * g.to(x.dtype)

    def shift_mean(self, process: GaussianDiffusion, out: dict[str, torch.Tensor], x: torch.Tensor,
                   t: torch.Tensor) -> torch.Tensor:
        """Alg. 1: mu + s Sigma grad log p(y | x_t)."""
        return out["mean"] + out["variance"] * self.grad(process, x, t)

    def shift_eps(self, process: GaussianDiffusion, out: dict[str, torch.Tensor], x: torch.Tensor,
                  t: torch.Tensor) -> dict[str, torch.Tensor]:
        """Alg. 2: eps - sqrt(1 - ab_t) s grad log p(y | x_t), with x0 and the mean recomputed from it."""
        eps = out["eps"] - process.coef("sqrt_one_minus_alphas_cumprod", t, x) * self.grad(process, x, t)
        x0 = process.predict_xstart_from_eps(x, t, eps)
        mean, _, _ = process.q_posterior_mean_variance(x0, x, t)
        return {**out, "eps": eps, "pred_xstart": x0, "mean": mean}


def classifier_free(net: Callable[..., torch.Tensor], labels: torch.Tensor, null_class: int, w: float,
                    channels: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The model function ``(x, t) -> output`` of classifier-free guidance with weight ``w``.

    w = 0 and w = -1 call the network once (conditional / null class); otherwise one batched
    call on [x; x] with [y; null] gives both predictions. Only the first ``channels`` output
    channels (eps) are guided; further channels (a learned variance) come from the conditional
    prediction.
    """
    w = float(w)
    null = torch.full_like(labels, int(null_class))
    if w == 0.0:
        return lambda x, t: net(x, t, labels)
    if w == -1.0:
        return lambda x, t: net(x, t, null)

    def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null]))
        cond, uncond = out.chunk(2)
        eps = (1.0 + w) * cond[:, :channels] - w * uncond[:, :channels]
        return torch.cat([eps, cond[:, channels:]], dim=1)

    return guided


__all__ = ["ClassifierGuidance", "classifier_free"]
