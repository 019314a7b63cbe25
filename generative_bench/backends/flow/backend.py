"""The normalizing-flow backend (Dinh et al. 2017 RealNVP; Kingma & Dhariwal 2018 Glow).

Training maximises the exact log-likelihood of the change of variables (Dinh et al. 2017, eq. 3).
8-bit images are dequantized uniformly, z = 2 (k + u) / 256 - 1 with u ~ U[0, 1) per sub-pixel
(Theis et al. 2016; the same ``dequantize`` as the diffusion ODE likelihood), so

    -log2 P(k) / D <= E_u[-log2 p(z)] / D + 7   (uniform-dequantized NLL, bits/dim)

is an upper bound on the discrete NLL (the +7 is log2(256) - log2(2) for the bin width and the
map to [-1, 1)). Vectors use the continuous density (exact; bits/dim can be negative).

Sampling: latents = mean + T * std * eps with the temperature T (Glow, Sec. 5.1; T = 1 is the
model), then the inverse flow; images are quantized back to the 8-bit level whose bin holds the
flow's output. Class-conditional (``num_classes > 0``): class biases in every coupling network
and a class-dependent top prior; the NLL is the exact marginal or the label's (``condition``).
Flows run in float32 (no autocast: the log-determinants and the inverse need the precision).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch

from generative_bench.backends.base import Backend, NLLResult, StepContext, split_batch
from generative_bench.backends.diffusion.ode import DEQUANT_BITS, dequantize
from generative_bench.backends.exact_likelihood import condition_name, exact_nll
from generative_bench.backends.flow.nets import CouplingVectorFlow, GlowImageFlow
from generative_bench.errors import InputError
from generative_bench.sampler import as_noise

DEQUANT_NAME = ("uniform-dequantized NLL (an upper bound on the discrete NLL): -log2 p(2 (k + u) / 256 - 1) "
                "+ 7 bits/dim, one draw u ~ U[0, 1) per sub-pixel, exact change of variables")


def quantize_8bit(z: torch.Tensor) -> torch.Tensor:
    """Dequantized model-space values -> model space of the 8-bit level k whose bin [k, k+1)/256 holds them."""
    k = torch.floor((z + 1.0) * 128.0).clamp(0, 255)
    return k / 127.5 - 1.0


class FlowBackend(Backend):
    """Glow (images) or a coupling flow (vectors); see the module docstring.

    ``image_net`` / ``vector_net`` are factories ``(data_shape=..., num_classes=...) -> flow``
    (Hydra ``_partial_`` configs); the one matching ``data_shape`` is built.
    """

    family = "flow"
    display_name = "normalizing flow"
    KNOB_SYMBOLS = {"temperature": "T"}

    def __init__(self, data_shape: Sequence[int], image_net: Callable[..., Any] | None = None,
                 vector_net: Callable[..., Any] | None = None, num_classes: int = 0):
        super().__init__(data_shape, num_classes=num_classes)
        if len(self.data_shape) not in (1, 3):
            raise InputError(f"FlowBackend needs data_shape [C, H, W] (images) or [d] (vectors), "
                             f"got {list(data_shape)}")
        factory = (image_net or GlowImageFlow) if self.is_image else (vector_net or CouplingVectorFlow)
        cond = {"num_classes": self.num_classes} if self.conditional else {}
        self.net = factory(data_shape=self.data_shape, **cond)

    # ----------------------------------------------------------------- likelihood
    def _labels(self, y: torch.Tensor | None) -> torch.Tensor | None:
        return y if self.conditional else None

    def log_prob(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """log p(z) in nats per example of the flow's continuous input (dequantized for images)."""
        return self.net.log_prob(z, self._labels(y))

    def _bpd(self, log_p: torch.Tensor) -> torch.Tensor:
        bpd = -log_p / (self.num_dims * math.log(2.0))
        return bpd + DEQUANT_BITS if self.is_image else bpd

    def training_step(self, batch, ctx: StepContext) -> dict[str, float]:
        x, y = split_batch(batch)
        if self.conditional and y is None:
            raise InputError("this flow is class-conditional (num_classes > 0) but the data has no labels")
        z = dequantize(x, None) if self.is_image else x
        loss = self._bpd(self.log_prob(z, y)).mean()
        ctx.optimize("model", loss)
        return {"loss": loss.item(), "nll_bpd": loss.item()}

    def nll_bound_name(self, condition: str = "marginal") -> str:
        kind = (DEQUANT_NAME if self.is_image
                else "exact NLL (change of variables; continuous density, bits/dim can be negative)")
        return f"{kind} (normalizing flow){condition_name(self, condition)}"

    @torch.no_grad()
    def nll(self, x: torch.Tensor, generator: torch.Generator | None = None, labels: torch.Tensor | None = None,
            condition: str = "marginal", **options: Any) -> NLLResult:
        """Per-example NLL in bits/dim; images: the uniform-dequantized bound, noise from ``generator``."""
        if options:
            raise InputError(f"FlowBackend.nll got unknown option(s) {sorted(options)}; valid: condition")
        was_training = self.training
        self.eval()
        try:
            z = None

            def score(x_in: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
                nonlocal z
                if z is None:  # one dequantization draw per example, shared by every class
                    z = dequantize(x_in, generator) if self.is_image else x_in
                return self.log_prob(z, y)

            bpd = exact_nll(self, score, x, labels, condition)
        finally:
            self.train(was_training)
        if self.is_image:
            bpd = bpd + DEQUANT_BITS
        return NLLResult(bpd=bpd.detach(), bound=self.nll_bound_name(condition))

    # ----------------------------------------------------------------- sampling
    def knobs(self) -> dict[str, Any]:
        """The latent temperature T (1 = the model)."""
        return {"temperature": 1.0}

    def default_sampling(self) -> dict[str, Any]:
        return self.knobs()

    def resolve_settings(self, **sampling: Any) -> dict[str, Any]:
        settings = super().resolve_settings(**sampling)
        t = settings["temperature"]
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not float(t) >= 0:
            raise InputError(f"flow sampling temperature must be a number >= 0, got {t!r}")
        settings["temperature"] = float(t)
        return settings

    def sample_model_space(self, n: int, noise: Any = None, labels: torch.Tensor | None = None,
                           temperature: float = 1.0) -> torch.Tensor:
        if not float(temperature) >= 0:
            raise InputError(f"flow sampling temperature must be >= 0, got {temperature}")
        if self.conditional and labels is None:
            raise InputError("a conditional flow samples with labels; draw through sample() or draw(), "
                             "which pick classes uniformly, or pass labels")
        y = None if labels is None else labels.to(self.device)
        z = self.net.sample(int(n), as_noise(noise, self.device), float(temperature), self._labels(y))
        return quantize_8bit(z) if self.is_image else z

    # ----------------------------------------------------------------- description
    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "net": type(self.net).__name__,
                "likelihood": DEQUANT_NAME if self.is_image else "exact continuous density (change of variables)"}


__all__ = ["DEQUANT_NAME", "FlowBackend", "quantize_8bit"]
