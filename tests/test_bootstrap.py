"""Bootstrap intervals (eval.bootstrap): exact at the identity resample, cover the full-sample value,
shrink as N grows, and reach the leaderboard as [lo, hi]."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from generative_bench.evaluation import suite  # noqa: F401  (the declarations)
from generative_bench.evaluation.bootstrap import intervals
from generative_bench.evaluation.metrics import kernel_inception_distance, prdc
from generative_bench.evaluation.metrics.resampled import kid_replicates, prdc_replicates
from generative_bench.evaluation.reference import with_stats
from generative_bench.evaluation.schema import MetricInputs, metric

CFG = OmegaConf.create({"kid_subsets": 20, "kid_subset_size": 100, "is_splits": 4, "pr_k": 3, "dc_k": 5,
                        "fid_method": "eigh", "extrapolate": False})
NAMES = ("fid", "sfid", "is", "kid", "prdc")


def _feats(n, seed, shift=0.0, d=8):
    rng = np.random.default_rng(seed)
    pool = rng.normal(shift, 1.0, (n, d)).astype(np.float32)
    return {"pool": pool, "spatial": pool[:, :4] * 2, "logits": (pool @ rng.normal(size=(d, 10))).astype(np.float32)}


def _inputs(n, seed=1):
    ref = with_stats(_feats(600, 0))
    return MetricInputs(cfg=CFG, seed=0, features=_feats(n, seed, shift=0.3), reference=ref)


def _values(inputs):
    out = {}
    for name in NAMES:
        out.update(metric(name).compute(inputs)[0])
    return out


def test_identity_resample_reproduces_kid_and_prdc_exactly():
    inp = _inputs(300)
    ident = [np.arange(300)]
    kid = kernel_inception_distance(inp.features["pool"], inp.reference["pool"], subsets=20, subset_size=100, seed=0)
    assert kid_replicates(inp.features["pool"], inp.reference["pool"], ident, 20, 100, seed=0)[0] == \
        pytest.approx(kid.mean, rel=1e-6, abs=1e-9)
    full = prdc(inp.reference["pool"], inp.features["pool"], pr_k=3, dc_k=5)
    assert prdc_replicates(inp.reference["pool"], inp.features["pool"], ident)[0] == pytest.approx(full, abs=1e-12)


def test_repeated_samples_do_not_count_as_their_own_neighbours():
    """A resample that repeats every point twice holds the same distinct samples: KID must stay
    near the full value (pairs of copies excluded), recall equal (full-set radii)."""
    inp = _inputs(300)
    twice = [np.repeat(np.arange(150), 2)]
    a = kid_replicates(inp.features["pool"], inp.reference["pool"], twice, 20, 100, seed=0)[0]
    plain = kernel_inception_distance(inp.features["pool"][np.repeat(np.arange(150), 2)], inp.reference["pool"],
                                      subsets=20, subset_size=100, seed=0).mean
    b = kernel_inception_distance(inp.features["pool"][:150], inp.reference["pool"], subsets=200, subset_size=100,
                                  seed=0).mean
    assert plain > a and abs(a - b) < abs(plain - b)  # naive copies inflate KID; the U-statistic over distinct samples does not
    assert prdc_replicates(inp.reference["pool"], inp.features["pool"], twice)[0]["recall"] == \
        prdc_replicates(inp.reference["pool"], inp.features["pool"], [np.arange(150)])[0]["recall"]


def test_intervals_cover_the_full_sample_value_and_shrink_with_n():
    widths = {}
    for n in (150, 1200):
        inp = _inputs(n)
        values = _values(inp)
        bounds, proto = intervals([metric(m) for m in NAMES], inp, values, replicates=60, seed=0)
        assert proto["replicates"] == 60 and set(proto["metrics"]) == set(NAMES)
        for key in ("fid", "sfid", "is_mean", "kid_mean", "precision", "recall", "density", "coverage"):
            iv = bounds[key]
            assert iv["lo"] <= values[key] <= iv["hi"], (n, key, iv, values[key])
            assert iv["hi"] > iv["lo"]
        widths[n] = {k: v["hi"] - v["lo"] for k, v in bounds.items()}
    for key in ("fid", "kid_mean", "precision", "recall", "density", "coverage", "is_mean"):
        assert widths[1200][key] < 0.7 * widths[150][key], key  # ~ 1/sqrt(8) expected


def test_leaderboard_shows_the_interval(tmp_path):
    from generative_bench.records import RunRecord
    from generative_bench.reporting import collect_runs
    from generative_bench.reporting.leaderboard import build_leaderboard, display_frame

    entry = {"sampler": {"name": "s", "settings": {}, "nfe": None, "knobs": {}, "conditional": False},
             "num_samples": 100, "metrics": {"fid": 12.3456, "precision": 0.5},
             "intervals": {"fid": {"lo": 11.0, "hi": 14.5, "std": 1.0, "bias": 0.2, "replicates": 50}},
             "protocol": {"reference": {"dataset": "x"}, "features": {"name": "f", "weights_sha256": "ab" * 32},
                          "metric_settings": {}, "bootstrap": {"replicates": 50, "level": 0.95}},
             "comparable": False, "warnings": [], "notes": [], "skipped_metrics": [], "timings": {}}
    rec = RunRecord.create(tmp_path / "r", run_name="r", seed=0, overrides=[], command="test",
                           protocol={"name": "t"}, environment={}, config={}, stage="evaluate")
    rec.update(backend={"name": "s", "family": "external"}, nll={"defined": False, "reason": "external"},
               data={"dataset": "x", "split": "train"})
    rec.add_evaluation(entry)
    rec.complete()
    disp = display_frame(build_leaderboard(collect_runs(tmp_path)).tables[0])
    col = next(c for c in disp.frame.columns if c.startswith("FID"))
    assert "12.35 [11.00, 14.50]" in str(disp.frame[col].iloc[0])
    assert any(n.startswith("[lo, hi]: bootstrap") for n in disp.notes)
