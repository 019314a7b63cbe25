"""DDPM and improved DDPM as one backend over the Gaussian diffusion core.

The presets differ only in configuration (conf/model/ddpm*.yaml, iddpm*.yaml):

* DDPM (Ho et al. 2020): linear schedule, T = 1000, L_simple, fixed variance.
* improved DDPM (Nichol & Dhariwal 2021): cosine schedule, learned-range variance, L_hybrid
  (or L_vlb with the loss-second-moment timestep sampler), T up to 4000.

``sample(n, generator, method=..., steps=..., eta=..., clip_denoised=...)``: ancestral or DDIM
sampling on the full process (``steps=None``) or on a respaced one (``steps=50``, ``"10,10,10"``,
``"ddim50"``). ``nll(x)``: the variational bound in bits/dim with its prior / KL / decoder split.

``clip_denoised`` clamps each predicted x_0 to the data range before it enters the posterior mean
(improved-diffusion's ``clip_denoised``): [-1, 1] for images; for vectors, the per-coordinate range
of the training data, which the backend records while training (buffers ``data_min`` /
``data_max``, saved with the weights). Without it, the cosine schedule's last steps
(alpha_bar_T ~ 1e-9) turn small noise-prediction errors into x_0 errors of thousands.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from generative_bench.backends.base import Backend, NLLResult, StepContext
from generative_bench.backends.diffusion.gaussian import GaussianDiffusion
from generative_bench.backends.diffusion.likelihood import DECODER_NAMES, full_bound
from generative_bench.backends.diffusion.losses import make_loss
from generative_bench.backends.diffusion.respace import respace
from generative_bench.backends.diffusion.samplers import SAMPLERS, sample_loop
from generative_bench.backends.diffusion.schedules import make_betas
from generative_bench.backends.diffusion.timestep_sampler import make_timestep_sampler
from generative_bench.errors import InputError


def _build(factory: Any, **kwargs) -> torch.nn.Module:
    if factory is None:
        raise InputError("model.backend needs a network factory for this data shape "
                         "(image_net for [C, H, W] data, vector_net for [d] data)")
    if not callable(factory):
        from hydra.utils import instantiate

        factory = instantiate(factory, _partial_=True)
    return factory(**kwargs)


class DiffusionBackend(Backend):
    """Gaussian diffusion with an eps-predicting network; see the module docstring.

    ``image_net(in_channels, out_channels, image_size)`` and ``vector_net(dim, out_dim)`` are
    network factories (Hydra ``_partial_`` configs); the one matching ``data_shape`` is built.
    ``out_channels`` doubles for the learned-range variance.
    """

    family = "diffusion"

    def __init__(self, data_shape: Sequence[int], image_net: Callable[..., Any] | None = None,
                 vector_net: Callable[..., Any] | None = None, timesteps: int = 1000, schedule: str = "linear",
                 variance: str = "fixed_large", loss: str = "simple", vlb_weight: float = 0.001,
                 timestep_sampler: str = "uniform", rescale_timesteps: bool = True):
        super().__init__(data_shape)
        if len(self.data_shape) not in (1, 3):
            raise InputError(f"DiffusionBackend needs data_shape [C, H, W] (images) or [d] (vectors), got {list(data_shape)}")
        self.config = {"timesteps": int(timesteps), "schedule": schedule, "variance": variance, "loss": loss,
                       "vlb_weight": float(vlb_weight), "timestep_sampler": timestep_sampler,
                       "rescale_timesteps": bool(rescale_timesteps)}
        self.process = GaussianDiffusion(make_betas(schedule, int(timesteps)), variance=variance,
                                         rescale_timesteps=rescale_timesteps)
        self.loss = make_loss(loss, vlb_weight)
        self.loss.check(self.process)
        self.decoder = "discretized" if self.is_image else "continuous"
        factor = self.process.model_channel_factor
        if self.is_image:
            c, h, w = self.data_shape
            if h != w:
                raise InputError(f"the UNet needs square images, got data_shape {list(self.data_shape)}")
            self.net = _build(image_net, in_channels=c, out_channels=c * factor, image_size=h)
        else:
            d = self.data_shape[0]
            self.net = _build(vector_net, dim=d, out_dim=d * factor)
        self.timestep_sampler = make_timestep_sampler(timestep_sampler, int(timesteps))
        if not self.is_image:  # the training data's range, for clipping x_0 predictions of vectors
            self.register_buffer("data_min", torch.full(self.data_shape, float("inf")))
            self.register_buffer("data_max", torch.full(self.data_shape, float("-inf")))
        self._respaced: dict[str, GaussianDiffusion] = {}

    # ----------------------------------------------------------------- processes
    def respaced(self, steps: int | str | None) -> GaussianDiffusion:
        """The training process, or its respaced view for ``steps`` (cached)."""
        if steps is None:
            return self.process
        if isinstance(steps, bool) or not isinstance(steps, (int, str)):
            raise InputError(f"diffusion steps must be an int, a respacing string ('10,10,10', 'ddim50') or null; "
                             f"got {steps!r}")
        key = str(steps)
        if key not in self._respaced:
            self._respaced[key] = respace(self.process, steps)
        return self._respaced[key]

    # ----------------------------------------------------------------- training
    @property
    def data_range_known(self) -> bool:
        return self.is_image or bool(torch.isfinite(self.data_min).all())

    def clip_range(self, clip_denoised: bool):
        """What ``p_mean_variance`` gets: False, True ([-1, 1]) or the vector data's (min, max)."""
        if not clip_denoised:
            return False
        if self.is_image:
            return True
        if not self.data_range_known:
            raise InputError("clip_denoised=true for vector data clips to the training data's range, which this "
                             "untrained model has not seen; train it first or pass clip_denoised=false")
        return (self.data_min, self.data_max)

    def _clip_default(self, clip_denoised: bool | None) -> bool:
        return self.data_range_known if clip_denoised is None else bool(clip_denoised)

    def training_step(self, x: torch.Tensor, ctx: StepContext) -> dict[str, float]:
        if not self.is_image:
            with torch.no_grad():
                torch.minimum(self.data_min, x.detach().amin(0), out=self.data_min)
                torch.maximum(self.data_max, x.detach().amax(0), out=self.data_max)
        t, weights = self.timestep_sampler.sample(len(x), x.device)
        noise = torch.randn_like(x)
        with ctx.autocast():
            terms = self.loss(self.process, self.net, x, t, noise, decoder=self.decoder)
        loss = (terms["loss"] * weights).mean()
        ctx.optimize("model", loss)
        self.timestep_sampler.update(t, terms["loss"].detach())
        logs = {"loss": float(loss.detach())}
        for k in ("mse", "vb"):
            if k in terms:
                logs[k] = float(terms[k].detach().mean())
        return logs

    # ----------------------------------------------------------------- sampling
    def default_sampling(self) -> dict[str, Any]:
        """Full-length ancestral sampling; x0 predictions clipped to the data range when it is known."""
        return {"method": "ancestral", "steps": None, "eta": 0.0, "clip_denoised": self._clip_default(None)}

    def sampler_settings(self, **sampling: Any) -> dict[str, Any]:
        """Defaults merged with ``sampling``, with ``clip_denoised=None`` resolved to a bool."""
        settings = super().sampler_settings(**sampling)
        settings["clip_denoised"] = self._clip_default(settings.get("clip_denoised"))
        return settings

    def sample_model_space(self, n: int, generator: torch.Generator | None = None, method: str = "ancestral",
                           steps: int | str | None = None, eta: float = 0.0, clip_denoised: bool | None = None,
                           progress: bool = False) -> torch.Tensor:
        if method not in SAMPLERS:
            raise InputError(f"unknown diffusion sampling method {method!r}; choose one of {sorted(SAMPLERS)}")
        clip = self.clip_range(self._clip_default(clip_denoised))
        return sample_loop(self.respaced(steps), self.net, (int(n), *self.data_shape), generator, method=method,
                           eta=float(eta), clip_denoised=clip, device=self.device, progress=progress)

    # ----------------------------------------------------------------- likelihood
    def bound_name(self, timesteps: int | str | None = None, clip_denoised: bool = False) -> str:
        process = self.respaced(timesteps)
        k, big_t = process.num_timesteps, self.process.num_timesteps
        parts = f"prior + {k - 1} KL terms + {DECODER_NAMES[self.decoder]}"
        where = "[-1, 1]" if self.is_image else "the training data range"
        clip = f", x0 predictions clipped to {where}" if clip_denoised else ""
        if process is self.process:
            return f"full variational bound ({parts}), T={big_t}{clip}"
        return (f"variational bound of the {k}-step respaced model ({parts}), respacing {str(timesteps)!r} "
                f"of T={big_t}{clip}")

    def nll(self, x: torch.Tensor, generator: torch.Generator | None = None, timesteps: int | str | None = None,
            clip_denoised: bool | None = None) -> NLLResult:
        """Per-example variational bound in bits/dim (improved-diffusion ``calc_bpd_loop``).

        ``timesteps`` evaluates the bound of the respaced K-step model instead of the T-step one
        (K network calls per batch instead of T); the bound's name says which it is.
        """
        if tuple(x.shape[1:]) != self.data_shape:
            raise InputError(f"nll: expected examples of shape {list(self.data_shape)}, got {list(x.shape[1:])}")
        if self.is_image and (x.min() < -1.0 - 1e-6 or x.max() > 1.0 + 1e-6):
            raise InputError("nll: images must be in model space [-1, 1] (convert uint8 with data.codec.to_model_space)")
        clip = self._clip_default(clip_denoised)
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                terms = full_bound(self.respaced(timesteps), self.net, x.to(self.device).float(), generator,
                                   decoder=self.decoder, clip_denoised=self.clip_range(clip))
        finally:
            self.train(was_training)
        return NLLResult(bpd=terms["total"], bound=self.bound_name(timesteps, clip),
                         terms={"prior": terms["prior"], "kl": terms["kl"], "decoder": terms["decoder"]})

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "diffusion": dict(self.config), "net": type(self.net).__name__}
