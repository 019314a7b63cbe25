"""Precision/recall and density/coverage against the prdc package and torch-fidelity, both tie rules."""

import contextlib
import io

import numpy as np
import pytest
import torch
from prdc import compute_prdc
from torch_fidelity.metric_prc import calculate_precision_recall_full

from generative_bench.errors import InputError
from generative_bench.evaluation.metrics import density_coverage, knn_sq_radii, prdc, precision_recall


def _prdc_package(real, fake, k):
    with contextlib.redirect_stdout(io.StringIO()):  # prdc prints the set sizes
        return {name: float(v) for name, v in compute_prdc(real, fake, nearest_k=k).items()}


def _continuous(seed=0, n_ref=300, n_samp=250, d=64):
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=(n_ref, d)).astype(np.float32)
    samp = (rng.normal(size=(n_samp, d)) * 1.1 + 0.15).astype(np.float32)
    return ref, samp


def _with_ties(k=3, seed=0):
    """Integer-valued features (exact float arithmetic) where every reference point appears k+1
    times, so every k-NN radius is exactly 0; half of the samples are copies of reference points."""
    rng = np.random.default_rng(seed)
    base = rng.integers(-4, 5, size=(30, 8)).astype(np.float32)
    ref = np.repeat(base, k + 1, axis=0)
    copies = base[rng.integers(0, len(base), size=40)]
    others = rng.integers(-4, 5, size=(40, 8)).astype(np.float32) + 0.5  # never equal to a reference point
    samp = np.concatenate([copies, np.repeat(others[:10], k + 1, axis=0)])
    return ref, samp


def test_knn_radii_blocked_equal_brute_force():
    ref, _ = _continuous(n_ref=101, d=16)
    d2 = ((ref[:, None, :].astype(np.float64) - ref[None].astype(np.float64)) ** 2).sum(-1)
    brute = np.sort(d2, axis=1)
    radii = knn_sq_radii(ref.astype(np.float64), (3, 5), batch=17)
    np.testing.assert_allclose(radii[3], brute[:, 3], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(radii[5], brute[:, 5], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("k", [3, 5])
def test_continuous_features_match_prdc_package_exactly(k):
    ref, samp = _continuous(seed=k)
    expected = _prdc_package(ref, samp, k)
    strict = prdc(ref, samp, pr_k=k, dc_k=k, pr_comparison="<")
    default = prdc(ref, samp, pr_k=k, dc_k=k)  # "<=" for P/R: no ties here, same numbers
    assert strict == expected
    assert default == expected
    assert 0 < expected["precision"] < 1 and 0 < expected["recall"] < 1 and 0 < expected["coverage"] < 1


def test_continuous_precision_recall_match_torch_fidelity():
    ref, samp = _continuous(seed=7)
    tf_precision, tf_recall = calculate_precision_recall_full(torch.from_numpy(samp), torch.from_numpy(ref), 3)
    ours = precision_recall(ref, samp, k=3)
    # torch-fidelity returns float32 fractions; 1e-6 is far below one sample (1/250)
    assert ours["precision"] == pytest.approx(tf_precision, abs=1e-6)
    assert ours["recall"] == pytest.approx(tf_recall, abs=1e-6)


def test_blocking_and_float64_do_not_change_results():
    ref, samp = _continuous(seed=1, n_ref=157, n_samp=93)
    one = prdc(ref, samp)
    assert prdc(ref, samp, row_batch_size=13, col_batch_size=29) == one
    assert prdc(ref, samp, dtype="float64", row_batch_size=50, col_batch_size=7) == one


def test_ties_each_convention_matches_its_reference():
    ref, samp = _with_ties(k=3)
    package = _prdc_package(ref, samp, 3)  # prdc: "<" everywhere
    strict = prdc(ref, samp, pr_k=3, dc_k=3, pr_comparison="<", dc_comparison="<")
    assert strict == package
    # reference radii are all 0, so with "<" no sample is inside a reference ball
    assert package["precision"] == package["density"] == package["coverage"] == 0.0

    # guided-diffusion / torch-fidelity: "<=" - copies of reference points lie on the ball (radius 0)
    inclusive = precision_recall(ref, samp, k=3)
    tf_precision, tf_recall = calculate_precision_recall_full(torch.from_numpy(samp), torch.from_numpy(ref), 3)
    assert inclusive == {"precision": pytest.approx(tf_precision, abs=1e-6),
                         "recall": pytest.approx(tf_recall, abs=1e-6)}
    assert inclusive["precision"] == pytest.approx(40 / len(samp))  # exactly the copies
    assert inclusive["recall"] > package["recall"]

    # density/coverage default "<" (prdc); "<=" counts the ties
    assert density_coverage(ref, samp, k=3) == {"density": 0.0, "coverage": 0.0}
    loose = density_coverage(ref, samp, k=3, comparison="<=")
    copied = {tuple(r) for r in samp[:40]}
    assert loose["coverage"] == pytest.approx(np.mean([tuple(r) in copied for r in ref]))
    assert loose["density"] == pytest.approx(4 * 40 / 3 / len(samp))  # each copy lies in 4 balls of radius 0


def test_identical_sets_are_perfect():
    ref, _ = _continuous(n_ref=120, d=16)
    out = prdc(ref, ref.copy())
    assert out["precision"] == out["recall"] == out["coverage"] == 1.0


@pytest.mark.parametrize(
    "ref, samp, kwargs, match",
    [
        (np.zeros((3, 4)), np.zeros((10, 4)), {"pr_k": 3, "dc_k": None}, "at least 4 samples, got 3"),
        (np.zeros((10, 4)), np.zeros((3, 4)), {"pr_k": 3, "dc_k": None}, "at least 4 samples, got 3"),
        (np.zeros((10, 4)), np.zeros((10, 5)), {}, r"\(10, 4\).*\(10, 5\)"),
        (np.full((10, 4), np.nan), np.zeros((10, 4)), {}, "NaN or Inf"),
        (np.zeros((10, 4)), np.zeros((10, 4)), {"pr_comparison": "=="}, "pr_comparison must be one of"),
        (np.zeros((10, 4)), np.zeros((10, 4)), {"dtype": "float16"}, "float32 or float64"),
    ],
)
def test_bad_inputs(ref, samp, kwargs, match):
    with pytest.raises(InputError, match=match):
        prdc(ref, samp, **kwargs)


def _dense_prdc(ref, samp, pr_k, dc_k, pr_cmp, dc_cmp):
    """Straightforward float64 full-matrix P/R/D/C (both triangles, no blocks, no cache)."""
    ops = {"<=": np.less_equal, "<": np.less}
    r, s = ref.astype(np.float64), samp.astype(np.float64)
    sq = lambda u, v: ((u[:, None, :] - v[None]) ** 2).sum(-1)  # noqa: E731
    d_rr, d_ss, d_rs = sq(r, r), sq(s, s), sq(r, s)
    rad_r, rad_s = np.sort(d_rr, 1), np.sort(d_ss, 1)
    pr, dc = ops[pr_cmp], ops[dc_cmp]
    return {"precision": float(pr(d_rs, rad_r[:, pr_k, None]).any(0).mean()),
            "recall": float(pr(d_rs, rad_s[None, :, pr_k]).any(1).mean()),
            "density": float(dc(d_rs, rad_r[:, dc_k, None]).sum(0).mean() / dc_k),
            "coverage": float(dc(d_rs.min(1), rad_r[:, dc_k]).mean())}


@pytest.mark.parametrize("n, batch", [(266, 53), (266, 7), (101, 100), (60, 1), (60, 2), (300, 5000)])
def test_knn_radii_from_one_triangle_equal_brute_force_for_any_block_size(n, batch):
    # 266 = 5 x 53 + 1: a last block of one row (a transposed (53, 1) block is itself contiguous)
    x = np.random.default_rng(n).normal(size=(n, 3)).astype(np.float32)
    brute = np.sort(((x[:, None].astype(np.float64) - x[None]) ** 2).sum(-1), axis=1)
    radii = knn_sq_radii(x, (1, 3, 5), batch=batch)
    for k in (1, 3, 5):
        np.testing.assert_allclose(radii[k], brute[:, k], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_results_equal_a_dense_float64_computation(seed):
    ref, samp = _continuous(seed=seed, n_ref=211, n_samp=187, d=32)
    for pr_cmp, dc_cmp in (("<=", "<"), ("<", "<=")):
        expected = _dense_prdc(ref, samp, 3, 5, pr_cmp, dc_cmp)
        for rb, cb in ((5000, 5000), (50, 31)):
            got = prdc(ref, samp, pr_comparison=pr_cmp, dc_comparison=dc_cmp, row_batch_size=rb, col_batch_size=cb,
                       cache_reference=False)
            assert got == expected
    ref, samp = _with_ties(k=3, seed=seed)  # exact arithmetic: ties resolved by the rules alone
    for pr_cmp, dc_cmp in (("<=", "<"), ("<", "<="), ("<=", "<=")):
        assert prdc(ref, samp, pr_k=3, dc_k=3, pr_comparison=pr_cmp, dc_comparison=dc_cmp, row_batch_size=13,
                    col_batch_size=7) == _dense_prdc(ref, samp, 3, 3, pr_cmp, dc_cmp)


def test_reference_radii_are_cached_by_content(monkeypatch):
    import importlib

    module = importlib.import_module("generative_bench.evaluation.metrics.knn")
    module.clear_cache()
    calls = []
    real = module._nearest_candidates
    monkeypatch.setattr(module, "_nearest_candidates", lambda x, keep, batch: calls.append((len(x), keep)) or
                        real(x, keep, batch))
    ref, samp = _continuous(seed=3, n_ref=180, n_samp=150, d=16)
    _, samp2 = _continuous(seed=4, n_ref=10, n_samp=170, d=16)
    first = prdc(ref, samp)
    extra = module.EXTRA_CANDIDATES
    assert calls == [(180, 5 + extra), (150, 3 + extra)]  # reference (k = 3 and 5), samples (k = 3)
    second = prdc(ref.copy(), samp2)  # same reference content, new samples: only the samples' radii
    assert calls[2:] == [(170, 3 + extra)]
    assert prdc(ref, samp) == first and calls[3:] == [(150, 3 + extra)]
    assert prdc(ref, samp, pr_k=3, dc_k=3) and calls[4:] == [(150, 3 + extra)]  # a k it has: served from the entry
    assert prdc(ref, samp, pr_k=2, dc_k=4) and calls[5:] == [(180, 4 + extra), (150, 2 + extra)]  # new k: added
    assert prdc(ref, samp, cache_reference=False) == first and calls[7:] == [(180, 5 + extra), (150, 3 + extra)]
    changed = ref.copy()
    changed[0, 0] += 1.0
    prdc(changed, samp)
    assert calls[9:] == [(180, 5 + extra), (150, 3 + extra)]
    assert second == prdc(ref, samp2, cache_reference=False)
    assert module.cache_info()["entries"] == 2
    module.clear_cache()
    assert module.cache_info() == {"entries": 0, "bytes": 0}


def test_distance_chunks_give_the_same_bits_as_one_pass(monkeypatch):
    """Distances are finished on row chunks: several chunks with a remainder give exactly the
    values (and so the metrics) of one pass over the whole block."""
    from generative_bench.evaluation.metrics import _chunks
    from generative_bench.evaluation.metrics.prdc import sq_distances

    rng = np.random.default_rng(4)
    u = rng.standard_normal((83, 40)).astype(np.float32)
    v = rng.standard_normal((61, 40)).astype(np.float32)
    u_sq, v_sq = np.einsum("ij,ij->i", u, u), np.einsum("ij,ij->i", v, v)
    whole = np.maximum((u @ v.T) * -2 + np.add.outer(u_sq, v_sq), 0)
    monkeypatch.setattr(_chunks, "CHUNK_ELEMENTS", 61 * 10 + 3)  # 10 rows a chunk: 8 chunks and a remainder of 3
    np.testing.assert_array_equal(sq_distances(u, v), whole)
    chunked = prdc(u, v, pr_k=3, dc_k=5, cache_reference=False, row_batch_size=32, col_batch_size=32)
    monkeypatch.setattr(_chunks, "CHUNK_ELEMENTS", 1 << 30)
    assert chunked == prdc(u, v, pr_k=3, dc_k=5, cache_reference=False, row_batch_size=32, col_batch_size=32)


def _duplicated_and_near_tied(seed=0, n=160, d=48):
    """What a collapsed or memorising generator gives: reference rows repeated 1-6 times, samples
    that copy reference rows (exactly, and within 1e-6 of a reference point that is some row's
    k-th neighbour: a near-tie at a radius), repeated samples and fresh ones; non-negative
    like pooled CNN features, where float32 distances of duplicates round away from 0."""
    rng = np.random.default_rng(seed)
    base = np.abs(rng.normal(size=(n // 3, d))).astype(np.float32)
    ref = np.repeat(base, rng.integers(1, 7, size=len(base)), axis=0)[:n]
    copies = ref[rng.integers(0, len(ref), size=n // 4)]
    near = ref[rng.integers(0, len(ref), size=n // 4)] + rng.normal(size=(n // 4, d)).astype(np.float32) * 1e-6
    fresh = np.abs(rng.normal(size=(n // 6, d))).astype(np.float32) * np.float32(1.02)
    repeated = np.repeat(fresh[:n // 12], 4, axis=0)
    samp = np.concatenate([copies, near.astype(np.float32), fresh, repeated])
    return ref, samp[rng.permutation(len(samp))]


def test_duplicates_round_away_from_zero_in_the_fast_pass():
    """The case the exact decisions are for: float32 distances of exact duplicates are not 0."""
    from generative_bench.evaluation.metrics.prdc import exact_sq_distances, raw_sq_distances

    ref, samp = _duplicated_and_near_tied()
    raw = raw_sq_distances(ref, ref)
    i, j = np.nonzero((ref[:, None] == ref[None]).all(-1) & ~np.eye(len(ref), dtype=bool))
    assert len(i) and (raw[i, j] != 0).any()
    assert (exact_sq_distances(ref, ref, i, j) == 0).all()


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("threads", [1, 2])
def test_duplicates_and_near_ties_equal_float64_brute_force_for_any_blocks_and_threads(k, threads):
    from threadpoolctl import threadpool_limits

    ref, samp = _duplicated_and_near_tied(seed=k)
    with threadpool_limits(limits=threads):
        for rule in ("<=", "<"):
            expected = _dense_prdc(ref, samp, k, k, rule, rule)
            for rb, cb in ((5000, 5000), (97, 131), (7, 3)):
                got = prdc(ref, samp, pr_k=k, dc_k=k, pr_comparison=rule, dc_comparison=rule,
                           row_batch_size=rb, col_batch_size=cb, cache_reference=False)
                assert got == expected, (rule, rb, cb)
            assert prdc(ref, samp, pr_k=k, dc_k=k, pr_comparison=rule, dc_comparison=rule,
                        dtype="float64", cache_reference=False) == expected
        # the prdc package's own code ("<" for all four) on the same sets, given float64 distances:
        # the same decisions; density differs in the last bit only (it divides by k before the mean)
        package = _prdc_package_exact_distances(ref, samp, k)
        assert prdc(ref, samp, pr_k=k, dc_k=k, pr_comparison="<", cache_reference=False) == \
            {name: pytest.approx(v, rel=1e-14, abs=0) for name, v in package.items()}


def _prdc_package_exact_distances(real, fake, k):
    """prdc.compute_prdc with its pairwise distances taken in float64 by the brute-force formula.

    The package's own distances (sklearn ``pairwise_distances``, float32 output for float32
    input) put exact duplicates up to 2e-7 apart instead of 0 (measured on these sets), so on
    radii decided by a duplicate the package itself does not give the float64 answer."""
    from unittest import mock

    import prdc.prdc as pkg

    def exact(x, y=None):
        y = x if y is None else y
        return np.sqrt(((x[:, None].astype(np.float64) - y[None]) ** 2).sum(-1))

    with mock.patch.object(pkg, "compute_pairwise_distance", exact):
        return _prdc_package(real, fake, k)


@pytest.mark.parametrize("k", [3, 5])
def test_near_ties_equal_the_prdc_package_given_float64_distances(k):
    """Samples within 1e-6 of a reference point (near-ties at the radii), no exact duplicates: the
    prdc package's code fed float64 distances and ours decide alike, for three block sizes. (The
    installed package's own distances are float32 - sklearn returns the input's dtype - so it
    rounds such near-ties and decides some of them otherwise: the deliberate difference.)"""
    rng = np.random.default_rng(20 + k)
    ref = np.abs(rng.normal(size=(150, 48))).astype(np.float32)
    near = ref[rng.permutation(150)[:60]] + (rng.normal(size=(60, 48)) * 1e-6).astype(np.float32)
    samp = np.concatenate([near, np.abs(rng.normal(size=(70, 48))).astype(np.float32)])
    package = _prdc_package_exact_distances(ref, samp, k)
    for rb, cb in ((5000, 5000), (97, 131), (7, 3)):
        got = prdc(ref, samp, pr_k=k, dc_k=k, pr_comparison="<", row_batch_size=rb, col_batch_size=cb,
                   cache_reference=False)
        assert got == {name: pytest.approx(v, rel=1e-14, abs=0) for name, v in package.items()}
        assert got == _dense_prdc(ref, samp, k, k, "<", "<")


def test_exact_radii_of_duplicates_equal_brute_force():
    ref, _ = _duplicated_and_near_tied(seed=9)
    d = ((ref[:, None].astype(np.float64) - ref[None]) ** 2).sum(-1)
    brute = np.sort(d, axis=1)
    for batch in (2500, 13, 1):
        radii = knn_sq_radii(ref, (1, 3, 5), batch=batch)
        for k in (1, 3, 5):
            np.testing.assert_array_equal(radii[k], brute[:, k])


def test_a_collapsed_set_is_one_point_with_multiplicity():
    """All samples equal (a GAN at truncation 0): radii 0, recall/coverage from one point."""
    ref, _ = _continuous(seed=2, n_ref=120, d=16)
    samp = np.repeat(ref[:1], 90, axis=0)
    for rule in ("<=", "<"):
        assert prdc(ref, samp, pr_k=3, dc_k=3, pr_comparison=rule, dc_comparison=rule, cache_reference=False) == \
            _dense_prdc(ref, samp, 3, 3, rule, rule)


def test_rows_with_more_near_ties_than_kept_candidates_are_measured_in_full(monkeypatch):
    """A cluster of 40 near-duplicates (1e-7 apart) overflows the kept candidates of each of its
    rows: those rows get a pass of their own and still give the brute-force radii."""
    import importlib

    module = importlib.import_module("generative_bench.evaluation.metrics.knn")
    monkeypatch.setattr(module, "EXTRA_CANDIDATES", 1)
    rng = np.random.default_rng(3)
    centre = rng.normal(size=(1, 24))
    x = np.concatenate([centre + rng.normal(size=(40, 24)) * 1e-7, rng.normal(size=(60, 24))]).astype(np.float32)
    brute = np.sort(((x[:, None].astype(np.float64) - x[None]) ** 2).sum(-1), axis=1)
    radii = module.exact_knn_sq_radii(x, (3, 5), batch=16)
    for k in (3, 5):
        np.testing.assert_array_equal(radii[k], brute[:, k])


@pytest.mark.parametrize("shape", [(1, 1), (3, 2000), (300, 2100), (129, 1025), (2500, 7)])
def test_tiled_transpose_equals_numpy(shape):
    from generative_bench.evaluation.metrics._chunks import transposed

    a = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    t = transposed(a)
    assert t.flags.c_contiguous and t.dtype == a.dtype
    np.testing.assert_array_equal(t, a.T)


def test_minus_two_in_the_product_gives_the_bits_of_scaling_after():
    from generative_bench.evaluation.metrics.prdc import raw_sq_distances

    rng = np.random.default_rng(5)
    u = rng.normal(size=(70, 33)).astype(np.float32)
    v = rng.normal(size=(45, 33)).astype(np.float32)
    u_sq, v_sq = np.einsum("ij,ij->i", u, u), np.einsum("ij,ij->i", v, v)
    np.testing.assert_array_equal(raw_sq_distances(u, v), (u @ v.T) * -2 + np.add.outer(u_sq, v_sq))
    sym = raw_sq_distances(u, u)
    np.testing.assert_array_equal(sym, sym.T)  # the symmetric product, then the same element-wise passes
