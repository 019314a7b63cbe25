"""FID_inf / IS_inf (Chong & Forsyth 2020): subset grid, the 1/N fit, and bias reduction."""

import numpy as np
import pytest

from generative_bench.errors import InputError
from generative_bench.evaluation.metrics import fid_infinity, fit_inverse_n, inception_score, is_infinity, subset_sizes


def test_subset_grid_matches_the_paper_for_50k():
    sizes = subset_sizes(50_000)
    np.testing.assert_array_equal(sizes, np.linspace(5000, 50_000, 15).astype(np.int64))
    small = subset_sizes(2000, num_points=5)
    assert small.tolist() == [200, 650, 1100, 1550, 2000]
    with pytest.raises(InputError, match="min_size < number of samples"):
        subset_sizes(100, min_size=100)


def test_fit_recovers_an_exact_line_in_inverse_n():
    sizes = np.array([1000, 2000, 4000, 8000])
    intercept, slope = fit_inverse_n(sizes, 3.5 + 120.0 / sizes)
    assert intercept == pytest.approx(3.5, rel=1e-10)
    assert slope == pytest.approx(120.0, rel=1e-8)


def test_fid_infinity_removes_most_of_the_finite_n_bias():
    d, shift = 16, 0.1
    true_fid = d * shift**2  # samples ~ N(shift, I) vs the exact reference N(0, I)
    fid_inf, fid_n = [], []
    for seed in range(5):
        x = np.random.default_rng(seed).normal(size=(4000, d)) + shift
        e = fid_infinity(x, np.zeros(d), np.eye(d), seed=seed)
        assert e.sizes[0] == 400 and e.sizes[-1] == 4000 and len(e.values) == 15
        assert e.slope > 0  # FID_N is biased upward, linearly in 1/N
        fid_inf.append(e.value)
        fid_n.append(e.values[-1])
    assert abs(np.mean(fid_inf) - true_fid) < 0.5 * abs(np.mean(fid_n) - true_fid)


def test_is_infinity_uses_single_split_scores():
    logits = np.random.default_rng(0).normal(size=(1000, 50)) * 2
    e = is_infinity(logits, num_points=4)
    assert e.sizes == (100, 400, 700, 1000)
    assert e.values[-1] == pytest.approx(inception_score(logits, splits=1).mean, rel=1e-12)
    assert e.value == pytest.approx(fit_inverse_n(e.sizes, e.values)[0])


def test_fid_infinity_dimension_mismatch_names_both_shapes():
    with pytest.raises(InputError, match=r"\(100, 8\).*\(4,\)"):
        fid_infinity(np.zeros((100, 8)), np.zeros(4), np.eye(4))
