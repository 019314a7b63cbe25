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

    module = importlib.import_module("generative_bench.evaluation.metrics.prdc")
    module.clear_cache()
    calls = []
    real = module.knn_sq_smallest
    monkeypatch.setattr(module, "knn_sq_smallest", lambda x, keep, batch: calls.append((len(x), keep)) or
                        real(x, keep, batch))
    ref, samp = _continuous(seed=3, n_ref=180, n_samp=150, d=16)
    _, samp2 = _continuous(seed=4, n_ref=10, n_samp=170, d=16)
    first = prdc(ref, samp)
    assert calls == [(180, 6), (150, 4)]  # reference (k = 3 and 5), samples (k = 3)
    second = prdc(ref.copy(), samp2)  # same reference content, new samples: only the samples' radii
    assert calls[2:] == [(170, 4)]
    assert prdc(ref, samp) == first and calls[3:] == [(150, 4)]
    assert prdc(ref, samp, pr_k=2, dc_k=4) and calls[4:] == [(150, 3)]  # smaller k: served from the entry
    assert prdc(ref, samp, cache_reference=False) == first and calls[5:] == [(180, 6), (150, 4)]
    changed = ref.copy()
    changed[0, 0] += 1.0
    prdc(changed, samp)
    assert calls[7:] == [(180, 6), (150, 4)]
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


def test_unclamped_blocks_decide_like_clamped_distances():
    """The blocked passes compare unclamped distances with adjusted radii and clamp only what they
    keep (module doc): on duplicated float32 points, whose distances round to tiny negative values,
    every rule gives the fractions of clamped distances (sq_distances) compared with the radii."""
    from generative_bench.evaluation.metrics.prdc import raw_sq_distances, sq_distances

    rng = np.random.default_rng(11)
    base = rng.normal(size=(40, 24)).astype(np.float32)
    ref = np.repeat(base, 2, axis=0)  # every point twice: k = 1 radii are (rounding of) 0
    samp = np.concatenate([base[:25], rng.normal(size=(30, 24)).astype(np.float32)])
    raw = raw_sq_distances(ref, samp)
    assert (raw < 0).any() and (raw > 0).any()  # the case this test is about: negative rounding
    d = sq_distances(ref, samp)
    np.testing.assert_array_equal(d, np.maximum(raw, 0))
    ops = {"<=": np.less_equal, "<": np.less}
    for k in (1, 3):
        rad_r = knn_sq_radii(ref, (k,))[k]
        rad_s = knn_sq_radii(samp, (k,))[k]
        assert (rad_r >= 0).all() and (rad_s >= 0).all()
        for rule in ("<=", "<"):
            cmp = ops[rule]
            expected = {"precision": float(cmp(d, rad_r[:, None]).any(0).mean()),
                        "recall": float(cmp(d, rad_s[None, :]).any(1).mean()),
                        "density": float(cmp(d, rad_r[:, None]).sum(0).mean() / k),
                        "coverage": float(cmp(d.min(1), rad_r).mean())}
            got = prdc(ref, samp, pr_k=k, dc_k=k, pr_comparison=rule, dc_comparison=rule, cache_reference=False)
            assert got == expected, (k, rule)


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
