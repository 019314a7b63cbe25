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
