"""DDPM and improved DDPM as one backend over the Gaussian diffusion core.

The presets differ only in configuration (conf/model/ddpm*.yaml, iddpm*.yaml):

* DDPM (Ho et al. 2020): linear schedule, T = 1000, L_simple, fixed variance.
* improved DDPM (Nichol & Dhariwal 2021): cosine schedule, learned-range variance, L_hybrid
  (or L_vlb with the loss-second-moment timestep sampler), T up to 4000.

``sample(n, generator, method=..., steps=..., eta=..., clip_denoised=...)``: ancestral, DDIM or
DPM-Solver++ (2M) sampling on the full process (``steps=None``) or on a respaced one (``steps=50``,
``"10,10,10"``, ``"ddim50"``, ``"ddim_quad50"``), or Heun / Euler on the probability-flow ODE
over the N-level Karras et al. grid (``method="heun" | "euler_ode"``, ``steps=N``); see
solvers.py for each method's network evaluations. ``nll(x)``: the variational bound in bits/dim
with its prior / KL / decoder split (``method="vlb"``, the default), or the probability-flow ODE
likelihood (``method="ode"``, ode.py).

Class-conditional (``num_classes > 0``, labelled data): with ``conditional_net`` the denoiser
gets the class (its embedding added to the time embedding) and is trained with label dropout
(``label_dropout``: that share of labels is replaced by the null class), so one network serves
conditional, unconditional (null class) and classifier-free guided sampling (``cfg_scale`` w);
with a ``classifier`` factory a noise-aware classifier p(y | x_t, t) is trained alongside, by its
own optimizer in the same step, on x_t ~ q(x_t | x_0) at uniform t, for classifier guidance
(``classifier_scale`` s). See guidance.py.

``clip_denoised`` clamps each predicted x_0 to the data range before it enters the posterior mean
(improved-diffusion's ``clip_denoised``): [-1, 1] for images; for vectors, the per-coordinate range
of the training data, which the backend records while training (buffers ``data_min`` /
``data_max``, saved with the weights). Without it, the cosine schedule's last steps
(alpha_bar_T ~ 1e-9) turn small noise-prediction errors into x_0 errors of thousands.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch

from generative_bench.backends.base import Backend, NLLResult, OptimGroup, StepContext, split_batch
from generative_bench.backends.diffusion.gaussian import GaussianDiffusion
from generative_bench.backends.diffusion.guidance import ClassifierGuidance, classifier_free
from generative_bench.backends.diffusion.likelihood import DECODER_NAMES, full_bound
from generative_bench.backends.diffusion.ode import ode_nll_bpd
from generative_bench.backends.diffusion.losses import make_loss
from generative_bench.backends.diffusion.respace import respace
from generative_bench.backends.diffusion.schedules import make_betas
from generative_bench.backends.diffusion.methods import DEFAULT_METHOD, SamplingMethod, sampling_method
from generative_bench.backends.diffusion.solvers import sample_loop
from generative_bench.backends.diffusion.timestep_distribution import make_timestep_distribution
from generative_bench.errors import InputError

#: how the NLL of a class-conditional model treats the class (``model.nll.condition``)
NLL_CONDITIONS = ("marginal", "label", "null")
#: which likelihood ``nll`` computes (``model.nll.method``)
NLL_METHODS = ("vlb", "ode")


def _build(factory: Any, **kwargs) -> torch.nn.Module:
    if factory is None:
        raise InputError("model.backend needs a network factory for this data shape "
                         "(image_net for [C, H, W] data, vector_net for [d] data)")
    if not callable(factory):
        from generative_bench.config import instantiate

        factory = instantiate(factory, _partial_=True)
    return factory(**kwargs)


class _frozen_parameters:
    """Parameters of ``module`` without requires_grad for the block (input-only autograd is cheaper),
    restored afterwards."""

    def __init__(self, module: torch.nn.Module):
        self.params = [p for p in module.parameters() if p.requires_grad]

    def __enter__(self):
        for p in self.params:
            p.requires_grad_(False)

    def __exit__(self, *exc):
        for p in self.params:
            p.requires_grad_(True)
        return False


class DiffusionBackend(Backend):
    """Gaussian diffusion with an eps-predicting network; see the module docstring.

    ``image_net(in_channels, out_channels, image_size)`` and ``vector_net(dim, out_dim)`` are
    network factories (Hydra ``_partial_`` configs); the one matching ``data_shape`` is built
    (with ``num_classes`` when the net is conditional). ``out_channels`` doubles for the
    learned-range variance. ``image_classifier(in_channels, image_size, num_classes)`` /
    ``vector_classifier(dim, num_classes)`` build the optional noise-aware classifier
    (``classifier: true``), trained with ``classifier_optim`` overrides of ``train.optim``.
    """

    family = "diffusion"
    display_name = "diffusion"
    KNOB_SYMBOLS = {"classifier_scale": "s", "cfg_scale": "w"}

    def __init__(self, data_shape: Sequence[int], image_net: Callable[..., Any] | None = None,
                 vector_net: Callable[..., Any] | None = None, timesteps: int = 1000, schedule: str = "linear",
                 variance: str = "fixed_large", loss: str = "simple", vlb_weight: float = 0.001,
                 timestep_distribution: str = "uniform", rescale_timesteps: bool = True, num_classes: int = 0,
                 conditional_net: bool = True, label_dropout: float = 0.1, classifier: bool = False,
                 image_classifier: Callable[..., Any] | None = None,
                 vector_classifier: Callable[..., Any] | None = None, classifier_optim: dict | None = None):
        super().__init__(data_shape, num_classes=num_classes)
        if len(self.data_shape) not in (1, 3):
            raise InputError(f"DiffusionBackend needs data_shape [C, H, W] (images) or [d] (vectors), got {list(data_shape)}")
        if not 0.0 <= float(label_dropout) < 1.0:
            raise InputError(f"model.backend.label_dropout must be in [0, 1), got {label_dropout}")
        if classifier and not self.conditional:
            raise InputError("model.backend.classifier=true needs labelled data: set model.backend.num_classes")
        self.conditional_net = bool(conditional_net) and self.conditional
        self.label_dropout = float(label_dropout) if self.conditional_net else 0.0
        self.config = {"timesteps": int(timesteps), "schedule": schedule, "variance": variance, "loss": loss,
                       "vlb_weight": float(vlb_weight), "timestep_distribution": timestep_distribution,
                       "rescale_timesteps": bool(rescale_timesteps), "num_classes": self.num_classes,
                       "conditional_net": self.conditional_net, "label_dropout": self.label_dropout,
                       "classifier": bool(classifier)}
        self.process = GaussianDiffusion(make_betas(schedule, int(timesteps)), variance=variance,
                                         rescale_timesteps=rescale_timesteps)
        self.loss = make_loss(loss, vlb_weight)
        self.loss.check(self.process)
        self.decoder = "discretized" if self.is_image else "continuous"
        factor = self.process.model_channel_factor
        cond = {"num_classes": self.num_classes} if self.conditional_net else {}
        if self.is_image:
            c, h, w = self.data_shape
            if h != w:
                raise InputError(f"the UNet needs square images, got data_shape {list(self.data_shape)}")
            self.net = _build(image_net, in_channels=c, out_channels=c * factor, image_size=h, **cond)
        else:
            d = self.data_shape[0]
            self.net = _build(vector_net, dim=d, out_dim=d * factor, **cond)
        self.timestep_distribution = make_timestep_distribution(timestep_distribution, int(timesteps))
        self.classifier_optim = dict(classifier_optim or {})
        self.classifier = None
        if classifier:
            if self.is_image:
                self.classifier = _build(image_classifier, in_channels=self.data_shape[0],
                                         image_size=self.data_shape[1], num_classes=self.num_classes)
            else:
                self.classifier = _build(vector_classifier, dim=self.data_shape[0], num_classes=self.num_classes)
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

    def optimizer_groups(self) -> dict[str, OptimGroup]:
        groups = {"model": OptimGroup(list(self.net.parameters()))}
        if self.classifier is not None:
            groups["classifier"] = OptimGroup(list(self.classifier.parameters()), dict(self.classifier_optim))
        return groups

    def denoiser(self, labels: torch.Tensor | None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The model function ``(x_t, t) -> output`` for ``labels`` (None: unconditional / null class)."""
        if not self.conditional_net:
            return self.net
        return lambda x, t: self.net(x, t, labels)

    def _dropped(self, labels: torch.Tensor) -> torch.Tensor:
        """Labels with a ``label_dropout`` share replaced by the null class (index ``num_classes``)."""
        if not self.label_dropout:
            return labels
        drop = torch.rand(len(labels), device=labels.device) < self.label_dropout
        return torch.where(drop, torch.full_like(labels, self.num_classes), labels)

    def training_step(self, batch, ctx: StepContext) -> dict[str, float]:
        x, labels = split_batch(batch)
        if self.conditional and labels is None:
            raise InputError("this diffusion model is class-conditional (num_classes > 0) but the data has no labels")
        if not self.is_image:
            with torch.no_grad():
                torch.minimum(self.data_min, x.detach().amin(0), out=self.data_min)
                torch.maximum(self.data_max, x.detach().amax(0), out=self.data_max)
        t, weights = self.timestep_distribution.sample(len(x), x.device)
        noise = torch.randn_like(x)
        model = self.denoiser(self._dropped(labels) if self.conditional_net else None)
        with ctx.autocast():
            terms = self.loss(self.process, model, x, t, noise, decoder=self.decoder)
        loss = (terms["loss"] * weights).mean()
        ctx.optimize("model", loss)
        self.timestep_distribution.update(t, terms["loss"].detach())
        logs = {"loss": float(loss.detach())}
        for k in ("mse", "vb"):
            if k in terms:
                logs[k] = float(terms[k].detach().mean())
        if self.classifier is not None:
            logs.update(self._classifier_step(x, labels, ctx))
        return logs

    def _classifier_step(self, x: torch.Tensor, labels: torch.Tensor, ctx: StepContext) -> dict[str, float]:
        """Cross-entropy of the noise-aware classifier on x_t ~ q(x_t | x_0), t uniform."""
        t = torch.randint(0, self.process.num_timesteps, (len(x),), device=x.device)
        xt = self.process.q_sample(x, t, torch.randn_like(x))
        with ctx.autocast():
            logits = self.classifier(xt, self.process.model_time(t)).float()
        loss = torch.nn.functional.cross_entropy(logits, labels)
        ctx.optimize("classifier", loss)
        return {"classifier_loss": float(loss.detach()),
                "classifier_acc": float((logits.argmax(1) == labels).float().mean())}

    # ----------------------------------------------------------------- sampling
    def default_sampling(self) -> dict[str, Any]:
        """Full-length ancestral sampling (:data:`~.methods.DEFAULT_METHOD`); x0 predictions clipped
        to the data range when it is known; unguided (``classifier_scale`` / ``cfg_scale`` only
        where the model has a classifier / a conditional net)."""
        out: dict[str, Any] = {"method": DEFAULT_METHOD.name, "steps": DEFAULT_METHOD.steps, "eta": 0.0,
                               "clip_denoised": self._clip_default(None)}
        out.update(self.knobs())
        return out

    def knobs(self) -> dict[str, Any]:
        """Guidance scales and their unguided values: classifier guidance s, classifier-free w."""
        out: dict[str, Any] = {}
        if self.classifier is not None:
            out["classifier_scale"] = 0.0
        if self.conditional_net:
            out["cfg_scale"] = 0.0
        return out

    def resolve_settings(self, **sampling: Any) -> dict[str, Any]:
        """Defaults merged with ``sampling``, with ``clip_denoised=None`` resolved to a bool; the
        method's typed settings are built and their process checked now (a bad respacing or grid
        size is an error before any sampling)."""
        settings = super().resolve_settings(**sampling)
        settings["clip_denoised"] = self._clip_default(settings.get("clip_denoised"))
        self.sampling_method(settings).process(self)
        return settings

    @staticmethod
    def sampling_method(settings: dict[str, Any]) -> SamplingMethod:
        """The typed method settings (methods.py) of a settings dict's ``method`` / ``steps`` / ``eta``."""
        return sampling_method(settings.get("method", DEFAULT_METHOD.name), settings.get("steps"),
                               settings.get("eta", 0.0))

    def network_evaluations(self, settings: dict[str, Any]) -> int:
        """Denoiser passes per image: the method's NFE (methods.py), twice that with classifier-free
        guidance (w not in {0, -1})."""
        steps = self.sampling_method(settings).nfe(self)
        w = float(settings.get("cfg_scale", 0.0) or 0.0)
        return steps * (1 if w in (0.0, -1.0) else 2)

    def sample_model_space(self, n: int, noise: Any = None, labels: torch.Tensor | None = None,
                           method: str = DEFAULT_METHOD.name, steps: int | str | None = None, eta: float = 0.0,
                           clip_denoised: bool | None = None, classifier_scale: float = 0.0, cfg_scale: float = 0.0,
                           progress: bool = False) -> torch.Tensor:
        chosen = sampling_method(method, steps, eta)
        if self.conditional and labels is None:
            raise InputError("a class-conditional diffusion model samples with labels; draw through sample() or "
                             "draw(), which pick classes uniformly, or pass labels")
        clip = self.clip_range(self._clip_default(clip_denoised))
        if self.conditional_net:
            model = classifier_free(self.net, labels, self.num_classes, float(cfg_scale), self.data_shape[0])
        else:
            if cfg_scale:
                raise InputError(f"cfg_scale={cfg_scale} needs a class-conditional denoiser trained with label "
                                 "dropout (model.backend.num_classes > 0, conditional_net=true)")
            model = self.net
        guidance = None
        if classifier_scale:
            if self.classifier is None:
                raise InputError(f"classifier_scale={classifier_scale} needs a noise-aware classifier "
                                 "(model.backend.classifier=true, trained with the model)")
            guidance = ClassifierGuidance(self.classifier, labels, float(classifier_scale))
        return sample_loop(chosen.process(self), model, (int(n), *self.data_shape), noise,
                           method=chosen.name, eta=chosen.solver_eta, clip_denoised=clip, device=self.device,
                           progress=progress, guidance=guidance, steps=chosen.grid_levels)

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

    def nll(self, x: torch.Tensor, generator: torch.Generator | None = None, labels: torch.Tensor | None = None,
            timesteps: int | str | None = None, clip_denoised: bool | None = None,
            condition: str = "marginal", method: str = "vlb", ode_steps: int = 100, sigma_start: float = 1e-3,
            divergence: str = "auto", probes: int = 1) -> NLLResult:
        """Per-example NLL in bits/dim: the variational bound (``method="vlb"``, improved-diffusion
        ``calc_bpd_loop``) or the probability-flow ODE likelihood (``method="ode"``, ode.py).

        ``timesteps`` evaluates the bound of the respaced K-step model instead of the T-step one
        (K network calls per batch instead of T); the bound's name says which it is. A model with
        a class-conditional denoiser is scored by ``condition``: ``marginal`` bounds -log p(x) =
        -log sum_y p(y) p(x | y) with a uniform p(y), by -logsumexp_y(log p(y) - L_y) over the K
        per-class bounds L_y (each L_y >= -log p(x | y), so this is a bound on -log p(x); K times the
        cost); ``label`` bounds -log p(x | y) for the true ``labels``; ``null`` bounds the
        unconditional model (the null class).

        ``method="ode"`` integrates the probability-flow ODE of the training process with RK4
        (``ode_steps`` steps uniform in log sigma from ``sigma_start`` to the largest training sigma,
        4 network evaluations per step), with the exact divergence (``divergence="exact"``, one
        autograd pass per dimension) or Hutchinson's estimator with ``probes`` Rademacher probes per
        example (``"hutchinson"``; ``"auto"``: exact up to 16 dimensions); 8-bit images are
        dequantized uniformly. Probes and dequantization noise come from ``generator``. The ODE
        uses unclipped predictions (``clip_denoised`` and ``timesteps`` are options of the bound);
        ``condition`` applies as above, with the per-class ODE likelihoods in place of the bounds.
        """
        if tuple(x.shape[1:]) != self.data_shape:
            raise InputError(f"nll: expected examples of shape {list(self.data_shape)}, got {list(x.shape[1:])}")
        if self.is_image and (x.min() < -1.0 - 1e-6 or x.max() > 1.0 + 1e-6):
            raise InputError("nll: images must be in model space [-1, 1] (convert uint8 with data.codec.to_model_space)")
        if condition not in NLL_CONDITIONS:
            raise InputError(f"model.nll.condition must be one of {list(NLL_CONDITIONS)}, got {condition!r}")
        if method not in NLL_METHODS:
            raise InputError(f"model.nll.method must be one of {list(NLL_METHODS)}, got {method!r}")
        x = x.to(self.device).float()
        if method == "ode":
            if timesteps is not None or clip_denoised:
                raise InputError("model.nll.timesteps and model.nll.clip_denoised are options of the variational bound "
                                 "(method=vlb); the probability-flow ODE (method=ode) runs on the training process "
                                 "with unclipped predictions: leave them null")
            names: list[str] = []

            def score(y: torch.Tensor | None, g: torch.Generator | None) -> dict[str, torch.Tensor]:
                terms, name = ode_nll_bpd(self.process, self.denoiser(y), x, g, dequantize_8bit=self.is_image,
                                          steps=int(ode_steps), sigma_start=float(sigma_start),
                                          divergence_name=str(divergence), probes=int(probes))
                names.append(name)
                return terms

            context = _frozen_parameters
        else:
            clip = self._clip_default(clip_denoised)
            process = self.respaced(timesteps)

            def score(y: torch.Tensor | None, g: torch.Generator | None) -> dict[str, torch.Tensor]:
                return full_bound(process, self.denoiser(y), x, g, decoder=self.decoder,
                                  clip_denoised=self.clip_range(clip))

            context = lambda module: torch.inference_mode()  # noqa: E731

        was_training = self.training
        self.eval()
        try:
            with context(self):
                if not self.conditional_net:
                    terms, what = score(None, generator), ""
                elif condition == "null":
                    terms, what = score(torch.full((len(x),), self.num_classes, device=x.device), generator), \
                        "; unconditional model (null class)"
                elif condition == "label":
                    y = self.check_labels(labels, len(x))
                    if y is None:
                        raise InputError("model.nll.condition=label needs the data's labels")
                    terms, what = score(y.to(x.device), generator), "; conditional -log p(x | y) at the true class"
                else:
                    terms, what = self._marginal_bound(score, len(x), x.device, generator), \
                        f"; marginal over {self.num_classes} classes (uniform p(y))"
        finally:
            self.train(was_training)
        name = names[0] if method == "ode" else self.bound_name(timesteps, clip)
        return NLLResult(bpd=terms["total"], bound=name + what,
                         terms={k: v for k, v in terms.items() if k != "total"})

    def _marginal_bound(self, bound, n: int, device: torch.device, generator: torch.Generator | None):
        """-logsumexp_y(log(1/K) - L_y ln 2 D) / (D ln 2): the per-class bounds share one noise draw
        per class index (a copy of ``generator``'s state each), so classes are compared alike."""
        state = generator.get_state() if generator is not None else None
        per_class = []
        for k in range(self.num_classes):
            g = None
            if generator is not None:
                g = torch.Generator(device=generator.device)
                g.set_state(state)
            per_class.append(bound(torch.full((n,), k, device=device, dtype=torch.long), g))
        totals = torch.stack([t["total"] for t in per_class])  # (K, n) bits/dim
        nats = totals * (math.log(2.0) * self.num_dims)
        marginal = -(torch.logsumexp(-nats, dim=0) - math.log(self.num_classes)) / (math.log(2.0) * self.num_dims)
        # terms of the class with the tightest bound, for the breakdown
        best = totals.argmin(0)
        pick = {key: torch.stack([t[key] for t in per_class]).gather(0, best[None]).squeeze(0)
                for key in per_class[0] if key != "total"}
        return {**pick, "total": marginal}

    def describe(self) -> dict[str, Any]:
        out = {**super().describe(), "diffusion": dict(self.config), "net": type(self.net).__name__}
        if self.classifier is not None:
            out["classifier"] = {"class": type(self.classifier).__name__,
                                 "parameters": sum(p.numel() for p in self.classifier.parameters())}
        return out
