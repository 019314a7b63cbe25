"""The probability-flow ODE likelihood (ode.py): exact where the denoiser is exact, honest
estimators, the right dequantization term, and kept apart from the variational bound.

* The 8-mode ring with its exact E[eps | x_t] at every noise level: the PF-ODE is then the true
  one, and its NLL equals the mixture's exact NLL (``log_prob``) up to the start at
  sigma_start > 0 (sigma_start^2 / s^2 = 1 % of the mode variance) and the RK4 error.
* Gaussian images N(0, s^2 I) with the exact eps: the ODE NLL of the dequantized images equals
  -log2 N(z; 0, (s^2 + sigma_start^2) I) / D + 7 (Hutchinson with Rademacher probes is exact for
  this isotropic linear field).
* Hutchinson's estimator with many probes approximates the exact divergence of a small conv net
  on image-shaped inputs.
* Dequantization: a uniform density on [-1, 1]^D scores exactly 8 bits/dim; for a Gaussian
  density the dequantized bound is just above the exact discrete -log2 P(k).
"""

from __future__ import annotations

import functools
import math

import pytest
import torch

from generative_bench.backends.diffusion import DiffusionBackend, GaussianDiffusion, make_betas
from generative_bench.backends.diffusion.ode import (DEQUANT_BITS, dequantize, divergence, pf_ode_log_likelihood,
                                                     rademacher, sigma_of_timestep, timestep_of_sigma)
from generative_bench.backends.diffusion.solvers import training_sigmas
from generative_bench.data.toy import RingOfGaussians
from generative_bench.errors import InputError

LN2 = math.log(2.0)


class ContinuousOracle(torch.nn.Module):
    """Exact eps of an isotropic Gaussian mixture (means (K, d), std) at the noise level of any
    (fractional) model time, read back through ``sigma_of_timestep``; computed in float64."""

    def __init__(self, dim, out_dim, means, std, schedule="linear", T=1000, rescale=True):
        super().__init__()
        self.process = GaussianDiffusion(make_betas(schedule, T), rescale_timesteps=rescale)
        self.register_buffer("means", torch.as_tensor(means, dtype=torch.float64))
        self.std = float(std)
        self.scale = 1000.0 / T if rescale else 1.0

    def eps(self, x, t, means):
        sigma = sigma_of_timestep(self.process, t.double() / self.scale)[:, None]
        ab = 1.0 / (1.0 + sigma ** 2)
        xd = x.double().flatten(1)
        var = ab * self.std ** 2 + 1 - ab
        centred = xd[:, None, :] - ab.sqrt()[:, None] * means[None]
        w = torch.softmax(-0.5 * centred.pow(2).sum(-1) / var, dim=1)
        post = means[None] + (self.std ** 2 * ab.sqrt() / var)[:, None] * centred
        x0 = (w[:, :, None] * post).sum(1)
        return ((xd - ab.sqrt() * x0) / (1 - ab).sqrt()).reshape(x.shape).to(x.dtype)

    def forward(self, x, t):
        return self.eps(x, t, self.means)


class ClassOracle(ContinuousOracle):
    """The exact conditional eps of the ring: class y < K is its own Gaussian N(mu_y, s^2 I), the
    null class K the whole mixture (one net for every ``condition``)."""

    def __init__(self, dim, out_dim, num_classes, means, std):
        super().__init__(dim, out_dim, means, std)
        self.num_classes = num_classes

    def forward(self, x, t, y):
        out = torch.empty_like(x)
        for k in range(self.num_classes + 1):
            rows = y == k
            if rows.any():
                means = self.means if k == self.num_classes else self.means[k:k + 1]
                out[rows] = self.eps(x[rows], t[rows], means)
        return out


def test_timesteps_and_sigmas_map_back_and_forth():
    for schedule in ("linear", "cosine"):
        process = GaussianDiffusion(make_betas(schedule, 1000))
        train = training_sigmas(process)
        steps = torch.tensor([0, 1, 17, 500, 998, 999])
        assert torch.allclose(timestep_of_sigma(process, train[steps]), steps.double(), atol=1e-9)
        s = torch.linspace(-1.0, 999.0, 4001, dtype=torch.float64)
        assert torch.allclose(timestep_of_sigma(process, sigma_of_timestep(process, s)), s, atol=1e-7)
        assert float(sigma_of_timestep(process, torch.tensor(-1.0))) == 0.0
        sig = sigma_of_timestep(process, s)
        assert bool((sig[1:] > sig[:-1]).all())  # monotone


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_ode_nll_of_the_exact_ring_denoiser_is_the_exact_nll(schedule):
    ring = RingOfGaussians(size=200, split="test")
    b = DiffusionBackend([2], vector_net=functools.partial(ContinuousOracle, means=ring.means, std=ring.std,
                                                           schedule=schedule),
                         timesteps=1000, schedule=schedule, variance="fixed_small")
    res = b.nll(ring.points, generator=torch.Generator().manual_seed(0), method="ode", ode_steps=50)
    exact = ring.nll_bits_per_dim(ring.points)
    gap = res.bpd.double() - exact
    assert abs(gap.mean().item()) < 0.05, gap.mean().item()  # measured: |gap| < 0.003 (linear and cosine)
    assert gap.abs().max().item() < 0.1
    assert res.bound.startswith("probability-flow ODE likelihood (RK4, 50 steps uniform in log sigma from "
                                "sigma=0.001 to ")
    assert "200 network evaluations per example, exact divergence (2 autograd passes" in res.bound
    assert set(res.terms) == {"prior", "divergence"}
    assert torch.allclose(res.bpd, res.terms["prior"] + res.terms["divergence"])
    # the variational bound stays the default and is named as such; it lies above the exact NLL
    vlb = b.nll(ring.points[:50], generator=torch.Generator().manual_seed(0))
    assert vlb.bound.startswith("full variational bound") and set(vlb.terms) == {"prior", "kl", "decoder"}
    assert vlb.bpd.double().mean() > exact[:50].mean()


def test_class_conditional_ode_nll_marginal_label_and_null_are_exact():
    """Per-class flows of the exact conditional denoiser: ``label`` gives -log p(x | y), ``marginal``
    -log sum_y p(y) p(x | y) = the mixture's NLL, ``null`` the unconditional flow: all exact."""
    ring = RingOfGaussians(size=60, split="test")
    b = DiffusionBackend([2], vector_net=functools.partial(ClassOracle, means=ring.means, std=ring.std),
                         timesteps=1000, variance="fixed_small", num_classes=8)
    x, y = ring.points, torch.as_tensor(ring.labels)
    mixture = ring.nll_bits_per_dim(x)
    conditional = -ring.class_log_prob(x, y) / (2 * LN2)
    for condition, want in (("marginal", mixture), ("label", conditional), ("null", mixture)):
        res = b.nll(x, generator=torch.Generator().manual_seed(0), labels=y, method="ode", ode_steps=50,
                    condition=condition)
        gap = res.bpd.double() - want
        assert abs(gap.mean().item()) < 0.05 and gap.abs().max() < 0.1, (condition, gap.mean().item())
        assert res.bound.startswith("probability-flow ODE likelihood") and set(res.terms) == {"prior", "divergence"}
    assert "marginal over 8 classes" in b.nll(x[:4], method="ode", ode_steps=2).bound


def test_ode_nll_of_gaussian_images_with_hutchinson_and_dequantization():
    """N(0, s^2 I) on 3x4x4 images with its exact eps; the dequantized images' model density at
    sigma_start is N(0, (s^2 + sigma_start^2) I), so the expected bits/dim are known exactly."""
    s, start = 0.5, 1e-3
    b = DiffusionBackend([3, 4, 4], image_net=lambda in_channels, out_channels, image_size: ContinuousOracle(
        0, 0, means=torch.zeros(1, 48), std=s), timesteps=1000, variance="fixed_small")
    g = torch.Generator().manual_seed(0)
    levels = (127.5 + 127.5 * s * torch.randn(64, 3, 4, 4, generator=g)).round().clamp(0, 255)
    x = levels / 127.5 - 1.0
    res = b.nll(x, generator=torch.Generator().manual_seed(1), method="ode", ode_steps=40, sigma_start=start)
    assert "Hutchinson divergence estimator, 1 Rademacher probe per example" in res.bound
    assert "uniform dequantization (k + u) / 256 (+7 bits/dim)" in res.bound
    z = dequantize(x, torch.Generator().manual_seed(1))  # the same draw the nll made first
    var = s * s + start * start
    want = (0.5 * z.double().flatten(1).pow(2).sum(1) / var + 24 * math.log(2 * math.pi * var)) / (48 * LN2) + 7
    assert torch.allclose(res.bpd.double(), want, atol=2e-3), (res.bpd.double() - want).abs().max()
    assert torch.equal(res.terms["dequantization"].double(), torch.full((64,), 7.0, dtype=torch.float64))


def test_hutchinson_with_many_probes_approximates_the_exact_divergence():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 8, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv2d(8, 2, 3, padding=1))
    x = torch.randn(4, 2, 4, 4).requires_grad_(True)  # D = 32

    def div(probes=None):
        return divergence(net(x) + 0.3 * x, x, probes)

    exact = div()
    # exact = trace of the Jacobian, by brute force
    jac = torch.autograd.functional.jacobian(lambda y: net(y) + 0.3 * y, x.detach())  # (4,2,4,4,4,2,4,4)
    trace = torch.stack([jac[i].reshape(32, 4, 32)[:, i, :].diagonal().sum() for i in range(4)])
    assert torch.allclose(exact, trace, atol=1e-5)
    k = 4000
    probes = rademacher((k, *x.shape), torch.Generator().manual_seed(2), "cpu")
    est = div(probes)
    # the per-probe spread gives the tolerance: 4 standard errors
    per = torch.stack([div(probes[j:j + 1]) for j in range(200)])
    se = per.std(0) / math.sqrt(k)
    assert ((est - exact).abs() < 4 * se + 1e-4).all(), (est, exact, se)
    assert (per.std(0) > 0.01).all()  # the estimator is not trivially exact here


def test_dequantization_term_is_right():
    # uniform density on [-1, 1]^D: -log2 p_z / D = 1 bit, + 7 = 8 bits/dim = log2(256 levels)
    assert DEQUANT_BITS == 7.0
    assert -math.log2(0.5) + DEQUANT_BITS == 8.0
    g = torch.Generator().manual_seed(0)
    levels = torch.randint(0, 256, (5000, 3), generator=g).double()
    x = levels / 127.5 - 1.0
    z = dequantize(x, torch.Generator().manual_seed(1))
    lo, hi = 2 * levels / 256 - 1, 2 * (levels + 1) / 256 - 1
    assert bool(((z >= lo) & (z < hi)).all())  # each level's own bin of width 2/256
    frac = (z - lo) / (hi - lo)
    assert abs(frac.mean().item() - 0.5) < 0.01 and abs(frac.var().item() - 1 / 12) < 0.005  # u ~ U[0, 1)
    # a Gaussian density N(0, 0.3^2) on the model-space line: the dequantized bound is >= the
    # exact -log2 P(k) of its bins and within a hair of it (the density is smooth at a bin's scale)
    s = 0.3
    normal = torch.distributions.Normal(0.0, s)
    k = torch.arange(64.0, 192.0, dtype=torch.float64)
    p_k = normal.cdf(2 * (k + 1) / 256 - 1) - normal.cdf(2 * k / 256 - 1)
    zs = dequantize((k / 127.5 - 1).repeat(2000, 1), torch.Generator().manual_seed(3))
    bound = (-normal.log_prob(zs) / LN2).mean(0) + DEQUANT_BITS
    exact = -p_k.log2()
    assert ((bound - exact) > -2e-3).all() and (bound - exact).abs().max() < 5e-3


def test_ode_options_are_checked():
    ring = RingOfGaussians(size=8, split="test")
    b = DiffusionBackend([2], vector_net=functools.partial(ContinuousOracle, means=ring.means, std=ring.std),
                         timesteps=1000, variance="fixed_small")
    x = ring.points
    with pytest.raises(InputError, match="model.nll.method must be one of"):
        b.nll(x, method="flow")
    with pytest.raises(InputError, match="options of the variational bound"):
        b.nll(x, method="ode", timesteps=10)
    with pytest.raises(InputError, match="model.nll.divergence must be one of"):
        b.nll(x, method="ode", divergence="bad")
    with pytest.raises(InputError, match="sigma_start must be in"):
        b.nll(x, method="ode", sigma_start=1e6)
    res = b.nll(x, generator=torch.Generator().manual_seed(0), method="ode", ode_steps=8, divergence="hutchinson",
                probes=3)
    assert "Hutchinson divergence estimator, 3 Rademacher probes per example" in res.bound
    # probes come from the generator: the same seed, the same estimate
    again = b.nll(x, generator=torch.Generator().manual_seed(0), method="ode", ode_steps=8,
                  divergence="hutchinson", probes=3)
    assert torch.equal(res.bpd, again.bpd)
    direct = pf_ode_log_likelihood(lambda y, s: 0.0 * y, x.float(), 1e-3, 10.0, 4)
    assert torch.allclose(direct["divergence"], torch.zeros(8, dtype=torch.float64))  # dx/du = 0: no volume change
