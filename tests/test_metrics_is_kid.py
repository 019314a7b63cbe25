"""Inception Score and KID against torch-fidelity 0.4 on the same logits/features."""

import numpy as np
import pytest
import torch
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric

from generative_bench.errors import InputError
from generative_bench.evaluation.metrics import inception_score, kernel_inception_distance, mmd2_unbiased
from generative_bench.evaluation.metrics.kid import kid_subset_indices, mmd2_subsets, polynomial_kernel


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
    ours = inception_score(x, splits=10, order="shuffled", seed=2020)
    ref = isc_features_to_metric(torch.from_numpy(x), splits=10, shuffle=True, rng_seed=2020)
    assert ours.mean == pytest.approx(ref["inception_score_mean"], rel=1e-9)
    assert ours.std == pytest.approx(ref["inception_score_std"], rel=1e-6)
    unshuffled = inception_score(x, splits=10, order="sequential")
    assert unshuffled.mean != pytest.approx(ours.mean, rel=1e-9)


def _class_sorted_logits(n=1000, classes=10, seed=0):
    """Confident logits of ``classes`` classes, sorted by class (a folder read in path order)."""
    rng = np.random.default_rng(seed)
    y = np.sort(rng.integers(0, classes, size=n))
    x = rng.normal(size=(n, 1008)).astype(np.float32)
    x[np.arange(n), y] += 8.0
    return x


def test_inception_score_does_not_depend_on_the_order_of_the_samples():
    """A class-sorted set and the same set shuffled score bitwise alike by default; the value is
    torch-fidelity's ``isc`` (seed 2020 shuffle) of the logits in canonical order, and the
    guided-diffusion convention (sequential splits) shows why: single-class splits."""
    from generative_bench.evaluation.metrics.order import canonical_order

    x = _class_sorted_logits()
    shuffled = x[np.random.default_rng(1).permutation(len(x))]
    sorted_is, shuffled_is = inception_score(x), inception_score(shuffled)
    assert sorted_is == shuffled_is
    ref = isc_features_to_metric(torch.from_numpy(x[canonical_order(x)]), splits=10, shuffle=True, rng_seed=2020)
    assert sorted_is.mean == pytest.approx(ref["inception_score_mean"], rel=1e-9)
    assert sorted_is.std == pytest.approx(ref["inception_score_std"], rel=1e-6)
    sequential = inception_score(x, order="sequential").mean
    assert sequential < 0.5 * sorted_is.mean  # the order-dependent convention on a sorted set
    tf_shuffled = inception_score(x, order="shuffled").mean  # torch-fidelity: no pathology, but order-dependent
    assert tf_shuffled == pytest.approx(sorted_is.mean, rel=0.05)
    with pytest.raises(InputError, match="split order must be one of"):
        inception_score(x, order="random")


def test_kid_does_not_depend_on_the_order_of_the_samples():
    a, b = _features(seed=4, n1=300, n2=260)
    pa, pb = np.random.default_rng(2).permutation(300), np.random.default_rng(3).permutation(260)
    one = kernel_inception_distance(a, b, subsets=6, subset_size=100, seed=7)
    assert kernel_inception_distance(a[pa], b[pb], subsets=6, subset_size=100, seed=7) == one
    given = kernel_inception_distance(a[pa], b[pb], subsets=6, subset_size=100, seed=7, order="given")
    assert given.mean != one.mean


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
    ours = kernel_inception_distance(a, b, subsets=8, subset_size=100, seed=2020, order="given")
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


def _torch_fidelity_draw(n1, n2, subsets, size, seed):
    """torch-fidelity's subset draw (metric_kid.kid_features_to_metric), reimplemented for the test."""
    rng = np.random.RandomState(seed)
    out = []
    for _ in range(subsets):
        out.append((rng.choice(n1, size, replace=False), rng.choice(n2, size, replace=False)))
    return out


def _float64_mmd(a, b, i1, i2):
    x, y = a[i1].astype(np.float64), b[i2].astype(np.float64)
    return mmd2_unbiased(polynomial_kernel(x, x), polynomial_kernel(x, y), polynomial_kernel(y, y))


@pytest.mark.parametrize("strategy", ["auto", "once", "per_subset"])
def test_kid_per_subset_values_equal_torch_fidelity_on_the_same_index_sets(strategy):
    from torch_fidelity.metric_kid import kernel_mmd

    a, b = _features(seed=4, n1=400, n2=350)
    draws = _torch_fidelity_draw(400, 350, 12, 150, seed=2020)
    idx1, idx2 = kid_subset_indices(400, 350, 12, 150, seed=2020)
    assert all(np.array_equal(i1, j1) and np.array_equal(i2, j2) for (i1, i2), j1, j2 in zip(draws, idx1, idx2))
    ours = mmd2_subsets(a, b, idx1, idx2, strategy=strategy, block=64)
    theirs = np.array([kernel_mmd(a[i1], b[i2], kid_kernel="poly", kid_kernel_poly_degree=3,
                                  kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1) for i1, i2 in draws])
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)
    exact = np.array([_float64_mmd(a, b, i1, i2) for i1, i2 in draws])
    np.testing.assert_allclose(ours, exact, rtol=0, atol=1e-7)  # float32 products, float64 sums
    result = kernel_inception_distance(a, b, subsets=12, subset_size=150, seed=2020, strategy=strategy, order="given")
    ref = kid_features_to_metric(torch.from_numpy(a), torch.from_numpy(b), kid_subsets=12, kid_subset_size=150,
                                 rng_seed=2020, verbose=False)
    assert result.mean == pytest.approx(ref["kernel_inception_distance_mean"], abs=1e-6)
    assert result.std == pytest.approx(ref["kernel_inception_distance_std"], abs=1e-6)


def test_kid_strategies_agree_and_float64_features_stay_float64():
    rng = np.random.default_rng(9)
    a = np.abs(rng.normal(size=(230, 48)))  # float64, non-negative like Inception pool features
    b = np.abs(rng.normal(size=(260, 48))) * 1.05 + 0.01
    idx1, idx2 = kid_subset_indices(230, 260, 7, 90, seed=1)
    exact = np.array([_float64_mmd(a, b, i1, i2) for i1, i2 in zip(idx1, idx2)])
    for strategy in ("once", "per_subset"):
        for block in (17, 4096):
            np.testing.assert_allclose(mmd2_subsets(a, b, idx1, idx2, strategy=strategy, block=block), exact,
                                       rtol=1e-11, atol=1e-13)
    f32 = mmd2_subsets(a.astype(np.float32), b.astype(np.float32), idx1, idx2, strategy="once")
    np.testing.assert_allclose(f32, exact, rtol=0, atol=1e-6)


def test_kid_repeated_rows_count_as_distinct_positions():
    a, b = _features(seed=2, n1=50, n2=60)
    idx1 = np.array([[0, 1, 1, 2, 3], [4, 4, 4, 5, 6]])
    idx2 = np.array([[7, 8, 9, 9, 10], [1, 2, 3, 4, 5]])
    exact = [_float64_mmd(a, b, i1, i2) for i1, i2 in zip(idx1, idx2)]
    for strategy in ("once", "per_subset"):
        np.testing.assert_allclose(mmd2_subsets(a, b, idx1, idx2, strategy=strategy), exact, rtol=1e-5, atol=1e-7)


def test_kid_auto_strategy_evaluates_the_kernels_once_when_that_is_cheaper():
    from generative_bench.evaluation.metrics.kid import _strategy

    assert _strategy("auto", 2500, 2500, 100, 1000, 2048) == "once"  # the harness default: 16x fewer entries
    assert _strategy("auto", 1000, 1000, 100, 1000, 2048) == "once"
    assert _strategy("auto", 50_000, 50_000, 100, 1000, 2048) == "per_subset"
    with pytest.raises(InputError, match="strategy must be one of"):
        _strategy("fast", 10, 10, 1, 5, 4)


def test_kid_index_sets_are_checked():
    a, b = _features(n1=20, n2=20)
    with pytest.raises(InputError, match="reach outside features 2"):
        mmd2_subsets(a, b, np.zeros((2, 3), int), np.full((2, 3), 20))
    with pytest.raises(InputError, match="shape"):
        mmd2_subsets(a, b, np.zeros((2, 3), int), np.zeros((2, 4), int))


@pytest.mark.parametrize("degree", [3, 2.5])
def test_kid_kernel_chunks_give_the_same_bits_as_one_pass(monkeypatch, degree):
    """The kernel's element-wise passes run on row chunks: several chunks with a remainder give
    exactly the values of one pass over the whole block."""
    from generative_bench.evaluation.metrics import _chunks
    from generative_bench.evaluation.metrics.kid import _Kernel

    rng = np.random.default_rng(3)
    a = np.abs(rng.standard_normal((90, 48))).astype(np.float32)
    b = np.abs(rng.standard_normal((70, 48))).astype(np.float32)
    kern = _Kernel(a.mean(0, dtype=np.float64), b.mean(0, dtype=np.float64), 1 / 48, 1.0, degree, np.float32)
    g = a @ b.T
    whole = g * np.float32(1 / 48) + np.float32(1)
    whole = (whole * whole * whole if degree == 3 else np.power(whole, degree)) - np.float32(kern.center)
    monkeypatch.setattr(_chunks, "CHUNK_ELEMENTS", 70 * 8 + 5)  # 8 rows a chunk: 11 chunks and a remainder of 2
    np.testing.assert_array_equal(kern(g.copy()), whole)
    idx1, idx2 = kid_subset_indices(90, 70, 4, 30, seed=1)
    chunked = mmd2_subsets(a, b, idx1, idx2, degree=degree, strategy="once", block=32)
    monkeypatch.setattr(_chunks, "CHUNK_ELEMENTS", 1 << 30)
    np.testing.assert_array_equal(chunked, mmd2_subsets(a, b, idx1, idx2, degree=degree, strategy="once", block=32))


def test_the_harness_orders_samples_by_their_images_not_by_feature_bits():
    """In the harness the canonical order comes from the images: logits that differ in their last
    bits (another batch size or rank count at extraction) keep the same splits, and any ordering of
    the same images and features gives bitwise the same IS and KID."""
    from generative_bench.evaluation.metrics.order import sample_order
    from generative_bench.evaluation.schema import MetricInputs
    from generative_bench.evaluation.suite import _is, _kid

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(300, 3, 4, 4), dtype=np.uint8)
    logits = _class_sorted_logits(n=300)
    pool, ref = _features(seed=6, n1=300, n2=260)
    cfg = {"is_splits": 10, "kid_subsets": 5, "kid_subset_size": 100}

    def score(perm, noise=0.0):
        lg = logits[perm] * np.float32(1 + noise)
        inp = MetricInputs(cfg=cfg, seed=3, features={"logits": lg, "pool": pool[perm]}, reference={"pool": ref},
                           order=sample_order(images[perm]))
        return _is(inp)[0], _kid(inp)[0]

    base = score(np.arange(300))
    assert score(rng.permutation(300)) == base  # bitwise, any order
    noisy_is = score(np.arange(300), noise=1e-7)[0]["is_mean"]
    assert noisy_is == pytest.approx(base[0]["is_mean"], rel=1e-6)  # same splits, last bits apart
