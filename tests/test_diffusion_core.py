"""Closed forms of the Gaussian diffusion core: schedules, q / posterior moments, KL, the
discretized decoder, respacing and the DDIM <-> ancestral correspondence."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import norm

from generative_bench.backends.diffusion.gaussian import GaussianDiffusion
from generative_bench.backends.diffusion.likelihood import (
    continuous_gaussian_log_likelihood,
    discretized_gaussian_log_likelihood,
    normal_kl,
)
from generative_bench.backends.diffusion.respace import respace, space_timesteps
from generative_bench.backends.diffusion.solvers import ancestral_moments, ddim_moments
from generative_bench.backends.diffusion.schedules import cosine_alpha_bar, cosine_betas, linear_betas, make_betas
from generative_bench.errors import InputError


def _process(T=50, schedule="linear", variance="fixed_small", rescale=False):
    return GaussianDiffusion(make_betas(schedule, T), variance=variance, rescale_timesteps=rescale)


# ------------------------------------------------------------------ schedules
def test_linear_schedule_matches_ho_and_rescales_with_T():
    b = linear_betas(1000)
    assert b.dtype == torch.float64 and len(b) == 1000
    assert b[0].item() == pytest.approx(1e-4) and b[-1].item() == pytest.approx(0.02)
    b4k = linear_betas(4000)
    assert b4k[0].item() == pytest.approx(2.5e-5) and b4k[-1].item() == pytest.approx(0.005)


def test_cosine_schedule_alpha_bar_and_clip():
    T = 1000
    p = GaussianDiffusion(cosine_betas(T))
    t = torch.arange(1, T + 1, dtype=torch.float64)
    want = torch.tensor([cosine_alpha_bar(float(s) / T) / cosine_alpha_bar(0.0) for s in t], dtype=torch.float64)
    # away from the clipped last steps alpha_bar follows Nichol & Dhariwal Eq. 17 exactly
    assert torch.allclose(p.alphas_cumprod[:-5], want[:-5], rtol=1e-10, atol=1e-12)
    assert p.betas.max().item() == pytest.approx(0.999)
    with pytest.raises(InputError, match="unknown noise schedule"):
        make_betas("cosin", 10)
    with pytest.raises(InputError, match="T > 20"):
        make_betas("linear", 20)


# ------------------------------------------------------------------ forward process / posterior
def test_q_moments_equal_the_composed_forward_steps():
    p = _process(40)
    x0 = torch.randn(3, 5, dtype=torch.float64)
    mean, var = x0.clone(), torch.zeros_like(x0)
    for i in range(p.num_timesteps):  # q(x_t | x_{t-1}) = N(sqrt(1 - b) x_{t-1}, b)
        b = p.betas[i]
        mean, var = (1 - b).sqrt() * mean, (1 - b) * var + b
        t = torch.full((3,), i)
        m, v, logv = p.q_mean_variance(x0, t)
        assert torch.allclose(m, mean, atol=1e-12) and torch.allclose(v, var, atol=1e-12)
        assert torch.allclose(logv, var.log(), atol=1e-10)
    # q_sample has those moments
    x0 = torch.full((200_000, 1), 0.7, dtype=torch.float64)
    t = torch.full((len(x0),), 20)
    xt = p.q_sample(x0, t, torch.randn(x0.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    m, v, _ = p.q_mean_variance(x0[:1], t[:1])
    assert xt.mean().item() == pytest.approx(m.item(), abs=5e-3)
    assert xt.var().item() == pytest.approx(v.item(), rel=1e-2)


def test_posterior_matches_gaussian_conditioning():
    """q(x_{t-1} | x_t, x_0) from the joint Gaussian of (x_{t-1}, x_t) given x_0."""
    p = _process(30, "cosine")
    x0 = torch.randn(30, 4, dtype=torch.float64)
    xt = torch.randn(30, 4, dtype=torch.float64)
    t = torch.arange(1, 31).clamp(max=29)
    mean, var, _ = p.q_posterior_mean_variance(x0, xt, t)
    ab_prev = p.tables["alphas_cumprod_prev"][t][:, None]
    ab = p.alphas_cumprod[t][:, None]
    alpha = 1 - p.betas[t][:, None]
    mu_prev, var_prev = ab_prev.sqrt() * x0, 1 - ab_prev
    cov = alpha.sqrt() * var_prev  # Cov(x_{t-1}, x_t | x_0)
    want_mean = mu_prev + cov / (1 - ab) * (xt - alpha.sqrt() * mu_prev)
    want_var = var_prev - cov ** 2 / (1 - ab)
    assert torch.allclose(mean, want_mean, atol=1e-10)
    assert torch.allclose(var, want_var.expand_as(var), atol=1e-12)
    # at t = 0 the posterior is a point mass at x_0
    t0 = torch.zeros(30, dtype=torch.long)
    m0, v0, logv0 = p.q_posterior_mean_variance(x0, xt, t0)
    assert torch.allclose(m0, x0) and (v0 == 0).all()
    assert torch.allclose(logv0, p.tables["posterior_variance"][1].log().expand_as(logv0))  # clipped


def test_eps_and_xstart_predictions_invert_each_other():
    p = _process(24)
    x0, eps = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 3, dtype=torch.float64)
    t = torch.arange(8) * 2
    xt = p.q_sample(x0, t, eps)
    assert torch.allclose(p.predict_xstart_from_eps(xt, t, eps), x0, atol=1e-9)
    assert torch.allclose(p.predict_eps_from_xstart(xt, t, x0), eps, atol=1e-9)


def test_variance_types():
    T = 25
    x = torch.zeros(T, 2, dtype=torch.float64)
    t = torch.arange(T)
    small = _process(T, variance="fixed_small")
    large = _process(T, variance="fixed_large")
    learned = _process(T, variance="learned_range")
    post = small.tables["posterior_variance"]
    assert torch.allclose(small.model_variance(None, t, x)[0][:, 0], torch.cat([post[1:2], post[1:]]))
    want_large = torch.cat([post[1:2], large.betas[1:]])  # beta~_1 at t = 0, as improved-diffusion
    assert torch.allclose(large.model_variance(None, t, x)[0][:, 0], want_large)
    lo = learned.model_variance(-torch.ones_like(x), t, x)[0][:, 0]
    hi = learned.model_variance(torch.ones_like(x), t, x)[0][:, 0]
    mid = learned.model_variance(torch.zeros_like(x), t, x)[0][:, 0]
    assert torch.allclose(lo, torch.cat([post[1:2], post[1:]])) and torch.allclose(hi, learned.betas)
    assert torch.allclose(mid, (lo * hi).sqrt())  # frac = 1/2 interpolates in log space
    with pytest.raises(InputError, match="channels"):
        learned.split_output(torch.zeros(2, 2), torch.zeros(2, 2))


# ------------------------------------------------------------------ likelihood terms
def test_normal_kl():
    m, lv = torch.randn(100, dtype=torch.float64), torch.randn(100, dtype=torch.float64)
    assert torch.allclose(normal_kl(m, lv, m, lv), torch.zeros(100, dtype=torch.float64), atol=1e-12)
    m2, lv2 = torch.randn(100, dtype=torch.float64), torch.randn(100, dtype=torch.float64)
    want = torch.distributions.kl_divergence(torch.distributions.Normal(m, (0.5 * lv).exp()),
                                             torch.distributions.Normal(m2, (0.5 * lv2).exp()))
    assert torch.allclose(normal_kl(m, lv, m2, lv2), want, atol=1e-10)
    x = torch.randn(50, dtype=torch.float64)
    want_ll = torch.distributions.Normal(m[:50], (0.5 * lv[:50]).exp()).log_prob(x)
    assert torch.allclose(continuous_gaussian_log_likelihood(x, m[:50], lv[:50]), want_ll, atol=1e-10)


@pytest.mark.parametrize("mean,log_scale", [(0.0, -1.0), (0.3, -5.0), (-0.99, -3.0), (2.5, 0.5), (0.0, -9.0),
                                            (-3.0, -4.0)])
def test_discretized_gaussian_sums_to_one_over_256_bins(mean, log_scale):
    grid = torch.linspace(-1, 1, 256, dtype=torch.float64)
    logp = discretized_gaussian_log_likelihood(grid, torch.full_like(grid, mean), torch.full_like(grid, log_scale))
    assert torch.isfinite(logp).all()
    assert logp.exp().sum().item() == pytest.approx(1.0, abs=1e-9)
    # against scipy's normal CDF on the same bins (interior bins of width 2/255)
    lo, hi = (grid - 1 / 255 - mean) / math.exp(log_scale), (grid + 1 / 255 - mean) / math.exp(log_scale)
    p = norm.cdf(hi.numpy()) - norm.cdf(lo.numpy())
    p[0], p[-1] = norm.cdf(hi[0].item()), norm.sf(lo[-1].item())
    mask = p > 1e-7  # scipy's CDF differences lose relative precision in the far tails
    assert torch.allclose(logp[mask], torch.from_numpy(p[mask]).log(), rtol=1e-6, atol=1e-8)


def test_discretized_gaussian_float32_matches_float64():
    x = torch.linspace(-1, 1, 256).repeat(4)
    means = torch.randn(1024) * 0.5
    ls = torch.rand(1024) * -6
    a = discretized_gaussian_log_likelihood(x, means, ls)
    b = discretized_gaussian_log_likelihood(x.double(), means.double(), ls.double())
    assert torch.isfinite(a).all()
    assert torch.allclose(a.double(), b, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------ respacing
def test_space_timesteps_sections_and_ddim():
    steps = space_timesteps(300, "10,15,20")
    assert len(steps) == 45
    for lo, hi, count in [(0, 100, 10), (100, 200, 15), (200, 300, 20)]:
        inside = [s for s in steps if lo <= s < hi]
        assert len(inside) == count and inside[0] == lo and inside[-1] == hi - 1
    assert space_timesteps(1000, "ddim50") == list(range(0, 1000, 20))
    assert space_timesteps(1000, 50) == space_timesteps(1000, "50")
    assert space_timesteps(10, 10) == list(range(10))
    with pytest.raises(InputError, match="use fewer steps"):
        space_timesteps(10, 11)
    with pytest.raises(InputError, match="ddim"):
        space_timesteps(100, "ddim33")
    with pytest.raises(InputError):
        space_timesteps(100, "fifty")


@pytest.mark.parametrize("spec", [10, "5,3", "ddim25", "1,1,1"])
def test_respaced_alphas_bar_equal_the_originals(spec):
    base = _process(100, "cosine", "learned_range", rescale=True)
    sub = respace(base, spec)
    kept = space_timesteps(100, spec)
    assert sub.num_timesteps == len(kept)
    assert torch.equal(sub.timestep_map, torch.tensor(kept))
    # equal up to the float64 rounding of 1 - alpha_bar ratio (relative 1e-9 even for beta near 0.999)
    assert torch.allclose(sub.alphas_cumprod, base.alphas_cumprod[kept], rtol=1e-9, atol=0)
    assert sub.variance == base.variance
    # the network is called with the original step, rescaled to [0, 1000)
    k = torch.arange(sub.num_timesteps)
    assert torch.allclose(sub.model_time(k), torch.tensor(kept, dtype=torch.float32) * 10.0)
    # respacing a respaced process composes the maps
    if sub.num_timesteps >= 2:
        twice = respace(sub, 2)
        assert torch.allclose(twice.alphas_cumprod, base.alphas_cumprod[twice.timestep_map], rtol=1e-9)
    assert respace(base, None) is base and respace(base, 100) is base


# ------------------------------------------------------------------ samplers
class _Net(torch.nn.Module):
    """A fixed random function of (x, t) with the right number of outputs."""

    def __init__(self, channels=3, factor=1):
        super().__init__()
        self.conv = torch.nn.Conv2d(channels + 1, channels * factor, 3, padding=1)

    def forward(self, x, t):
        tt = (t.float() / 1000.0)[:, None, None, None].expand(len(x), 1, *x.shape[2:])
        return self.conv(torch.cat([x, tt.to(x.dtype)], 1))


@pytest.mark.parametrize("spec", [None, 7, "ddim5"])
@pytest.mark.parametrize("clip", [False, True])
def test_ddim_eta1_equals_ancestral_fixed_small(spec, clip):
    torch.manual_seed(0)
    base = _process(40, "linear", "fixed_small", rescale=True)
    process = respace(base, spec)
    net = _Net().double()
    x = torch.randn(4, 3, 6, 6, dtype=torch.float64) * 1.5
    for i in range(process.num_timesteps):
        t = torch.full((4,), i)
        m_a, v_a = ancestral_moments(process, net, x, t, clip_denoised=clip)
        m_d, v_d = ddim_moments(process, net, x, t, clip_denoised=clip, eta=1.0)
        assert torch.allclose(m_a, m_d, atol=1e-10), i
        if i > 0:  # at t = 0 no noise is added by either sampler
            assert torch.allclose(v_a, v_d, rtol=1e-9, atol=1e-15), i
        _, v0 = ddim_moments(process, net, x, t, clip_denoised=clip, eta=0.0)
        assert (v0 == 0).all()
