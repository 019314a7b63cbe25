"""Fast deterministic solvers: DPM-Solver++ (2M), Heun / Euler on the probability-flow ODE, and
DDIM's quadratic spacing.

* Step equality with diffusers on the same schedule and the same eps predictions: every
  DPM-Solver++ (2M) update against ``DPMSolverMultistepScheduler`` (dpmsolver++, order 2), and
  the Karras grid and one Heun step against ``HeunDiscreteScheduler`` (Karras sigmas), driven
  from the same state so float32 rounding does not accumulate.
* Euler on the ODE is DDIM on the rounded grid; NFE is what the denoiser actually sees.
* Per-image seeds give the same images for any batch size with every solver.
* With the exact Bayes-optimal denoiser of the 8-mode ring, every solver at 10-20 NFE lands on
  all 8 modes with a high share of high-quality samples.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from generative_bench.backends.diffusion import (DiffusionBackend, GaussianDiffusion, make_betas, respace,
                                                 space_timesteps)
from generative_bench.backends.diffusion.guidance import ClassifierGuidance
from generative_bench.backends.diffusion.solvers import (dpmpp_2m_sample, euler_ode_sample, heun_step, karras_grid,
                                                         karras_sigmas, sample_loop, training_sigmas)
from generative_bench.backends.nets.mlp_denoiser import MLPDenoiser
from generative_bench.data.toy import RingOfGaussians
from generative_bench.errors import InputError
from generative_bench.evaluation.toy_metrics import mode_statistics
from generative_bench.sampler import GeneratorNoise, ImageNoise, SampleBatch, image_seed
from tests.test_guidance import MEANS, STD, RingClassifier, RingOracle

diffusers = pytest.importorskip("diffusers")
# diffusers' schedulers call np.array(tensor) with a copy keyword numpy 2 warns about
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

NEW_METHODS = [{"method": "dpmpp_2m", "steps": 6}, {"method": "dpmpp_2m", "steps": "ddim_quad6"},
               {"method": "heun", "steps": 4}, {"method": "euler_ode", "steps": 5}]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs() / (1.0 + b.double().abs())).max().item()


def _diffusers_schedule(scheduler_cls, schedule: str, T: int = 1000, **kw):
    """A diffusers scheduler on ``schedule`` and our process on exactly its alphas_cumprod (diffusers
    keeps them in float32; the process takes those values, so both see the same schedule)."""
    sch = scheduler_cls(num_train_timesteps=T, trained_betas=make_betas(schedule, T).numpy(), **kw)
    ab = sch.alphas_cumprod.double()
    betas = 1.0 - ab / torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
    return sch, GaussianDiffusion(betas, variance="fixed_small", rescale_timesteps=False)


def _continuous_ring_eps(x_vp: torch.Tensor, sigma: float) -> torch.Tensor:
    """Exact E[eps | x_vp] of the ring at noise level sigma (ab = 1 / (1 + sigma^2)), float64."""
    x = x_vp.double()
    ab = 1.0 / (1.0 + sigma * sigma)
    var = ab * STD ** 2 + 1 - ab
    centred = x[:, None, :] - math.sqrt(ab) * MEANS.double()[None]
    w = torch.softmax(-0.5 * centred.pow(2).sum(-1) / var, dim=1)
    post = MEANS.double()[None] + (STD ** 2 * math.sqrt(ab) / var) * centred
    x0 = (w[:, :, None] * post).sum(1)
    return ((x - math.sqrt(ab) * x0) / math.sqrt(1 - ab)).to(x_vp.dtype)


# ------------------------------------------------------------------ 1. DPM-Solver++ (2M) vs diffusers
@pytest.mark.parametrize("schedule, spec", [("linear", 10), ("linear", 20), ("linear", "ddim_quad10"),
                                            ("cosine", "ddim_quad10"), ("cosine", "ddim_quad25")])
def test_every_dpmpp_2m_update_matches_diffusers(schedule, spec):
    from diffusers import DPMSolverMultistepScheduler

    sch, base = _diffusers_schedule(DPMSolverMultistepScheduler, schedule, algorithm_type="dpmsolver++",
                                    solver_order=2, prediction_type="epsilon")
    assert sch.config.final_sigmas_type == "zero" and sch.config.lower_order_final  # the defaults we follow
    process = respace(base, spec)
    oracle = RingOracle(alphas_cumprod=base.alphas_cumprod, rescale=False)
    states = []

    def model(x, t):
        states.append(x.clone())
        return oracle(x, t)

    out = dpmpp_2m_sample(process, model, (256, 2), torch.Generator().manual_seed(0), clip_denoised=False)
    states.append(out)
    assert len(states) == process.num_timesteps + 1  # one network evaluation per step
    sch.set_timesteps(timesteps=process.timestep_map.flip(0).tolist())
    assert torch.equal(sch.timesteps, process.timestep_map.flip(0))
    worst = 0.0
    for k, t in enumerate(sch.timesteps):  # diffusers driven from our state at every step
        eps = oracle(states[k], torch.full((256,), float(t)))
        worst = max(worst, _rel(sch.step(eps, t, states[k]).prev_sample, states[k + 1]))
    assert worst < 1e-5, worst
    # the trajectory is not trivial: it moved from N(0, I) towards the ring (radius 1)
    assert (out.norm(dim=1) - 1).abs().median() < 0.3 < (states[0].norm(dim=1) - 1).abs().median()


# ------------------------------------------------------------------ 2. Karras grid and Heun vs diffusers / EDM
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_karras_grid_and_heun_step_match_diffusers(schedule):
    from diffusers import HeunDiscreteScheduler

    n = 12
    sch, base = _diffusers_schedule(HeunDiscreteScheduler, schedule, use_karras_sigmas=True,
                                    prediction_type="epsilon")
    sch.set_timesteps(n)
    train = training_sigmas(base)
    grid = karras_sigmas(float(train[0]), float(train[-1]), n)
    # diffusers' sigmas: [s0, s1, s1, ..., s_{n-1}, s_{n-1}, 0]
    theirs = torch.cat([sch.sigmas[:1], sch.sigmas[1:-1:2]]).double()
    assert _rel(grid, theirs) < 1e-6 and sch.sigmas[-1] == 0
    x = torch.randn(256, 2, generator=torch.Generator().manual_seed(1)) * float(grid[0])

    def denoise(sigma):
        return lambda y: y - sigma * _continuous_ring_eps(y / math.sqrt(1 + sigma * sigma), sigma)

    worst = 0.0
    for i in range(n):  # Heun step i, both from the same x_i
        s, s_next = float(theirs[i]), (float(theirs[i + 1]) if i + 1 < n else 0.0)
        ours = heun_step(x, s, s_next, denoise(s), denoise(s_next) if s_next > 0 else None)
        t = sch.timesteps[sch.step_index if sch.step_index is not None else 0]
        eps = _continuous_ring_eps(sch.scale_model_input(x, t), s)
        mid = sch.step(eps, t, x).prev_sample
        if s_next > 0:  # diffusers' second stage: the slope at the Euler point, sigma_{i+1}
            t2 = sch.timesteps[sch.step_index]
            eps2 = _continuous_ring_eps(sch.scale_model_input(mid, t2), s_next)
            mid = sch.step(eps2, t2, mid).prev_sample
        worst = max(worst, _rel(mid, ours))
        # EDM Alg. 1 lines 5-8 written out
        d = (x - denoise(s)(x)) / s
        euler = x + (s_next - s) * d
        edm = euler if s_next == 0 else x + (s_next - s) * (0.5 * d + 0.5 * (euler - denoise(s_next)(euler)) / s_next)
        assert _rel(ours, edm) < 1e-6
        x = ours
    assert worst < 1e-5, worst
    assert torch.isfinite(x).all()


def test_karras_grid_rounds_to_training_steps_and_merges_repeats():
    process = GaussianDiffusion(make_betas("linear", 1000))
    idx, sig = karras_grid(process, 10)
    train = training_sigmas(process)
    assert len(idx) == 10 and int(idx[-1]) == 0 and torch.equal(sig, train[idx])
    assert bool((idx[1:] < idx[:-1]).all())
    assert abs(float(sig[0]) - 80.0) / 80.0 < 0.02  # sigma_max = 80 (EDM Table 1), rounded
    many, _ = karras_grid(process, 200)  # denser than the training steps near sigma_min: merged
    assert len(many) < 200 and len(torch.unique(many)) == len(many)
    b = DiffusionBackend([2], vector_net=functools.partial(MLPDenoiser, hidden=16, num_blocks=1, time_dim=8),
                         timesteps=1000)
    assert b.network_evaluations(b.resolve_settings(method="heun", steps=200)) == 2 * len(many) - 1


# ------------------------------------------------------------------ 3. Euler = DDIM on the grid; NFE
class _Scaled(GeneratorNoise):
    """Noise whose every draw is multiplied by ``scale`` (to start DDIM where Euler starts)."""

    def __init__(self, generator, scale):
        super().__init__(generator)
        self.scale = scale

    def randn(self, shape, dtype=torch.float32):
        return super().randn(shape, dtype) * self.scale


def test_euler_on_the_ode_is_ddim_on_the_rounded_grid():
    """Euler from sigma_0 to sigma_1 in x = x_vp / sqrt(ab) is x0 + sigma_1 eps, the DDIM (eta = 0)
    update; on the same steps and from the same start the two samplers agree to float32 rounding."""
    base = GaussianDiffusion(make_betas("cosine", 400), variance="fixed_small", rescale_timesteps=False)
    oracle = RingOracle(alphas_cumprod=base.alphas_cumprod, rescale=False)
    idx, sig = karras_grid(base, 8)
    keep = idx.flip(0)
    ab = base.alphas_cumprod[keep]
    betas = 1.0 - ab / torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
    grid_process = GaussianDiffusion(betas, variance="fixed_small", rescale_timesteps=False, timestep_map=keep,
                                     original_num_timesteps=400)
    euler = euler_ode_sample(base, oracle, (64, 2), torch.Generator().manual_seed(0), steps=8, clip_denoised=False)
    # Euler starts at x = sigma_max z, i.e. x_vp = sqrt(ab) sigma_max z; DDIM at x_vp = its first draw
    start = math.sqrt(float(ab[-1])) * float(sig[0])
    ddim = sample_loop(grid_process, oracle, (64, 2), _Scaled(torch.Generator().manual_seed(0), start),
                       method="ddim", clip_denoised=False)
    assert (euler.norm(dim=1) - 1).abs().median() < 0.05
    assert _rel(euler, ddim) < 2e-5, (euler - ddim).abs().max()


class _Counting(torch.nn.Module):
    """The exact ring denoiser that counts the images it is evaluated on."""

    def __init__(self, dim, out_dim, alphas_cumprod, num_classes=0):
        super().__init__()
        self.oracle = RingOracle(alphas_cumprod=alphas_cumprod, rescale=True)
        self.calls = 0

    def forward(self, x, t, y=None):
        self.calls += len(x)
        return self.oracle(x, t)


@pytest.mark.parametrize("settings", [*NEW_METHODS, {"method": "ddim", "steps": "ddim_quad10"},
                                      {"method": "ancestral", "steps": 7}], ids=lambda s: f"{s['method']}-{s['steps']}")
@pytest.mark.parametrize("cfg_scale", [0.0, 2.0])
def test_network_evaluations_count_the_denoiser_calls(settings, cfg_scale):
    T = 100
    ab = GaussianDiffusion(make_betas("linear", T)).alphas_cumprod
    kw = {"num_classes": 8} if cfg_scale else {}
    b = DiffusionBackend([2], vector_net=functools.partial(_Counting, alphas_cumprod=ab), timesteps=T,
                         variance="fixed_small", **kw)
    extra = {"cfg_scale": cfg_scale} if cfg_scale else {}
    resolved = b.resolve_settings(clip_denoised=False, **settings, **extra)
    b.draw(0, 3, seed=0, settings=resolved, chunk=3)
    method, steps = settings["method"], settings["steps"]
    per_image = 2 * steps - 1 if method == "heun" else steps if method in ("euler_ode", "ancestral") else \
        len(space_timesteps(T, steps))
    want = per_image * (2 if cfg_scale else 1)
    assert b.network_evaluations(resolved) == want
    assert b.net.calls == 3 * want


# ------------------------------------------------------------------ 4. DDIM quadratic spacing
def test_ddim_quadratic_spacing_is_the_ddim_rule_in_0_based_indices():
    # DDIM runners/diffusion.py: seq = int(linspace(0, sqrt(0.8 T), N) ** 2), used as 0-based indices
    assert space_timesteps(1000, "ddim_quad10") == [0, 9, 39, 88, 158, 246, 355, 483, 632, 800]
    for T, N in ((1000, 20), (1000, 100), (4000, 50), (200, 20), (50, 10)):
        want = sorted({int(v) for v in (np.linspace(0, np.sqrt(T * 0.8), N) ** 2)})
        assert space_timesteps(T, f"ddim_quad{N}") == want
        assert want[-1] == int(0.8 * T) and want[0] == 0
    assert len(space_timesteps(1000, "ddim_quad50")) == 49  # 0, 0, 1, ...: the repeat is merged
    process = respace(GaussianDiffusion(make_betas("linear", 1000)), "ddim_quad10")
    assert process.timestep_map.tolist() == space_timesteps(1000, "ddim_quad10")
    for bad in ("ddim_quad1", "ddim_quadx"):
        with pytest.raises(InputError, match="ddim_quad"):
            space_timesteps(1000, bad)


# ------------------------------------------------------------------ 5. options and errors
def test_solver_options_are_checked_early():
    b = DiffusionBackend([2], vector_net=functools.partial(MLPDenoiser, hidden=16, num_blocks=1, time_dim=8),
                         timesteps=50)
    for method in ("heun", "euler_ode"):
        with pytest.raises(InputError, match=f"method={method} needs steps=N"):
            b.resolve_settings(method=method)
        with pytest.raises(InputError, match="needs steps=N"):
            b.resolve_settings(method=method, steps="ddim10")
        with pytest.raises(InputError, match=r"must be in \[2, 50\]"):
            b.resolve_settings(method=method, steps=51)
    for method in ("heun", "euler_ode", "dpmpp_2m"):
        with pytest.raises(InputError, match="eta=0.5 applies to method=ddim only"):
            b.resolve_settings(method=method, steps=5, eta=0.5)
    with pytest.raises(InputError, match="unknown diffusion sampling method 'dpm'"):
        b.resolve_settings(method="dpm")
    assert b.resolve_settings(method="dpmpp_2m", steps="ddim_quad10")["steps"] == "ddim_quad10"


# ------------------------------------------------------------------ 6. reproducibility
@pytest.mark.parametrize("settings", NEW_METHODS, ids=lambda s: f"{s['method']}-{s['steps']}")
def test_same_seed_same_samples_for_batch_sizes_1_7_40(settings):
    torch.manual_seed(0)
    b = DiffusionBackend([2], vector_net=lambda dim, out_dim: MLPDenoiser(dim, out_dim, hidden=32, num_blocks=1,
                                                                          time_dim=16), timesteps=50)
    resolved = b.resolve_settings(clip_denoised=False, **settings)
    whole = b.draw(0, 40, seed=5, settings=resolved).images
    for bs in (1, 7, 40):
        parts = SampleBatch.concat(b.draw(s, min(40, s + bs), 5, resolved) for s in range(0, 40, bs)).images
        assert torch.equal(parts, whole), f"batch size {bs} changed the samples"
    assert torch.equal(b.draw(33, 34, 5, resolved).images[0], whole[33])
    assert not torch.equal(b.draw(0, 40, seed=6, settings=resolved).images, whole)


# ------------------------------------------------------------------ 7. the ring with the exact denoiser
RING_CASES = [  # (settings, NFE, least high-quality share); measured 0.96-1.00 / 0.83 / 0.97 on 1,000 samples
    ({"method": "dpmpp_2m", "steps": "ddim_quad10"}, 10, 0.9),
    ({"method": "dpmpp_2m", "steps": "ddim_quad20"}, 20, 0.9),
    ({"method": "heun", "steps": 10}, 19, 0.85),
    ({"method": "euler_ode", "steps": 10}, 10, 0.7),
    ({"method": "euler_ode", "steps": 20}, 20, 0.88),
    ({"method": "ddim", "steps": "ddim_quad10"}, 10, 0.85),
]


@pytest.mark.parametrize("settings, nfe, share", RING_CASES, ids=lambda v: f"{v['method']}-{v['steps']}"
                         if isinstance(v, dict) else str(v))
def test_exact_denoiser_lands_on_all_modes_at_few_steps(settings, nfe, share):
    ring = RingOfGaussians(size=16)
    T = 1000
    ab = GaussianDiffusion(make_betas("linear", T)).alphas_cumprod
    b = DiffusionBackend([2], vector_net=functools.partial(RingOracle, alphas_cumprod=ab, rescale=True),
                         timesteps=T, variance="fixed_small")
    resolved = b.resolve_settings(clip_denoised=False, **settings)
    assert b.network_evaluations(resolved) == nfe
    x = b.sample(400, seed=0, **resolved)
    stats = mode_statistics(x, ring)
    assert stats["modes"] == 8 and min(stats["counts"]) >= 25, stats["counts"]
    assert stats["high_quality"] > share, stats["high_quality"]


# ------------------------------------------------------------------ 8. guidance with every solver
@pytest.mark.parametrize("settings", [{"method": "dpmpp_2m", "steps": "ddim_quad20"}, {"method": "heun", "steps": 20},
                                      {"method": "euler_ode", "steps": 20}], ids=lambda s: s["method"])
def test_classifier_guidance_with_the_ode_solvers(settings):
    """The exact ring denoiser + the exact noisy classifier: s = 0 is plain sampling bit for bit;
    s = 5 towards class 3 puts most samples there (about 1/8 unguided). (Heun needs 20 levels
    here: with 10, the strongly guided slope near sigma_min overshoots, share 0.35 at s = 5, while
    s = 2 still gives 0.97; Euler and DPM-Solver++ stay stable.)"""
    T = 200
    ab = GaussianDiffusion(make_betas("linear", T)).alphas_cumprod
    b = DiffusionBackend([2], vector_net=functools.partial(RingOracle, alphas_cumprod=ab, rescale=False),
                         timesteps=T, variance="fixed_small", rescale_timesteps=False, num_classes=8,
                         conditional_net=False, classifier=True,
                         vector_classifier=functools.partial(RingClassifier, alphas_cumprod=ab, rescale=False))
    labels = torch.full((200,), 3)
    share = {}
    for s in (0.0, 5.0):
        x, _ = b.sample(200, seed=0, labels=labels, classifier_scale=s, clip_denoised=False, **settings)
        share[s] = (torch.cdist(x.double(), MEANS.double()).argmin(1) == 3).double().mean().item()
    assert share[0.0] < 0.3 and share[5.0] > 0.9, share
    # a zero-scale guidance object inside the solver changes nothing
    process = b.sampling_method(settings).process(b)
    seeds = [image_seed(1, i) for i in range(16)]
    kw = {"steps": settings["steps"]} if settings["method"] != "dpmpp_2m" else {}
    with torch.no_grad():
        ref = sample_loop(process, b.net, (16, 2), ImageNoise(seeds), method=settings["method"], clip_denoised=False,
                          **kw)
        zero = sample_loop(process, b.net, (16, 2), ImageNoise(seeds), method=settings["method"], clip_denoised=False,
                           guidance=ClassifierGuidance(b.classifier, labels[:16], 0.0), **kw)
    assert torch.equal(ref, zero)


@pytest.mark.parametrize("method, steps", [("dpmpp_2m", 5), ("heun", 3), ("euler_ode", 4)])
def test_classifier_free_guidance_with_the_ode_solvers(method, steps):
    torch.manual_seed(0)
    b = DiffusionBackend([2], vector_net=functools.partial(MLPDenoiser, hidden=32, num_blocks=2, time_dim=16,
                                                           input_features=4), timesteps=40, num_classes=4)
    with torch.no_grad():
        for p in b.net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    labels = torch.arange(12) % 4
    out = {w: b.sample(12, seed=3, labels=labels, method=method, steps=steps, cfg_scale=w, clip_denoised=False,
                       chunk=12)[0]
           for w in (0.0, 1.5)}
    assert torch.isfinite(out[1.5]).all() and (out[1.5] - out[0.0]).abs().max() > 1e-3
    # w = 0 is the conditional model: the solver on net(x, t, y)
    process = b.sampling_method({"method": method, "steps": steps}).process(b)
    seeds = [image_seed(3, i) for i in range(12)]
    noise = ImageNoise(seeds)
    noise.randint(4)  # the class draw comes first
    kw = {"steps": steps} if method != "dpmpp_2m" else {}
    with torch.no_grad():
        want = sample_loop(process, lambda x, t: b.net(x, t, labels), (12, 2), noise, method=method,
                           clip_denoised=False, **kw)
    assert torch.equal(out[0.0], want)


def test_each_method_declares_what_steps_is_and_its_nfe():
    """methods.py: respacing spec, grid size and eta are fields of the method that owns them; the
    NFE is the method's own; eta for a method other than DDIM and unknown methods are refused."""
    from generative_bench.backends.diffusion.methods import (DDIM, SAMPLING_METHODS, Ancestral, DPMSolverPP2M,
                                                             EulerODE, Heun, sampling_method)

    b = DiffusionBackend([2], vector_net=functools.partial(MLPDenoiser, hidden=16, num_blocks=1, time_dim=8),
                         timesteps=100)
    assert set(SAMPLING_METHODS) == {"ancestral", "ddim", "dpmpp_2m", "heun", "euler_ode"}
    assert sampling_method("ancestral", "ddim25") == Ancestral(respacing="ddim25")
    assert sampling_method("ddim", 10, 0.5) == DDIM(respacing=10, eta=0.5)
    assert sampling_method("dpmpp_2m", "ddim_quad10") == DPMSolverPP2M(respacing="ddim_quad10")
    assert sampling_method("heun", 10) == Heun(levels=10) and sampling_method("euler_ode", 7).levels == 7
    assert Ancestral().nfe(b) == 100 and Ancestral(respacing=25).nfe(b) == 25
    assert DPMSolverPP2M(respacing="ddim_quad10").nfe(b) == b.respaced("ddim_quad10").num_timesteps == 9  # T=100: 2 merge
    grid = len(karras_grid(b.process, 10)[0])
    assert Heun(levels=10).nfe(b) == 2 * grid - 1 and EulerODE(levels=10).nfe(b) == grid
    assert Heun(levels=10).process(b) is b.process and Ancestral(respacing=25).process(b).num_timesteps == 25
    assert b.network_evaluations({"method": "heun", "steps": 10}) == Heun(levels=10).nfe(b)
    for bad, match in ((("heun", 10, 0.5), "eta=0.5 applies to method=ddim only; heun is deterministic"),
                       (("ancestral", None, 1.0), "eta=1.0 applies to method=ddim only"),
                       (("ddim", None, float("nan")), "finite number >= 0"),
                       (("plms", None, 0.0), "unknown diffusion sampling method 'plms'")):
        with pytest.raises(InputError, match=match):
            sampling_method(*bad)
    with pytest.raises(InputError, match="needs steps=N"):
        b.resolve_settings(method="euler_ode", steps="ddim10")
