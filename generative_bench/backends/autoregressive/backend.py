"""The autoregressive backend: a gated PixelCNN for images, a MADE mixture density for vectors.

Images: p(x) = prod over sub-pixels in raster order, channels R, G, B inside a pixel, of the
discretized logistic mixture of the VAE's likelihoods (Salimans et al. 2017, eq. 2; the same
class, shared), whose parameters for sub-pixel (i, j, c) come from a network that sees only the
sub-pixels before it (:mod:`pixelcnn`). The NLL is exact and discrete (8-bit bins), so bits/dim
are comparable with the literature's. Vectors: MADE with a mixture of Gaussians per dimension
(:mod:`made`), an exact continuous density (bits/dim can be negative).

Sampling is sequential: one network pass per sub-pixel (H W C per image) or per dimension (d);
:meth:`network_evaluations` reports exactly that as NFE. Every random number is drawn per image
(component then value, sub-pixel by sub-pixel), so samples do not depend on the batch.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch

from generative_bench.backends.autoregressive.made import MADEMixture
from generative_bench.backends.autoregressive.pixelcnn import GatedPixelCNN
from generative_bench.backends.base import Backend, NLLResult, StepContext, split_batch
from generative_bench.backends.exact_likelihood import condition_name, exact_nll
from generative_bench.backends.vae.likelihoods import DiscretizedLogisticMixture
from generative_bench.errors import InputError
from generative_bench.sampler import as_noise


class AutoregressiveBackend(Backend):
    """PixelCNN (images) or MADE (vectors); see the module docstring.

    ``image_net`` is a factory ``(data_shape=..., out_channels=..., num_classes=...) -> net``
    whose ``forward(x, y)`` gives the likelihood's parameters; ``vector_net`` a factory
    ``(data_shape=..., num_classes=...) -> MADEMixture``-like density (Hydra ``_partial_``).
    ``image_likelihood`` defaults to the VAE's :class:`DiscretizedLogisticMixture`.
    """

    family = "autoregressive"
    display_name = "autoregressive"

    def __init__(self, data_shape: Sequence[int], image_net: Callable[..., Any] | None = None,
                 vector_net: Callable[..., Any] | None = None, image_likelihood: Any = None, num_classes: int = 0):
        super().__init__(data_shape, num_classes=num_classes)
        if len(self.data_shape) not in (1, 3):
            raise InputError(f"AutoregressiveBackend needs data_shape [C, H, W] (images) or [d] (vectors), "
                             f"got {list(data_shape)}")
        cond = {"num_classes": self.num_classes} if self.conditional else {}
        if self.is_image:
            self.likelihood = image_likelihood if image_likelihood is not None else DiscretizedLogisticMixture()
            channels = self.data_shape[0]
            self.net = (image_net or GatedPixelCNN)(data_shape=self.data_shape,
                                                   out_channels=self.likelihood.num_params(channels), **cond)
            with torch.no_grad():  # start from the likelihood's broad mixture, as the VAE decoder does
                self.net.output_layer.weight.mul_(0.1)
                self.net.output_layer.bias.copy_(self.likelihood.initial_bias(channels))
        else:
            self.likelihood = None
            self.net = (vector_net or MADEMixture)(data_shape=self.data_shape, **cond)

    def _labels(self, y: torch.Tensor | None) -> torch.Tensor | None:
        return y.to(self.device) if self.conditional and y is not None else None

    # ----------------------------------------------------------------- likelihood
    def _likelihood_name(self) -> str:
        lik = self.likelihood
        return (f"discretized logistic mixture per sub-pixel, K={lik.num_mixtures}, {lik.bits}-bit "
                "(Salimans et al. 2017 eq. 2)")

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log p(x) in nats per example (discrete for images, a density for vectors)."""
        y = self._labels(y)
        if not self.is_image:
            return self.net.log_prob(x, y)
        return self.likelihood.log_prob(x, self.net(x, y)).flatten(1).sum(1)

    def training_step(self, batch, ctx: StepContext) -> dict[str, float]:
        x, y = split_batch(batch)
        if self.conditional and y is None:
            raise InputError("this autoregressive model is class-conditional (num_classes > 0) but the data has "
                             "no labels")
        with ctx.autocast():
            log_p = self.log_prob(x, y)
        loss = -log_p.float().mean() / (self.num_dims * math.log(2.0))
        ctx.optimize("model", loss)
        return {"loss": loss.item(), "nll_bpd": loss.item()}

    def nll_bound_name(self, condition: str = "marginal") -> str:
        kind = (f"exact NLL (autoregressive over sub-pixels in raster / R, G, B order; {self._likelihood_name()})"
                if self.is_image else
                "exact NLL (autoregressive MADE mixture of Gaussians; continuous density, bits/dim can be negative)")
        return kind + condition_name(self, condition)

    @torch.no_grad()
    def nll(self, x: torch.Tensor, generator: torch.Generator | None = None, labels: torch.Tensor | None = None,
            condition: str = "marginal", **options: Any) -> NLLResult:
        """Per-example exact NLL in bits/dim (one network pass per example and class)."""
        if options:
            raise InputError(f"AutoregressiveBackend.nll got unknown option(s) {sorted(options)}; valid: condition")
        was_training = self.training
        self.eval()
        try:
            bpd = exact_nll(self, self.log_prob, x, labels, condition)
        finally:
            self.train(was_training)
        return NLLResult(bpd=bpd.detach(), bound=self.nll_bound_name(condition))

    # ----------------------------------------------------------------- sampling
    def network_evaluations(self, settings: dict[str, Any]) -> int:
        """One pass per sub-pixel (H W C) for images, per dimension (d) for vectors."""
        return self.num_dims

    def sample_model_space(self, n: int, noise: Any = None, labels: torch.Tensor | None = None,
                           **settings: Any) -> torch.Tensor:
        if settings:
            raise InputError(f"the autoregressive backend has no sampling options, got {sorted(settings)}")
        if self.conditional and labels is None:
            raise InputError("a conditional autoregressive model samples with labels; draw through sample() or "
                             "draw(), which pick classes uniformly, or pass labels")
        noise, y = as_noise(noise, self.device), self._labels(labels)
        if not self.is_image:
            return self.net.sample(int(n), noise, y, device=self.device)
        c, h, w = self.data_shape
        k = self.likelihood.num_mixtures
        x = torch.zeros(int(n), c, h, w, device=self.device)
        for i in range(h):
            for j in range(w):
                for ch in range(c):
                    params = self.net(x, y)[:, :, i:i + 1, j:j + 1].view(int(n), 3, k, c, 1, 1)[:, :, :, ch]
                    value = self.likelihood.sample(params.reshape(int(n), 3 * k, 1, 1), noise, 1)
                    x[:, ch, i, j] = self.likelihood.quantize(value)[:, 0, 0, 0]
        return x

    # ----------------------------------------------------------------- description
    def describe(self) -> dict[str, Any]:
        out = {**super().describe(), "net": type(self.net).__name__,
               "order": "raster, channels R, G, B inside a pixel" if self.is_image else "dimensions 1..d"}
        out["likelihood"] = (self._likelihood_name() if self.is_image
                             else f"mixture of {self.net.num_mixtures} Gaussians per dimension (continuous density)")
        return out


__all__ = ["AutoregressiveBackend"]
