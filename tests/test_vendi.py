"""Vendi score: the effective number of distinct samples (Friedman & Dieng 2023)."""

import numpy as np
import pytest

from generative_bench.evaluation.metrics.vendi import vendi_score


def test_vendi_limits_and_the_eigen_shortcut():
    assert vendi_score(np.ones((50, 8))) == pytest.approx(1.0)
    assert vendi_score(np.eye(6)) == pytest.approx(6.0)
    assert vendi_score(np.repeat(np.eye(4), 3, axis=0)) == pytest.approx(4.0)  # 4 distinct points, 3 copies each
    x = np.random.default_rng(0).normal(size=(30, 12))
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    lam = np.clip(np.linalg.eigvalsh(xn @ xn.T / 30), 0, None)
    lam = lam[lam > 1e-15]
    assert vendi_score(x) == pytest.approx(float(np.exp(-(lam * np.log(lam)).sum())), rel=1e-9)  # n x n form
    assert 1 < vendi_score(x) <= 12
