"""FID: closed forms, the sqrtm/eps rules, and agreement with torchmetrics and torch-fidelity."""

import numpy as np
import pytest
import torch

from generative_bench.errors import InputError
from generative_bench.evaluation.metrics import (
    MetricWarning,
    fid_from_features,
    frechet_distance,
    gaussian_stats,
    sfid_from_features,
)
from generative_bench.evaluation.metrics import fid as fid_module


def _pair(n1=400, n2=300, d=64, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n1, d)).astype(np.float32)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    b = (rng.normal(size=(n2, d)) @ (np.eye(d) + 0.3 * mix) + 0.2).astype(np.float32)
    return a, b


def test_gaussian_stats_match_numpy_cov():
    a, _ = _pair(n1=1000)
    mu, sigma = gaussian_stats(a, block_rows=128)  # several blocks
    assert mu.dtype == sigma.dtype == np.float64
    np.testing.assert_allclose(mu, a.astype(np.float64).mean(0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(a.astype(np.float64), rowvar=False), rtol=1e-10, atol=1e-12)


def test_diagonal_gaussian_closed_form():
    rng = np.random.default_rng(1)
    d = 64
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = rng.uniform(0.1, 3, size=d), rng.uniform(0.1, 3, size=d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    got = frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
    assert got == pytest.approx(expected, rel=1e-6)


def test_one_dimensional_features_closed_form():
    rng = np.random.default_rng(2)
    a = rng.normal(1.0, 2.0, size=(500, 1))
    b = rng.normal(-0.5, 0.7, size=(300, 1))
    v1, v2 = a.var(ddof=1), b.var(ddof=1)
    expected = (a.mean() - b.mean()) ** 2 + v1 + v2 - 2 * np.sqrt(v1 * v2)
    assert fid_from_features(a, b) == pytest.approx(expected, rel=1e-6)


def test_equal_covariances_leave_only_the_mean_term():
    a, _ = _pair()
    mu, sigma = gaussian_stats(a)
    shift = np.linspace(-1, 1, len(mu))
    assert frechet_distance(mu, sigma, mu + shift, sigma) == pytest.approx(shift @ shift, rel=1e-6)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-8


def test_matches_torch_fidelity_statistics_to_metric():
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    a, b = _pair()
    s1, s2 = gaussian_stats(a), gaussian_stats(b)
    ref = fid_statistics_to_metric({"mu": s1.mu, "sigma": s1.sigma}, {"mu": s2.mu, "sigma": s2.sigma}, False)
    assert fid_from_features(a, b) == pytest.approx(ref["frechet_inception_distance"], rel=1e-3)


def test_matches_torchmetrics_with_precomputed_features():
    from torchmetrics.image.fid import FrechetInceptionDistance

    class Passthrough(torch.nn.Module):
        num_features = 64

        def forward(self, x):
            return x

    a, b = _pair()
    metric = FrechetInceptionDistance(feature=Passthrough())
    metric.update(torch.from_numpy(a.astype(np.float64)), real=True)
    metric.update(torch.from_numpy(b.astype(np.float64)), real=False)
    assert fid_from_features(a, b) == pytest.approx(float(metric.compute()), rel=1e-3)


def test_sfid_is_the_same_distance():
    a, b = _pair(d=32)
    assert sfid_from_features(a, b) == fid_from_features(a, b)


def test_non_finite_sqrtm_retries_with_eps(monkeypatch):
    calls = []
    real_sqrtm = fid_module.linalg.sqrtm

    def flaky_sqrtm(m):
        calls.append(m.copy())
        return np.full_like(m, np.nan) if len(calls) == 1 else real_sqrtm(m)

    monkeypatch.setattr(fid_module.linalg, "sqrtm", flaky_sqrtm)
    s1, s2 = np.diag([1.0, 2.0]), np.diag([3.0, 4.0])
    with pytest.warns(MetricWarning, match="adding 1e-06"):
        got = frechet_distance(np.zeros(2), s1, np.zeros(2), s2)
    np.testing.assert_allclose(calls[1], (s1 + 1e-6 * np.eye(2)) @ (s2 + 1e-6 * np.eye(2)))
    expected = sum(x + y - 2 * np.sqrt((x + 1e-6) * (y + 1e-6)) for x, y in ((1, 3), (2, 4)))
    assert got == pytest.approx(expected, rel=1e-9)


def test_large_imaginary_component_is_an_error():
    # sqrtm(-I) = i I: the diagonal is purely imaginary, far above the 1e-3 tolerance
    with pytest.raises(InputError, match="imaginary component 1 on its diagonal"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), -np.eye(3))


def test_fewer_samples_than_dims_warns():
    a, b = _pair(n1=20, n2=400, d=64)
    with pytest.warns(MetricWarning, match="20 samples < 64 feature dimensions"):
        fid_from_features(a, b)


@pytest.mark.parametrize(
    "a, b, match",
    [
        (np.zeros((1, 4)), np.ones((5, 4)), "at least 2 samples, got 1"),
        (np.ones((5, 4)), np.ones((5, 3)), r"\(5, 4\).*\(5, 3\)"),
        (np.array([[0.0, np.nan], [1.0, 2.0]]), np.ones((3, 2)), "NaN or Inf"),
        (np.ones(5), np.ones((5, 1)), "2-D array"),
    ],
)
def test_bad_inputs(a, b, match):
    with pytest.raises(InputError, match=match):
        fid_from_features(a, b)


def test_mismatched_statistics_name_both_shapes():
    with pytest.raises(InputError, match=r"\(4,\).*\(3,\)"):
        frechet_distance(np.zeros(4), np.eye(4), np.zeros(3), np.eye(3))
    with pytest.raises(InputError, match="sigma must have shape"):
        frechet_distance(np.zeros(4), np.eye(3), np.zeros(4), np.eye(4))


def test_eigh_trace_term_agrees_with_sqrtm_rule():
    from generative_bench.evaluation.metrics.fid import frechet_distance, gaussian_stats

    rng = np.random.default_rng(7)
    a = rng.normal(size=(600, 64)) @ rng.normal(size=(64, 64)) * 0.3
    b = rng.normal(size=(600, 64)) @ rng.normal(size=(64, 64)) * 0.3 + 0.1
    sa, sb = gaussian_stats(a), gaussian_stats(b)
    ref = frechet_distance(*sa, *sb, method="sqrtm")
    assert frechet_distance(*sa, *sb, method="eigh") == pytest.approx(ref, rel=1e-8)
