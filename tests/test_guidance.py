"""Sampling knobs of class-conditional backends: classifier guidance, classifier-free guidance,
GAN truncation, and class labels through draws and npz files.

Classifier guidance is checked against a closed form: for Gaussian classes
p(x_0 | y) = N(m_y, s^2 I), the noised class-conditional is
q(x_t | y) = N(sqrt(ab_t) m_y, v_t I) with v_t = ab_t s^2 + 1 - ab_t, so
grad_x log p(y | x_t) = sqrt(ab_t) / v_t (m_y - sum_k p(k | x_t) m_k).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from torch import nn

from generative_bench.backends.diffusion import DiffusionBackend, GaussianDiffusion, make_betas, respace
from generative_bench.backends.diffusion.guidance import ClassifierGuidance, classifier_free
from generative_bench.backends.diffusion.solvers import ancestral_moments, sample_loop
from generative_bench.backends.gan import GANBackend, MLPDiscriminator, MLPGenerator
from generative_bench.backends.gan.truncation import truncation_threshold
from generative_bench.backends.nets.classifier import NoisyVectorClassifier
from generative_bench.backends.nets.mlp_denoiser import MLPDenoiser
from generative_bench.backends.vae import VAEBackend
from generative_bench.backends.vae.nets import ConvVAENet
from generative_bench.data.toy import RingOfGaussians
from generative_bench.errors import InputError
from generative_bench.evaluation.harness import save_samples_npz
from generative_bench.evaluation.sample_sets import NpzSampleSet
from generative_bench.sampler import ImageNoise, SampleBatch, image_seed

RING = RingOfGaussians(size=16)
MEANS, STD = RING.means, RING.std  # 8 modes on the unit circle, std 0.01
TINY_MLP = functools.partial(MLPDenoiser, hidden=32, num_blocks=2, time_dim=16, input_features=4)
TINY_CLASSIFIER = functools.partial(NoisyVectorClassifier, hidden=32, num_blocks=1, time_dim=16, input_features=4)


def _original_step(t_model: torch.Tensor, num_timesteps: int, rescale: bool) -> torch.Tensor:
    """Inverse of ``GaussianDiffusion.model_time``: the original-process index of a network timestep."""
    steps = t_model.double() * (num_timesteps / 1000.0) if rescale else t_model.double()
    return steps.round().long()


class RingClassifier(nn.Module):
    """Exact class logits log p(y | x_t) + const of the Gaussian-class mixture, given (x, model_time(t))."""

    def __init__(self, dim: int = 2, num_classes: int = 8, alphas_cumprod: torch.Tensor | None = None,
                 rescale: bool = True):
        super().__init__()
        assert dim == 2 and num_classes == len(MEANS)
        self.register_buffer("means", MEANS.double().clone())
        self.register_buffer("ab", alphas_cumprod.double().clone())
        self.rescale = rescale

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ab = self.ab[_original_step(t, len(self.ab), self.rescale)].to(x.dtype)[:, None]
        var = ab * STD ** 2 + 1 - ab
        d2 = (x[:, None, :] - ab.sqrt()[:, None] * self.means.to(x.dtype)[None]).pow(2).sum(-1)
        return -0.5 * d2 / var


class RingOracle(nn.Module):
    """Bayes-optimal eps of the (unconditional) ring: (x_t - sqrt(ab) E[x_0 | x_t]) / sqrt(1 - ab)."""

    def __init__(self, dim: int = 2, out_dim: int = 2, alphas_cumprod: torch.Tensor | None = None,
                 rescale: bool = True):
        super().__init__()
        self.register_buffer("means", MEANS.double().clone())
        self.register_buffer("ab", alphas_cumprod.double().clone())
        self.rescale = rescale

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ab = self.ab[_original_step(t, len(self.ab), self.rescale)].to(x.dtype)[:, None]
        means = self.means.to(x.dtype)
        var = ab * STD ** 2 + 1 - ab
        centred = x[:, None, :] - ab.sqrt()[:, None] * means[None]
        w = torch.softmax(-0.5 * centred.pow(2).sum(-1) / var, dim=1)
        post = means[None] + (STD ** 2 * ab.sqrt() / var)[:, None] * centred
        x0 = (w[:, :, None] * post).sum(1)
        return (x - ab.sqrt() * x0) / (1 - ab).sqrt()


def closed_form_grad(x: torch.Tensor, y: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """sqrt(ab) / v (m_y - sum_k p(k | x_t) m_k) in float64; ``ab`` (B, 1) at each example's step."""
    x, ab, means = x.double(), ab.double(), MEANS.double()
    v = ab * STD ** 2 + 1 - ab
    d2 = (x[:, None, :] - ab.sqrt()[:, None] * means[None]).pow(2).sum(-1)
    p = torch.softmax(-0.5 * d2 / v, dim=1)
    return ab.sqrt() / v * (means[y] - p @ means)


def _jitter(net: nn.Module, seed: int = 5, scale: float = 0.05) -> nn.Module:
    """Perturb every parameter: zero-initialised residual branches would hide the class and time inputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return net


def _cond_backend(**kw):
    torch.manual_seed(0)
    kw = {"timesteps": 40, "num_classes": 4, "schedule": "cosine", **kw}
    b = DiffusionBackend([2], vector_net=TINY_MLP, **kw)
    _jitter(b.net)
    return b


def _differ(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (a - b).abs().max().item() > 1e-3


# ------------------------------------------------------------------ 1. classifier scale 0
SOLVER_SETTINGS = [{"method": "ancestral"}, {"method": "ancestral", "steps": 7},
                   {"method": "ddim"}, {"method": "ddim", "steps": "ddim8", "eta": 0.5}]


@pytest.mark.parametrize("settings", SOLVER_SETTINGS, ids=lambda s: "-".join(map(str, s.values())))
def test_classifier_scale_zero_is_unguided_sampling_bit_for_bit(settings):
    b = _cond_backend(classifier=True, vector_classifier=TINY_CLASSIFIER)
    assert b.resolve_settings()["classifier_scale"] == 0.0
    plain, y_plain = b.sample(12, seed=4, **settings)
    zero, y_zero = b.sample(12, seed=4, classifier_scale=0.0, **settings)
    guided, y_guided = b.sample(12, seed=4, classifier_scale=3.0, **settings)
    assert torch.equal(plain, zero) and torch.equal(y_plain, y_zero) and torch.equal(y_plain, y_guided)
    assert _differ(plain, guided)  # the classifier is live: a non-zero scale moves the samples
    # a zero-scale guidance object inside the solver changes nothing either
    b.eval()
    process = b.respaced(settings.get("steps"))
    y = torch.arange(12) % 4
    model = classifier_free(b.net, y, 4, 0.0, 2)
    seeds = [image_seed(9, i) for i in range(12)]
    with torch.no_grad():
        ref = sample_loop(process, model, (12, 2), ImageNoise(seeds), method=settings["method"],
                          eta=settings.get("eta", 0.0), clip_denoised=False)
        with_zero = sample_loop(process, model, (12, 2), ImageNoise(seeds), method=settings["method"],
                                eta=settings.get("eta", 0.0), clip_denoised=False,
                                guidance=ClassifierGuidance(b.classifier, y, 0.0))
    assert torch.equal(ref, with_zero)


def test_guidance_knobs_need_their_networks():
    with pytest.raises(InputError, match="classifier"):
        _cond_backend().sample(2, classifier_scale=1.0)  # a conditional net without a classifier
    unconditional = DiffusionBackend([2], vector_net=TINY_MLP, timesteps=30)
    assert unconditional.knobs() == {}
    with pytest.raises(InputError, match="unknown sampling option"):
        unconditional.sample(2, cfg_scale=1.0)
    with pytest.raises(InputError, match="needs labelled data"):
        DiffusionBackend([2], vector_net=TINY_MLP, timesteps=30, classifier=True, vector_classifier=TINY_CLASSIFIER)


# ------------------------------------------------------------------ 2. classifier-free guidance
@pytest.mark.parametrize("steps", [None, 6])
def test_cfg_zero_is_the_conditional_model_and_minus_one_the_null_class(steps):
    b = _cond_backend()
    n, seed = 10, 21
    out = {w: b.draw(0, n, seed, b.resolve_settings(cfg_scale=w, steps=steps), chunk=n) for w in (0.0, -1.0, 1.5)}
    b.eval()
    process = b.respaced(steps)
    for w, closure_labels in ((0.0, None), (-1.0, 4)):
        noise = ImageNoise([image_seed(seed, i) for i in range(n)])
        y = noise.randint(4)  # the class is each image's first draw
        cls = y if closure_labels is None else torch.full_like(y, closure_labels)
        with torch.no_grad():
            want = sample_loop(process, lambda x, t: b.net(x, t, cls), (n, 2), noise, clip_denoised=False)
        assert torch.equal(out[w].images, want), w
        assert torch.equal(out[w].labels, y)
    assert _differ(out[0.0].images, out[-1.0].images) and _differ(out[1.5].images, out[0.0].images)
    settings = b.resolve_settings(steps=steps)
    assert b.network_evaluations({**settings, "cfg_scale": 0.0}) == b.network_evaluations({**settings, "cfg_scale": -1.0})
    assert b.network_evaluations({**settings, "cfg_scale": 1.5}) == 2 * process.num_timesteps


def test_cfg_prediction_and_step_with_learned_range_variance():
    b = _cond_backend(variance="learned_range", loss="hybrid").eval()
    with torch.no_grad():  # keep the untrained variance interpolation v near 0 (a finite sampler)
        b.net.out[-1].weight[2:] *= 0.1
        b.net.out[-1].bias[2:] *= 0.1
    w, n = 2.0, 16
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 2, generator=g)
    t = torch.randint(0, 40, (n,), generator=g)
    y = torch.randint(0, 4, (n,), generator=g)
    tm = b.process.model_time(t)
    with torch.no_grad():
        guided = classifier_free(b.net, y, 4, w, 2)(x, tm)
        cond, uncond = b.net(x, tm, y), b.net(x, tm, torch.full_like(y, 4))
        by_hand = torch.cat([(1 + w) * cond[:, :2] - w * uncond[:, :2], cond[:, 2:]], 1)
        assert _differ(cond[:, 2:], uncond[:, 2:])  # the variance channels differ by class
        assert torch.allclose(guided, by_hand, atol=1e-6)
        mean, var = ancestral_moments(b.process, classifier_free(b.net, y, 4, w, 2), x, t, clip_denoised=False)
        ref = b.process.p_mean_variance(None, x, t, model_output=by_hand)
        want_var, _ = b.process.model_variance(cond[:, 2:], t, x)
        assert torch.allclose(mean, ref["mean"], atol=1e-6) and torch.allclose(var, ref["variance"], rtol=1e-6)
        assert torch.allclose(var, want_var, rtol=1e-6)
        # the whole guided sampler equals the loop over the hand-made guided prediction
        seeds = [image_seed(2, i) for i in range(n)]
        sampled = b.sample_model_space(n, ImageNoise(seeds), labels=y, cfg_scale=w, steps=5)

        def hand(xx, tt):
            c, u = b.net(xx, tt, y), b.net(xx, tt, torch.full_like(y, 4))
            return torch.cat([(1 + w) * c[:, :2] - w * u[:, :2], c[:, 2:]], 1)

        want = sample_loop(b.respaced(5), hand, (n, 2), ImageNoise(seeds), clip_denoised=False)
    assert torch.isfinite(sampled).all() and torch.allclose(sampled, want, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ 3. analytic classifier guidance
@pytest.mark.parametrize("spec", [None, 20, "ddim10"])
@pytest.mark.parametrize("rescale", [True, False])
def test_classifier_guidance_shift_matches_the_closed_form(spec, rescale):
    T, s = 200, 2.5
    base = GaussianDiffusion(make_betas("linear", T), variance="fixed_small", rescale_timesteps=rescale)
    process = respace(base, spec)
    K = process.num_timesteps
    classifier = RingClassifier(alphas_cumprod=base.alphas_cumprod, rescale=rescale)
    oracle = RingOracle(alphas_cumprod=base.alphas_cumprod, rescale=rescale)
    g = torch.Generator().manual_seed(1)
    t = torch.arange(K).repeat_interleave(4)
    n = len(t)
    x0 = MEANS[torch.randint(0, 8, (n,), generator=g)] + STD * torch.randn(n, 2, generator=g, dtype=torch.float64)
    xt = process.q_sample(x0, t, torch.randn(n, 2, generator=g, dtype=torch.float64))
    xt[::3] += 0.3 * torch.randn(len(xt[::3]), 2, generator=g, dtype=torch.float64)  # points between the modes
    y = torch.randint(0, 8, (n,), generator=g)
    guidance = ClassifierGuidance(classifier, y, s)
    out = process.p_mean_variance(oracle, xt, t)
    assert out["mean"].dtype == torch.float64
    ab = base.alphas_cumprod[process.timestep_map[t]][:, None]  # the original process at the mapped step
    assert torch.allclose(ab, process.alphas_cumprod[t][:, None], rtol=1e-12, atol=0)
    closed = closed_form_grad(xt, y, ab)
    assert closed.abs().max() > 1.0  # the check is not vacuous
    mean = guidance.shift_mean(process, out, xt, t)
    assert torch.allclose(mean, out["mean"] + s * out["variance"] * closed, rtol=0, atol=1e-5)
    shifted = guidance.shift_eps(process, out, xt, t)
    want_eps = out["eps"] - (1 - ab).sqrt() * s * closed
    assert torch.allclose(shifted["eps"], want_eps, rtol=1e-9, atol=1e-5)
    x0_hat = process.predict_xstart_from_eps(xt, t, want_eps)
    assert torch.allclose(shifted["pred_xstart"], x0_hat, rtol=1e-9, atol=1e-5)
    assert torch.allclose(shifted["mean"], process.q_posterior_mean_variance(x0_hat, xt, t)[0], rtol=1e-9, atol=1e-5)


def test_guidance_gradient_keeps_the_input_precision():
    """float64 inputs get a float64 gradient (a double classifier works); half inputs are promoted."""
    process = GaussianDiffusion(make_betas("cosine", 50))
    torch.manual_seed(0)
    clf = _jitter(TINY_CLASSIFIER(dim=2, num_classes=3))
    x = torch.randn(6, 2).half().double()  # exactly representable in half precision
    t = torch.arange(6) * 8
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    g64 = ClassifierGuidance(clf.double(), y, 1.5).grad(process, x, t)
    x_in = x.clone().requires_grad_(True)
    logp = torch.log_softmax(clf(x_in, process.model_time(t)), -1).gather(1, y[:, None]).sum()
    assert g64.dtype == torch.float64
    assert torch.allclose(g64, 1.5 * torch.autograd.grad(logp, x_in)[0], rtol=1e-12, atol=1e-12)
    g16 = ClassifierGuidance(clf.float(), y, 1.5).grad(process, x.half(), t)
    assert g16.dtype == torch.float16 and torch.allclose(g16.double(), g64, rtol=1e-2, atol=1e-2)


# ------------------------------------------------------------------ 4. guided sampling moves to the class
@pytest.mark.parametrize("settings", [{}, {"method": "ddim", "steps": 50}], ids=["ancestral", "ddim50"])
def test_classifier_guidance_moves_samples_to_the_requested_mode(settings):
    """Exact denoiser of the unconditional ring + exact noisy classifier: unguided samples spread
    over the 8 modes (~1/8 on mode 3); guided with s = 5 towards class 3 they land there."""
    T = 200
    ab = GaussianDiffusion(make_betas("linear", T)).alphas_cumprod
    b = DiffusionBackend([2], vector_net=functools.partial(RingOracle, alphas_cumprod=ab, rescale=False),
                         timesteps=T, variance="fixed_small", rescale_timesteps=False, num_classes=8,
                         conditional_net=False, classifier=True,
                         vector_classifier=functools.partial(RingClassifier, alphas_cumprod=ab, rescale=False))
    labels = torch.full((256,), 3)
    share = {}
    for s in (0.0, 5.0):
        x, y = b.sample(256, seed=0, labels=labels, classifier_scale=s, **settings)
        assert torch.equal(y, labels)
        dist = torch.cdist(x.double(), MEANS)
        assert dist.min(1).values.median() < 3 * STD  # on the modes, guided or not
        nearest = dist.argmin(1)
        share[s] = (nearest == 3).double().mean().item()
        if s == 0.0:  # unguided: the exact denoiser samples every mode
            assert torch.bincount(nearest, minlength=8).min() > 10
    assert 0.04 < share[0.0] < 0.25, share  # ~1/8
    assert share[5.0] > 0.9, share


# ------------------------------------------------------------------ 5. GAN truncation
def _gan(num_classes=0):
    torch.manual_seed(0)
    return GANBackend([2], vector_generator=functools.partial(MLPGenerator, z_dim=4, hidden=16, depth=2),
                      vector_discriminator=functools.partial(MLPDiscriminator, hidden=16, depth=2),
                      num_classes=num_classes)


def test_truncation_one_is_plain_sampling_and_smaller_psi_shrinks_the_latents():
    b = _gan()
    n, seed = 40, 11
    seen = []
    hook = b.generator.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().clone()))
    try:
        plain = b.sample(n, seed=seed)
        one = b.sample(n, seed=seed, truncation=1.0)
        lat = {}
        for psi in (1.0, 0.7, 0.3):
            seen.clear()
            b.sample(n, seed=seed, truncation=psi)
            lat[psi] = torch.cat([z[:min(32, n - 32 * i)] for i, z in enumerate(seen)])  # padding dropped
    finally:
        hook.remove()
    assert torch.equal(plain, one)
    # psi = 1: the generator gets exactly the standard-normal draws of each image's generator
    chunks = []
    for c0 in range(0, n, 32):
        m = min(32, n - c0)
        seeds = [image_seed(seed, c0 + j) for j in range(m)]
        z = ImageNoise(seeds + [seeds[-1]] * (32 - m)).randn((32, 4))
        with torch.no_grad():
            chunks.append(b.generator.eval()(z)[:m])
    assert torch.equal(plain, torch.cat(chunks))
    assert torch.equal(lat[1.0][:32], ImageNoise([image_seed(seed, i) for i in range(32)]).randn((32, 4)))
    for psi in (0.7, 0.3):
        assert lat[psi].abs().max() <= truncation_threshold(psi)
    stds = [lat[psi].std().item() for psi in (1.0, 0.7, 0.3)]
    assert stds[0] > stds[1] > stds[2], stds
    assert not torch.equal(b.sample(n, seed=seed, truncation=0.7), plain)
    with pytest.raises(InputError, match="truncation"):
        b.sample(2, truncation=0.0)


@pytest.mark.parametrize("num_classes", [0, 4])
def test_truncated_samples_stay_per_image_reproducible(num_classes):
    b = _gan(num_classes)
    settings = b.resolve_settings(truncation=0.4)
    whole = b.draw(0, 50, 3, settings)
    for i in (0, 17, 49):
        one = b.draw(i, i + 1, 3, settings)
        assert torch.equal(one.images[0], whole.images[i]), i
        if num_classes:
            assert torch.equal(one.labels[0], whole.labels[i])
    parts = SampleBatch.concat(b.draw(s, min(50, s + 7), 3, settings) for s in range(0, 50, 7))
    assert torch.equal(parts.images, whole.images)


# ------------------------------------------------------------------ 6. labels through npz files
def _image_cvae(num_classes=5):
    torch.manual_seed(0)
    return VAEBackend([3, 8, 8], image_net=functools.partial(ConvVAENet, channels=(8, 16), latent_channels=4),
                      num_classes=num_classes)


def test_labels_survive_the_npz_round_trip(tmp_path):
    b = _image_cvae()
    settings = b.resolve_settings()
    batch = b.draw(0, 20, 3, settings)
    assert batch.images.dtype == torch.uint8 and batch.labels.dtype == torch.long
    assert len(set(batch.labels.tolist())) > 1
    path = tmp_path / "samples.npz"
    save_samples_npz(batch, path)
    with np.load(path) as f:
        assert f["arr_1"].dtype == np.int64 and f["arr_0"].shape == (20, 8, 8, 3)
        assert np.array_equal(f["arr_1"], batch.labels.numpy())
    loaded = NpzSampleSet(str(path))
    assert loaded.conditional
    back = loaded.draw(0, 20)
    assert torch.equal(back.images, batch.images) and torch.equal(back.labels, batch.labels)
    assert back.labels.dtype == torch.long
    part = loaded.draw(5, 12)
    assert torch.equal(part.labels, batch.labels[5:12]) and torch.equal(part.images, batch.images[5:12])
    with pytest.raises(InputError, match="cannot be chosen"):
        loaded.draw(0, 2, labels=torch.tensor([0, 1]))


def test_given_labels_are_honoured_and_keep_the_rest_of_each_image():
    b = _image_cvae()
    settings = b.resolve_settings()
    drawn = b.draw(0, 20, 3, settings)
    given = drawn.labels.clone()
    changed = torch.arange(20) % 3 == 0
    given[changed] = (given[changed] + 1) % 5
    out = b.draw(0, 20, 3, settings, labels=given)
    assert torch.equal(out.labels, given)
    assert torch.equal(out.images[~changed], drawn.images[~changed])
    assert all(not torch.equal(out.images[i], drawn.images[i]) for i in torch.nonzero(changed).flatten().tolist())
    # the sampler interface with a plain list of labels, across batches
    images, labels = b.sample(7, seed=3, labels=[4, 0, 0, 2, 1, 3, 4], batch_size=3)
    assert labels.tolist() == [4, 0, 0, 2, 1, 3, 4] and images.shape == (7, 3, 8, 8)
    same = drawn.labels[:7].tolist()
    again, _ = b.sample(7, seed=3, labels=same, batch_size=3)
    assert torch.equal(again, drawn.images[:7])
    with pytest.raises(InputError, match=r"class indices in \[0, 5\)"):
        b.sample(2, labels=[0, 5])
    with pytest.raises(InputError, match="labels given"):
        b.sample(3, labels=[0, 1])
