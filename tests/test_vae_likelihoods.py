"""Decoder likelihoods of the VAE: normalisation, accuracy in the tails, sampling."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from generative_bench.backends.vae.likelihoods import (DiscretizedLogisticMixture, GaussianLikelihood,
                                                        log_logistic_bin_mass)
from generative_bench.errors import InputError

BINS = torch.arange(256, dtype=torch.float32) / 127.5 - 1.0


def _params(k, c, means, log_scales, logits):
    """Pack (K, C) parameter grids into a (1, 3*K*C, 1, 1) decoder output."""
    p = torch.stack([logits, means, log_scales])  # (3, K, C)
    return p.reshape(1, 3 * k * c, 1, 1)


def _total_mass(lik, params, c):
    x = BINS.view(256, 1, 1, 1).expand(256, c, 1, 1)
    return lik.log_prob(x, params.expand(256, -1, -1, -1)).exp().sum(0).flatten()  # (C,)


@pytest.mark.parametrize("k", [1, 5])
def test_bins_sum_to_one_random_and_extreme(k):
    g = torch.Generator().manual_seed(0)
    lik = DiscretizedLogisticMixture(num_mixtures=k)
    c = 3
    for trial in range(20):
        means = torch.randn(k, c, generator=g) * 1.5
        log_scales = torch.empty(k, c).uniform_(-9.0, 4.0, generator=g)
        logits = torch.randn(k, c, generator=g) * 3
        total = _total_mass(lik, _params(k, c, means, log_scales, logits), c)
        assert torch.allclose(total, torch.ones(c), atol=1e-4), (trial, total)
    # extreme corners: means far outside [-1, 1], on the edge bins, tiny and huge scales
    for mu, ls in [(-50.0, -7.0), (50.0, -7.0), (-1.0, -7.0), (1.0, -7.0), (0.0, -20.0), (0.3, 10.0),
                   (1e3, 3.0), (-3.0, 0.0), (BINS[17].item(), -7.0)]:
        means = torch.full((k, c), mu)
        means[:, 1] = -mu  # other channels get other values: channels are independent
        total = _total_mass(lik, _params(k, c, means, torch.full((k, c), ls), torch.zeros(k, c)), c)
        assert torch.allclose(total, torch.ones(c), atol=1e-4), (mu, ls, total)


def _reference_log_mass(x, mu, s, h):
    """float64 scipy reference: log(F(x+h) - F(x-h)), edges to -inf / +inf."""
    a, b = (x + h - mu) / s, (x - h - mu) / s
    if x < -1 + h:
        return stats.logistic.logcdf(a)
    if x > 1 - h:
        return stats.logistic.logsf(b)
    if b > 0:  # right tail: difference of survival functions avoids cancellation
        la, lb = stats.logistic.logsf(a), stats.logistic.logsf(b)
        return lb + np.log1p(-np.exp(la - lb))
    la, lb = stats.logistic.logcdf(a), stats.logistic.logcdf(b)
    return la + np.log1p(-np.exp(lb - la))


def test_log_mass_matches_float64_reference_in_tails():
    """Tiny bin masses (where a naive log(cdf+ - cdf-) in float32 gives -inf) stay accurate."""
    h = 1.0 / 255
    cases = [(x, mu, ls) for x in (-1.0, BINS[3].item(), 0.0, BINS[200].item(), 1.0)
             for mu in (-0.9, 0.0, 0.5, 3.0) for ls in (-7.0, -4.0, -1.0, 2.0)]
    x = torch.tensor([c[0] for c in cases])
    mu = torch.tensor([c[1] for c in cases])
    ls = torch.tensor([c[2] for c in cases])
    got = log_logistic_bin_mass(x, mu, ls, h).double().numpy()
    ref = np.array([_reference_log_mass(float(a), float(m), math.exp(float(l)), h) for a, m, l in cases])
    assert np.all(np.isfinite(got))
    assert ref.min() < -1000  # the set includes masses far below float32's smallest number
    np.testing.assert_allclose(got, ref, rtol=2e-5, atol=2e-4)


def test_gradients_finite_at_edges_and_extremes():
    lik = DiscretizedLogisticMixture(num_mixtures=3)
    g = torch.Generator().manual_seed(1)
    params = (torch.randn(4, 3 * 3 * 3, 4, 4, generator=g) * 20).requires_grad_()
    x = BINS[torch.randint(0, 256, (4, 3, 4, 4), generator=g)]
    x[:, 0] = -1.0
    x[:, 1] = 1.0
    lik.log_prob(x, params).sum().backward()
    assert torch.isfinite(params.grad).all()


def test_quantize_snaps_to_grid():
    lik = DiscretizedLogisticMixture()
    x = BINS + torch.empty(256).uniform_(-0.4 / 127.5, 0.4 / 127.5)
    assert torch.equal(lik.quantize(x), BINS)


def test_sample_histogram_matches_bin_masses_and_is_deterministic():
    k, c = 2, 1
    lik = DiscretizedLogisticMixture(num_mixtures=k)
    params = _params(k, c, torch.tensor([[-0.5], [0.6]]), torch.tensor([[-2.5], [-3.5]]), torch.tensor([[0.3], [-0.2]]))
    n = 20000
    g = torch.Generator().manual_seed(3)
    s = lik.sample(params.expand(n, -1, -1, -1), g, c)
    again = lik.sample(params.expand(n, -1, -1, -1), torch.Generator().manual_seed(3), c)
    assert torch.equal(s, again)
    idx = ((s.flatten() + 1) * 127.5).round().long()
    emp = torch.bincount(idx, minlength=256).double() / n
    prob = lik.log_prob(BINS.view(256, 1, 1, 1), params.expand(256, -1, -1, -1)).exp().flatten().double()
    tv = 0.5 * (emp - prob).abs().sum()
    assert tv < 0.04, tv
    mean = lik.mean(params, c).item()
    assert abs(mean - (torch.softmax(torch.tensor([0.3, -0.2]), 0) @ torch.tensor([-0.5, 0.6])).item()) < 1e-6


def test_wrong_param_count_is_clear():
    with pytest.raises(InputError, match="3\\*K\\*C"):
        DiscretizedLogisticMixture(5).log_prob(torch.zeros(1, 3, 2, 2), torch.zeros(1, 10, 2, 2))


def test_gaussian_matches_torch_normal_and_samples():
    lik = GaussianLikelihood()
    g = torch.Generator().manual_seed(0)
    params = torch.randn(50, 4, generator=g)
    x = torch.randn(50, 2, generator=g)
    ref = torch.distributions.Normal(params[:, :2], params[:, 2:].exp()).log_prob(x)
    torch.testing.assert_close(lik.log_prob(x, params), ref, rtol=1e-5, atol=1e-5)
    s1 = lik.sample(params, torch.Generator().manual_seed(5), 2)
    s2 = lik.sample(params, torch.Generator().manual_seed(5), 2)
    assert torch.equal(s1, s2) and not torch.equal(s1, lik.mean(params, 2))
