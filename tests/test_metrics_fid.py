"""FID: closed forms, the eigh (default) and sqrtm/eps rules and their agreement, the trace cache, and agreement
with torchmetrics and torch-fidelity."""

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
        got = frechet_distance(np.zeros(2), s1, np.zeros(2), s2, method="sqrtm")
    np.testing.assert_allclose(calls[1], (s1 + 1e-6 * np.eye(2)) @ (s2 + 1e-6 * np.eye(2)))
    expected = sum(x + y - 2 * np.sqrt((x + 1e-6) * (y + 1e-6)) for x, y in ((1, 3), (2, 4)))
    assert got == pytest.approx(expected, rel=1e-9)


def test_large_imaginary_component_is_an_error():
    # sqrtm(-I) = i I: the diagonal is purely imaginary, far above the 1e-3 tolerance
    with pytest.raises(InputError, match="imaginary component 1 on its diagonal"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), -np.eye(3), method="sqrtm")


@pytest.mark.parametrize("bad", ["second", "first"])
def test_eigh_rejects_a_covariance_that_is_not_psd(bad):
    s1, s2 = (np.eye(3), -np.eye(3)) if bad == "second" else (-np.eye(3), np.eye(3))
    with pytest.raises(InputError, match=f"covariance {2 if bad == 'second' else 1} is not positive semi-definite"):
        frechet_distance(np.zeros(3), s1, np.zeros(3), s2, method="eigh")


def test_unknown_method_is_an_input_error():
    with pytest.raises(InputError, match="must be one of"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2), method="schur")


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


def _stats_pair(n1, n2, d, seed):
    """Statistics of two different, correlated Gaussian feature sets (rank min(n - 1, d) each)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n1, d)) @ (np.eye(d) + 0.2 * rng.normal(size=(d, d)) / np.sqrt(d))
    b = rng.normal(size=(n2, d)) @ (np.eye(d) + 0.2 * rng.normal(size=(d, d)) / np.sqrt(d)) * 1.1 + 0.05
    return gaussian_stats(a.astype(np.float32)), gaussian_stats(b.astype(np.float32))


@pytest.mark.filterwarnings("ignore::generative_bench.evaluation.metrics.MetricWarning")
@pytest.mark.parametrize("n1, n2, d", [(2000, 1500, 256),   # full rank
                                       (120, 2000, 256),    # samples rank-deficient (n < d)
                                       (2000, 100, 256),    # reference rank-deficient
                                       (150, 90, 256)])     # both rank-deficient
def test_eigh_equals_the_sqrtm_rule_full_rank_and_rank_deficient(n1, n2, d):
    fid_module.clear_cache()
    s1, s2 = _stats_pair(n1, n2, d, seed=n1 + n2)
    assert np.linalg.matrix_rank(s1.sigma) == min(n1 - 1, d) and np.linalg.matrix_rank(s2.sigma) == min(n2 - 1, d)
    ref = frechet_distance(*s1, *s2, method="sqrtm")
    got = frechet_distance(*s1, *s2, method="eigh")
    assert got == pytest.approx(ref, rel=1e-6)
    assert got == pytest.approx(frechet_distance(*s2, *s1, method="eigh"), rel=1e-7)  # symmetric in the two sets


def test_default_method_is_eigh():
    s1, s2 = _stats_pair(600, 500, 32, seed=3)
    assert fid_module.DEFAULT_METHOD == "eigh"
    assert frechet_distance(*s1, *s2) == frechet_distance(*s1, *s2, method="eigh")


@pytest.mark.filterwarnings("ignore::generative_bench.evaluation.metrics.MetricWarning")
def test_trace_term_is_computed_once_per_pair_and_the_reference_factor_once_per_reference(monkeypatch):
    fid_module.clear_cache()
    eigh_calls, eigvalsh_calls, sqrtm_calls = [], [], []
    real_eigh, real_eigvalsh, real_sqrtm = np.linalg.eigh, np.linalg.eigvalsh, fid_module.linalg.sqrtm
    monkeypatch.setattr(fid_module.np.linalg, "eigh", lambda m: eigh_calls.append(1) or real_eigh(m))
    monkeypatch.setattr(fid_module.np.linalg, "eigvalsh", lambda m: eigvalsh_calls.append(1) or real_eigvalsh(m))
    monkeypatch.setattr(fid_module.linalg, "sqrtm", lambda m: sqrtm_calls.append(1) or real_sqrtm(m))
    d = fid_module.CACHE_MIN_DIM
    (mu1, s1), (mu2, s2) = _stats_pair(800, 900, d, seed=5)
    (mu3, s3), _ = _stats_pair(700, 10, d, seed=6)
    first = frechet_distance(mu1, s1, mu2, s2)
    again = frechet_distance(mu1, s1.copy(), mu2, s2.copy())  # same content, other arrays: a cache hit
    assert again == first and len(eigh_calls) == 1 and len(eigvalsh_calls) == 1
    frechet_distance(mu3, s3, mu2, s2)  # another sample set against the same reference: no new factor
    assert len(eigh_calls) == 1 and len(eigvalsh_calls) == 2
    for _ in range(2):
        frechet_distance(mu1, s1, mu2, s2, method="sqrtm")
    assert len(sqrtm_calls) == 1
    s1_changed = s1.copy()
    s1_changed[0, 0] += 1e-3
    frechet_distance(mu1, s1_changed, mu2, s2)  # changed content: recomputed
    assert len(eigvalsh_calls) == 3
    info = fid_module.cache_info()
    assert info["factors"] == 1 and info["traces"] == 4
    fid_module.clear_cache()
    assert fid_module.cache_info() == {"factors": 0, "factor_bytes": 0, "traces": 0}


def test_cached_sqrtm_repeats_its_warning(monkeypatch):
    fid_module.clear_cache()
    d = fid_module.CACHE_MIN_DIM
    real_sqrtm = fid_module.linalg.sqrtm
    calls = []

    def flaky_sqrtm(m):
        calls.append(1)
        return np.full_like(m, np.nan) if len(calls) == 1 else real_sqrtm(m)

    monkeypatch.setattr(fid_module.linalg, "sqrtm", flaky_sqrtm)
    (mu1, s1), (mu2, s2) = _stats_pair(500, 400, d, seed=8)
    with pytest.warns(MetricWarning, match="adding 1e-06"):
        first = frechet_distance(mu1, s1, mu2, s2, method="sqrtm")
    with pytest.warns(MetricWarning, match="adding 1e-06"):
        assert frechet_distance(mu1, s1, mu2, s2, method="sqrtm") == first
    assert len(calls) == 2  # the failed call and the eps retry, nothing for the cached second evaluation
    fid_module.clear_cache()


@pytest.mark.filterwarnings("ignore::generative_bench.evaluation.metrics.MetricWarning")
def test_fid_settings_record_the_method_and_fid_inf_shares_the_trace(monkeypatch):
    from generative_bench.evaluation import suite  # noqa: F401  (registers the metrics)
    from generative_bench.evaluation.schema import MetricInputs, metric

    fid_module.clear_cache()
    rng = np.random.default_rng(0)
    d = fid_module.CACHE_MIN_DIM
    pool = rng.normal(size=(1000, d)).astype(np.float32)
    ref_pool = (rng.normal(size=(1200, d)) * 1.1).astype(np.float32)
    mu, sigma = gaussian_stats(ref_pool)
    inputs = MetricInputs(cfg={"extrapolate": True}, features={"pool": pool},
                          reference={"mu": mu, "sigma": sigma, "pool": ref_pool})
    out, settings = metric("fid", "features").compute(inputs)
    assert settings["fid_method"] == "eigh" and "eigh" in settings["trace_sqrt"]
    # 1 FID + 15 FID_N sizes, of which the full-size one is FID's own statistics: 15 trace terms
    assert fid_module.cache_info()["traces"] == 15 and fid_module.cache_info()["factors"] == 1
    assert np.isfinite(out["fid_inf"])
    inputs.cfg = {"fid_method": "sqrtm"}
    out_sqrtm, settings = metric("fid", "features").compute(inputs)
    assert settings["fid_method"] == "sqrtm" and "sqrtm" in settings["trace_sqrt"]
    assert out_sqrtm["fid"] == pytest.approx(out["fid"], rel=1e-6)
    fid_module.clear_cache()
