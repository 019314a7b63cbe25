"""Toy-mixture metrics: modes, high-quality share, reverse KL, k-NN precision/recall, NLL floor."""

import math

import numpy as np
import pytest
import torch

from generative_bench.data.toy import GridOfGaussians, RingOfGaussians
from generative_bench.errors import InputError
from generative_bench.evaluation.toy_metrics import (
    data_nll_floor_bpd, knn_precision_recall, knn_radii, mode_statistics, toy_metrics,
)

KEYS = {"toy_modes", "toy_modes_total", "toy_high_quality", "toy_reverse_kl", "toy_precision", "toy_recall",
        "data_nll_floor_bpd"}



@pytest.fixture(scope="module")
def ring():
    return RingOfGaussians(size=100)


@pytest.fixture(scope="module")
def grid():
    return GridOfGaussians(size=100)


@pytest.mark.parametrize("name", ["ring", "grid"])
def test_true_mixture_samples_score_perfectly(name, request):
    mix = request.getfixturevalue(name)
    x = mix.sample(2500, torch.Generator().manual_seed(1))
    out = toy_metrics(x, mix, seed=2)
    assert set(out) == KEYS and all(isinstance(v, float) for v in out.values())
    assert out["toy_modes"] == out["toy_modes_total"] == len(mix.means)
    # P(chi^2_2 < 9) = 1 - exp(-4.5) = 0.9889 of true samples lie within 3 std
    assert out["toy_high_quality"] == pytest.approx(1 - math.exp(-4.5), abs=0.01)
    assert 0 <= out["toy_reverse_kl"] < 0.02
    assert out["toy_precision"] > 0.9 and out["toy_recall"] > 0.9


def test_collapsed_sample_reports_one_mode(ring):
    g = torch.Generator().manual_seed(0)
    x = ring.means[3].float() + ring.std * torch.randn(2500, 2, generator=g)
    out = toy_metrics(x, ring)
    assert out["toy_modes"] == 1
    assert out["toy_high_quality"] > 0.97
    assert out["toy_reverse_kl"] == pytest.approx(math.log(8), abs=1e-9)  # point mass vs uniform over 8
    assert out["toy_precision"] > 0.9 and out["toy_recall"] < 0.2


def test_mode_counts_thresholds_and_reverse_kl_by_hand(ring):
    mu, s = ring.means.float(), ring.std
    # 30 points on mode 0, 10 on mode 1 (exactly at the centre), 60 far away (low quality)
    x = torch.cat([mu[0].repeat(30, 1), mu[1].repeat(10, 1) + 2.9 * s * torch.tensor([1.0, 0.0]),
                   torch.full((60, 2), 5.0)])
    st = mode_statistics(x, ring)
    assert st["counts"][:2] == [30, 10] and sum(st["counts"]) == 40
    assert st["high_quality"] == pytest.approx(0.4)
    assert st["min_count"] == 1  # 20 / 2500 of 100 samples rounds up to 1
    assert st["modes"] == 2
    q = np.array([0.75, 0.25])
    assert st["reverse_kl"] == pytest.approx(float((q * np.log(8 * q)).sum()), abs=1e-12)
    assert mode_statistics(x, ring, min_count=20)["modes"] == 1
    assert mode_statistics(x, ring, min_share=0.5)["modes"] == 0
    assert mode_statistics(x, ring, max_mahalanobis=2.0)["counts"][:2] == [30, 0]
    # PacGAN's rule at n = 2500: at least 20 samples
    assert mode_statistics(torch.zeros(2500, 2) + mu[0], ring)["min_count"] == 20
    far = mode_statistics(torch.full((10, 2), 9.0), ring)
    assert far["modes"] == 0 and far["high_quality"] == 0 and math.isnan(far["reverse_kl"])


def test_knn_precision_recall_matches_prdc():
    prdc = pytest.importorskip("prdc")
    rng = np.random.default_rng(0)
    real = rng.normal(size=(400, 2))
    fake = rng.normal(loc=0.7, scale=0.8, size=(300, 2))
    ours = knn_precision_recall(real, fake, k=3)
    ref = prdc.compute_prdc(real_features=real, fake_features=fake, nearest_k=3)
    assert ours == pytest.approx((ref["precision"], ref["recall"]), abs=1e-12)
    assert 0.3 < ours[0] < 1 and 0.3 < ours[1] < 1
    # radii: the 3rd nearest other point
    pts = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [7.0, 0.0]], dtype=torch.float64)
    assert knn_radii(pts, k=2).tolist() == [3.0, 2.0, 3.0, 6.0]


def test_data_nll_floor_matches_the_gaussian_entropy(grid):
    # well separated equal modes: E[-log p] = log K + log(2 pi e s^2) nats per point (2 dims)
    x = grid.sample(20000, torch.Generator().manual_seed(0))
    expected = (math.log(25) + math.log(2 * math.pi * math.e * grid.std**2)) / (2 * math.log(2))
    assert data_nll_floor_bpd(grid, x) == pytest.approx(expected, abs=0.02)
    assert data_nll_floor_bpd(grid, x) == pytest.approx(float(grid.nll_bits_per_dim(x).mean()), rel=1e-12)


def test_bad_inputs_are_clear_errors(ring):
    with pytest.raises(InputError, match="NaN"):
        toy_metrics(torch.tensor([[0.0, float("nan")]] * 10), ring)
    with pytest.raises(InputError, match="shape"):
        toy_metrics(torch.zeros(10, 3), ring)
    with pytest.raises(InputError, match="float"):
        toy_metrics(torch.zeros(10, 2, dtype=torch.int64), ring)
    with pytest.raises(InputError, match="k=3"):
        knn_precision_recall(torch.zeros(3, 2), torch.zeros(10, 2))
