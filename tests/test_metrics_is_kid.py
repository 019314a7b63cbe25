"""Inception Score and KID against torch-fidelity 0.4 on the same logits/features."""

import numpy as np
import pytest
import torch
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric

from generative_bench.errors import InputError
from generative_bench.evaluation.metrics import inception_score, kernel_inception_distance, mmd2_unbiased


def _logits(n=500, c=1008, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, c)) * 3 + rng.normal(size=c)).astype(np.float32)


def _features(seed=0, n1=300, n2=250, d=64):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n1, d)).astype(np.float32)
    b = (rng.normal(size=(n2, d)) * 1.2 + 0.1).astype(np.float32)
    return a, b


def test_inception_score_one_split_matches_torch_fidelity():
    x = _logits()
    ours = inception_score(x, splits=1)
    ref = isc_features_to_metric(torch.from_numpy(x), splits=1, shuffle=False)
    assert ours.mean == pytest.approx(ref["inception_score_mean"], rel=1e-3)
    assert ours.std == 0.0


def test_inception_score_shuffled_splits_reproduce_torch_fidelity_defaults():
    x = _logits(n=503)  # uneven split sizes
    ours = inception_score(x, splits=10, shuffle=True, seed=2020)
    ref = isc_features_to_metric(torch.from_numpy(x), splits=10, shuffle=True, rng_seed=2020)
    assert ours.mean == pytest.approx(ref["inception_score_mean"], rel=1e-9)
    assert ours.std == pytest.approx(ref["inception_score_std"], rel=1e-6)
    unshuffled = inception_score(x, splits=10)
    assert unshuffled.mean != pytest.approx(ours.mean, rel=1e-9)


def test_inception_score_closed_forms():
    # one-hot-like confident predictions spread evenly over C classes -> IS close to C
    c = 8
    x = np.full((16 * c, c), -50.0)
    x[np.arange(16 * c), np.arange(16 * c) % c] = 50.0
    assert inception_score(x, splits=1).mean == pytest.approx(c, rel=1e-9)
    # identical predictions for every sample -> KL = 0 -> IS = 1
    assert inception_score(np.tile(np.arange(5.0), (20, 1)), splits=2).mean == pytest.approx(1.0, abs=1e-12)


def test_inception_score_needs_enough_samples():
    with pytest.raises(InputError, match="at least 10 samples"):
        inception_score(_logits(n=5), splits=10)
    with pytest.raises(InputError, match="NaN or Inf"):
        x = _logits(n=20)
        x[3, 7] = np.inf
        inception_score(x, splits=2)


def test_kid_single_full_subset_matches_torch_fidelity():
    a, b = _features(n1=250, n2=250)
    ours = kernel_inception_distance(a, b, subsets=1, subset_size=250)
    ref = kid_features_to_metric(torch.from_numpy(a), torch.from_numpy(b), kid_subsets=1, kid_subset_size=250,
                                 verbose=False)
    assert ours.mean == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-3)
    assert ours.subsets == 1 and ours.subset_size == 250


def test_kid_seeded_subsets_match_torch_fidelity():
    a, b = _features(seed=3)
    ours = kernel_inception_distance(a, b, subsets=8, subset_size=100, seed=2020)
    ref = kid_features_to_metric(torch.from_numpy(a), torch.from_numpy(b), kid_subsets=8, kid_subset_size=100,
                                 rng_seed=2020, verbose=False)
    assert ours.mean == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-3)
    assert ours.std == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-3)


def test_mmd2_unbiased_against_explicit_sums():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    k = lambda u, v: (u @ v / 3 + 1) ** 3  # noqa: E731
    m = 6
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m**2
    kxx, kxy, kyy = ((u @ v.T / 3 + 1) ** 3 for u, v in ((x, x), (x, y), (y, y)))
    assert mmd2_unbiased(kxx, kxy, kyy) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_kid_same_distribution_is_near_zero():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
    far = kernel_inception_distance(a, b + 1.0, subsets=5, subset_size=200).mean
    near = kernel_inception_distance(a, b, subsets=5, subset_size=200).mean
    assert abs(near) < 0.05 * far


def test_kid_too_few_samples_is_explicit():
    a, b = _features(n1=300, n2=120)
    with pytest.raises(InputError, match=r"at least subset_size=1000 samples.*300.*120"):
        kernel_inception_distance(a, b)
    clipped = kernel_inception_distance(a, b, subsets=2, clip_subset_size=True)
    assert clipped.subset_size == 120
    with pytest.raises(InputError, match=r"\(300, 64\).*\(120, 32\)"):
        kernel_inception_distance(a, b[:, :32], subset_size=100)
