"""Memorization checks (eval.memorization=true): a sampler that returns training images is flagged by
every check; one that returns unseen images from the same distribution passes."""

from __future__ import annotations

import numpy as np
import pytest

from generative_bench.evaluation.metrics.memorization import authenticity, kmeans, memorization
from tests.test_reference_files import _cfgs, folder  # noqa: F401  (the image-folder fixture)


def _gauss(n, seed, d=8):
    return np.random.default_rng(seed).normal(size=(n, d))


def test_copies_are_flagged_and_fresh_draws_pass_in_feature_space():
    train, held = _gauss(600, 0), _gauss(300, 1)
    copies = train[np.random.default_rng(2).choice(600, 300, replace=False)] + 1e-9
    fresh = _gauss(300, 3)
    bad, good = memorization(copies, train, held, cells=4), memorization(fresh, train, held, cells=4)
    assert bad["nn_ratio"] < 0.01 and bad["copy_share"] == 1.0 and bad["authenticity"] == 0.0
    assert bad["ct"] < -10 and bad["flagged"] == 1.0
    assert 0.8 < good["nn_ratio"] < 1.25 and good["copy_share"] < 0.05 and good["authenticity"] > 0.4
    assert abs(good["ct"]) < 3 and good["flagged"] == 0.0


def test_authenticity_rule_on_a_hand_made_case():
    train = np.array([[0.0], [1.0], [3.0]])
    # 0.1 is closer to train[0] than train[0] to train[1] (1.0): not authentic; 5.0 is 2 from train[2],
    # whose own nearest neighbour is 2 away: authentic (ties count as authentic)
    assert authenticity(np.array([[0.1], [5.0]]), train) == 0.5


def test_kmeans_finds_separated_clusters():
    x = np.concatenate([_gauss(50, 0, 2) * 0.1 + c for c in ((0, 0), (5, 5), (-5, 5))])
    c = kmeans(x, 3, seed=0)
    assert sorted(np.round(c).astype(int).tolist()) == [[-5, 5], [0, 0], [5, 5]]


def _npz(path, images):
    np.savez(path, arr_0=images)
    return path


def test_harness_flags_a_sampler_returning_training_images(folder, tmp_path):  # noqa: F811
    from generative_bench.data.loading import load_split
    from generative_bench.evaluation.harness import Evaluator
    from generative_bench.evaluation.sample_sets import NpzSampleSet

    data, ev = _cfgs(folder, tmp_path, metrics=["fid"], memorization=True, memorization_cells=3,
                     memorization_min_cell=10)
    train = load_split(data, "train").x.permute(0, 2, 3, 1).numpy()
    rng = np.random.default_rng(7)
    fresh = np.concatenate([np.clip(rng.normal(m, 40, (40, 8, 8, 3)), 0, 255) for m in (100, 160)]).astype(np.uint8)
    e = Evaluator(data, ev, cache_dir=tmp_path / "cache", seed=0)
    copy = e.evaluate(NpzSampleSet(str(_npz(tmp_path / "copies.npz", train[rng.permutation(120)[:80]]))), {})
    ok = e.evaluate(NpzSampleSet(str(_npz(tmp_path / "fresh.npz", fresh))), {})
    c, o = copy["metrics"], ok["metrics"]
    assert c["mem_flagged"] == 1.0 and c["mem_authenticity"] == 0.0 and c["mem_nn_ratio"] < 0.01
    assert o["mem_flagged"] == 0.0 and o["mem_authenticity"] > 0.3 and o["mem_nn_ratio"] > 0.7
    settings = copy["protocol"]["metric_settings"]["memorization"]
    assert settings["heldout_set"]["split"] == "test" and settings["train_set"]["split"] == "train"
