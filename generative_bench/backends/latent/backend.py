"""Latent diffusion (Rombach et al. 2022) as one backend composed of existing parts.

* First stage: a KL-regularised autoencoder (first_stage.py, the VAE backend's ConvVAENet with a
  spatial latent), trained for the first ``stage1_steps`` steps of the run, then frozen.
* Second stage: the Gaussian diffusion core, i.e. a :class:`DiffusionBackend` whose data shape is
  the latent shape c x H/f x W/f, trained on the scaled latents z' = s E(x) (eq. 2 of the paper:
  L_LDM = E_{E(x), eps, t} ||eps - eps_theta(z_t, t)||^2), where s = 1 / std(z) is estimated on
  the first batch(es) of stage 2 (scale.py) unless ``latent_scale`` fixes it. Schedules, losses,
  respacing, every solver, classifier-free and classifier guidance are the diffusion backend's,
  unchanged; the noise-aware classifier of classifier guidance sees noisy latents.

One run, one trainer: ``training_step`` dispatches by the trainer's global step (stage 1 for
``step < stage1_steps``, stage 2 after), both networks and the scale live in one state dict, so
one checkpoint resumes bit-exactly on either side of the switch (the scale is a buffer; a run
killed before the first stage-2 step estimates it again from the same batch). The autoencoder has
its own optimizer (``"autoencoder"``, ``autoencoder_optim`` overrides of ``train.optim``) and is
excluded from the weight EMA (copied, as in CompVis/latent-diffusion, where the first stage has no
EMA), so the EMA model decodes with exactly the autoencoder its diffusion model was trained on.

Sampling: ``sample(n, generator, method=..., steps=..., eta=..., cfg_scale=..., classifier_scale=...)``
runs the diffusion sampler in latent space, divides by s, decodes with D and converts to uint8 as
every backend does. x0 predictions are not clipped (latents are unbounded; ``clip_denoised``
stays false). NFE counts denoiser passes; the one decoder pass per image is not counted.

NLL: not defined. The decoder is deterministic, so the model puts no density on pixels and the
latent bound bounds -log p(z), not -log p(x) (tables show "—" with that footnote).

Vector data (the 2-D toy mixtures) is an error: there is nothing to compress, use model=ddpm.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, ClassVar, Sequence

import torch

from generative_bench.backends.base import Backend, NLLResult, OptimGroup, StepContext, split_batch
from generative_bench.backends.diffusion import DiffusionBackend
from generative_bench.backends.latent.first_stage import KLAutoencoder
from generative_bench.backends.latent.scale import estimate_latent_scale
from generative_bench.backends.nets.unet import UNet
from generative_bench.errors import InputError, NLLNotDefined

#: the diffusion backend used when none is configured (a small UNet on the latent)
DEFAULT_DIFFUSION = functools.partial(
    DiffusionBackend, image_net=functools.partial(UNet, ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=()))

#: scalars the training log gets in both stages (NaN in the stage that does not compute them)
STAGE1_KEYS = ("ae_loss", "ae_rec", "ae_kl", "ae_psnr")


def _build(factory: Any, default: Callable[..., Any], **kwargs) -> Any:
    if factory is None:
        factory = default
    if not callable(factory):
        from generative_bench.config import instantiate

        factory = instantiate(factory, _partial_=True)
    return factory(**kwargs)


class LatentDiffusionBackend(Backend):
    """Latent diffusion: a KL autoencoder + a DiffusionBackend on its latents (see the module docstring).

    ``autoencoder(data_shape=...)`` builds the first stage (default :class:`KLAutoencoder`) and
    ``diffusion(data_shape=latent_shape, num_classes=...)`` the second (a ``_partial_``
    DiffusionBackend config with every diffusion option). ``latent_scale`` (null = estimated from
    ``scale_batches`` batches at the switch) fixes s.
    """

    family = "latent_diffusion"
    display_name = "latent diffusion (LDM)"
    KNOB_SYMBOLS = {"classifier_scale": "s", "cfg_scale": "w"}
    nll_defined = False
    nll_note: ClassVar[str] = "no bound on the data likelihood: the decoder is deterministic"
    ema_exclude = ("first_stage.",)

    def __init__(self, data_shape: Sequence[int], autoencoder: Callable[..., Any] | None = None,
                 diffusion: Callable[..., Any] | None = None, stage1_steps: int = 1000,
                 latent_scale: float | None = None, scale_batches: int = 1,
                 autoencoder_optim: dict | None = None, num_classes: int = 0):
        super().__init__(data_shape, num_classes=num_classes)
        if not self.is_image:
            raise InputError(f"latent diffusion needs image data [C, H, W], got data shape {list(self.data_shape)}: "
                             "an autoencoder has nothing to compress in 2-D points; use model=ddpm (or model=iddpm) "
                             "for vector data")
        if isinstance(stage1_steps, bool) or int(stage1_steps) < 0:
            raise InputError(f"model.backend.stage1_steps must be an integer >= 0, got {stage1_steps}")
        if int(scale_batches) < 1:
            raise InputError(f"model.backend.scale_batches must be >= 1, got {scale_batches}")
        if latent_scale is not None and not float(latent_scale) > 0:
            raise InputError(f"model.backend.latent_scale must be > 0 or null (estimated), got {latent_scale}")
        self.first_stage = _build(autoencoder, KLAutoencoder, data_shape=self.data_shape)
        self.latent_shape = tuple(int(s) for s in self.first_stage.latent_shape)
        self.diffusion = _build(diffusion, DEFAULT_DIFFUSION, data_shape=self.latent_shape,
                                num_classes=self.num_classes)
        if not isinstance(self.diffusion, DiffusionBackend):
            raise InputError(f"model.backend.diffusion must build a DiffusionBackend, got {type(self.diffusion).__name__}")
        self.stage1_steps = int(stage1_steps)
        self.scale_batches = int(scale_batches)
        self.autoencoder_optim = dict(autoencoder_optim or {})
        self.fixed_scale = latent_scale is not None
        self.register_buffer("latent_scale", torch.tensor(float(latent_scale) if self.fixed_scale else 1.0))
        self.register_buffer("scale_estimated", torch.tensor(self.fixed_scale))
        self._stage2_keys = ["loss", "mse"] + (["vb"] if self.diffusion.config["loss"] != "simple" else []) + \
            (["classifier_loss", "classifier_acc"] if self.diffusion.classifier is not None else [])

    # ----------------------------------------------------------------- properties
    @property
    def downsampling_factor(self) -> int:
        return self.first_stage.downsampling_factor

    def stage(self, step: int) -> int:
        """1 (autoencoder) for global steps < stage1_steps, else 2 (diffusion on frozen latents)."""
        return 1 if int(step) < self.stage1_steps else 2

    # ----------------------------------------------------------------- training
    def optimizer_groups(self) -> dict[str, OptimGroup]:
        return {"autoencoder": OptimGroup(list(self.first_stage.parameters()), dict(self.autoencoder_optim)),
                **self.diffusion.optimizer_groups()}

    @torch.no_grad()
    def encode_latents(self, x: torch.Tensor) -> torch.Tensor:
        """s * z, z ~ q(z | x) of the frozen first stage (one draw from the global RNG, as the paper's
        ``get_first_stage_encoding``)."""
        return self.first_stage.encode(x).float() * self.latent_scale

    @torch.no_grad()
    def estimate_scale(self, x: torch.Tensor, ctx: StepContext | None = None) -> float:
        """Set s = 1 / std(z) from ``x`` (+ ``scale_batches - 1`` further batches of ``ctx``)."""
        latents = [self.first_stage.encode(x).float()]
        for _ in range(self.scale_batches - 1):
            latents.append(self.first_stage.encode(split_batch(ctx.next_batch())[0]).float())
        self.latent_scale.copy_(estimate_latent_scale(torch.cat(latents)))
        self.scale_estimated.fill_(True)
        return float(self.latent_scale)

    def training_step(self, batch, ctx: StepContext) -> dict[str, float]:
        x, labels = split_batch(batch)
        if self.conditional and labels is None:
            raise InputError("this latent diffusion model is class-conditional (num_classes > 0) but the data has "
                             "no labels")
        nan = float("nan")
        if self.stage(ctx.step) == 1:
            with ctx.autocast():
                terms = self.first_stage.loss(x)
            ctx.optimize("autoencoder", terms["loss"])
            logs = {"stage": 1.0, "ae_loss": float(terms["loss"].detach()), "ae_rec": float(terms["rec"].detach()),
                    "ae_kl": float(terms["kl"].detach()), "ae_psnr": float(terms["psnr"])}
            return {**logs, "latent_scale": nan, **{k: nan for k in self._stage2_keys}}
        if not bool(self.scale_estimated):
            self.estimate_scale(x, ctx)
        with ctx.autocast():
            z = self.encode_latents(x).float()
        logs = self.diffusion.training_step(z if labels is None else (z, labels), ctx)
        return {"stage": 2.0, **logs, "latent_scale": float(self.latent_scale), **{k: nan for k in STAGE1_KEYS}}

    # ----------------------------------------------------------------- sampling
    def default_sampling(self) -> dict[str, Any]:
        """The diffusion backend's defaults with unclipped x0 predictions."""
        return {**self.diffusion.default_sampling(), "clip_denoised": False}

    def knobs(self) -> dict[str, Any]:
        return self.diffusion.knobs()

    @staticmethod
    def _check_clip(clip_denoised: Any) -> None:
        if clip_denoised:
            raise InputError("clip_denoised=true clips x0 predictions to the pixel range [-1, 1]; latents are not "
                             "bounded: leave model.sampling.clip_denoised null (or false) for latent diffusion")

    def resolve_settings(self, **sampling: Any) -> dict[str, Any]:
        """Defaults merged with ``sampling`` and checked by the diffusion backend (steps, method, eta,
        guidance scales)."""
        settings = super().resolve_settings(**sampling)
        self._check_clip(settings.get("clip_denoised"))
        settings["clip_denoised"] = False
        return self.diffusion.resolve_settings(**settings)

    def network_evaluations(self, settings: dict[str, Any]) -> int:
        """Denoiser passes per image (the diffusion backend's count; the decoder pass is not counted)."""
        return self.diffusion.network_evaluations(settings)

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        """D(z' / s): scaled latents -> images in model space."""
        return self.first_stage.decode(z / self.latent_scale)

    def sample_model_space(self, n: int, noise: Any = None, labels: torch.Tensor | None = None,
                           clip_denoised: bool | None = False, **settings: Any) -> torch.Tensor:
        """Latent samples from the diffusion sampler (every random number from ``noise``), decoded."""
        self._check_clip(clip_denoised)
        z = self.diffusion.sample_model_space(int(n), noise, labels=labels, clip_denoised=False, **settings)
        return self.decode_latents(z)

    # ----------------------------------------------------------------- first-stage quality
    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """D(E(x)) with the posterior mean (deterministic), model space in and out."""
        was_training = self.training
        self.eval()
        try:
            return self.first_stage.decode(self.first_stage.encode(x.to(self.device).float(), sample=False))
        finally:
            self.train(was_training)

    def first_stage_report(self, images: torch.Tensor, batch_size: int = 100, distance: Any = None) -> dict[str, Any]:
        """Reconstruction quality on held-out uint8 ``images``: PSNR, and what ``distance``
        (originals, reconstructions) adds (the pipeline's rFD in the evaluation's feature space)."""
        from generative_bench.backends.latent.reconstruction import reconstruction_record

        return reconstruction_record(self, images, batch_size=batch_size, distance=distance)

    # ----------------------------------------------------------------- likelihood
    def nll(self, x: torch.Tensor, generator: torch.Generator | None = None, labels: torch.Tensor | None = None,
            **options: Any) -> NLLResult:
        raise NLLNotDefined(f"{self.family}: {self.nll_note}")

    # ----------------------------------------------------------------- description
    def describe(self) -> dict[str, Any]:
        scale = float(self.latent_scale)
        if self.fixed_scale:
            source = "fixed by model.backend.latent_scale"
        elif bool(self.scale_estimated):
            source = (f"estimated: 1 / std of the latents of the first {self.scale_batches} batch(es) of stage 2 "
                      "(Rombach et al. 2022)")
        else:
            source = "not estimated yet (stage 2 has not started); 1.0 is a placeholder"
        return {**super().describe(), "latent_shape": list(self.latent_shape),
                "downsampling_factor": self.downsampling_factor, "latent_scale": scale,
                "latent_scale_source": source, "stage1_steps": self.stage1_steps,
                "autoencoder": self.first_stage.describe(), "diffusion": self.diffusion.describe(),
                "nfe_counts": "denoiser passes (the one decoder pass per image is not counted)",
                "latent_dims": math.prod(self.latent_shape)}


__all__ = ["LatentDiffusionBackend"]
