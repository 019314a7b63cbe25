"""One declaration per metric: a metric added in one place reaches the harness, the leaderboard,
the domain naming, the regression gate and the plots."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from generative_bench.evaluation import schema
from generative_bench.evaluation.harness import Evaluator
from generative_bench.reporting import build_report, collect_runs
from generative_bench.reporting.leaderboard import build_leaderboard, display_frame, metric_specs
from generative_bench.reporting.plots import metric_panels_figure


class Spread:
    """A toy sampler: Gaussian blobs around the ring's modes with a given spread."""

    name = "spread"
    image_shape = (2,)

    def __init__(self, std: float):
        self.std = std

    def resolve_settings(self, **sampling):
        return {}

    def network_evaluations(self, settings):
        return 1

    def knobs(self):
        return {}

    def check_count(self, n):
        pass

    def describe(self):
        return {"family": "test"}

    def draw(self, start, stop, seed, settings, labels=None, chunk=32):
        from generative_bench.sampler import SampleBatch

        g = torch.Generator().manual_seed(seed * 1000 + start)
        k = torch.randint(0, 8, (stop - start,), generator=g).double()
        angle = k * (2 * np.pi / 8)
        x = torch.stack([angle.cos(), angle.sin()], 1) + self.std * torch.randn(stop - start, 2, generator=g,
                                                                                  dtype=torch.float64)
        return SampleBatch(x.float())


@pytest.fixture
def mean_radius():
    """A new metric, declared once: the mean distance of the samples from the origin."""
    m = schema.register(schema.Metric(
        "mean_radius", "toy", compute=lambda inp: ({"toy_mean_radius": float(inp.samples.norm(dim=1).mean())},
                                                   {"what": "mean |x|"}),
        outputs=(schema.Output("toy_mean_radius", "Mean radius", "lower", digits=4,
                               note="Mean radius: mean distance of the samples from the origin."),)))
    yield m
    schema.unregister("mean_radius")


def _record(tmp_path, name, std):
    from generative_bench.records import RunRecord

    data = OmegaConf.create({"name": "ring8", "kind": "vector", "shape": [2], "subset": None, "subset_seed": 0,
                             "source": {"_target_": "generative_bench.data.toy.RingOfGaussians", "size": 400}})
    cfg = OmegaConf.create({"num_samples": 200, "batch_size": 100, "reference_split": "test", "grid_size": 0,
                            "toy_metrics": ["modes", "mean_radius"], "save_samples": False})
    entry = Evaluator(data, cfg, seed=0).evaluate(Spread(std), {}, name=name)
    rec = RunRecord.create(tmp_path / name, run_name=name, seed=0, overrides=[], command="test",
                           protocol={"name": "schema"}, environment={}, config={}, stage="evaluate")
    rec.update(backend={"name": name, "family": "test", "data_shape": [2]}, nll={"defined": False, "reason": "test"},
               data={"dataset": "ring8", "split": "train"})
    rec.add_evaluation(entry)
    rec.complete()
    return entry


def test_a_metric_declared_once_reaches_harness_leaderboard_and_plots(tmp_path, mean_radius):
    entry = _record(tmp_path, "tight", 0.01)
    _record(tmp_path, "loose", 0.3)
    assert "toy_mean_radius" in entry["metrics"] and entry["protocol"]["metric_settings"]["mean_radius"]
    assert any(s.key == "toy_mean_radius" and s.better == "lower" for s in metric_specs())
    board = build_leaderboard(collect_runs(tmp_path))
    table = board.tables[0]
    disp = display_frame(table)
    column = next(c for c in disp.frame.columns if c.startswith("Mean radius"))
    assert any("Mean radius: mean distance" in n for n in disp.notes)
    assert any("**" in str(v) or "\x01" in str(v) for v in disp.frame[column])  # a best value is marked
    fig = metric_panels_figure(table)
    assert "Mean radius" in [ax.get_ylabel() for ax in fig.axes]
    from generative_bench.reporting import compare

    assert compare.metric_direction("toy_mean_radius") == "lower"
    paths = build_report([tmp_path], tmp_path / "report")
    assert "Mean radius" in paths["md"].read_text()


def test_unknown_metric_names_list_the_declared_ones():
    from generative_bench.errors import InputError

    with pytest.raises(InputError, match=r"unknown metric 'fidd' in eval.metrics; choose from \[.*'fid'"):
        schema.metric("fidd", "features")
    with pytest.raises(ValueError, match="already"):
        schema.register(schema.Metric("fid", "features", outputs=(), compute=lambda inp: ({}, {})))


def test_the_eval_config_states_the_declared_metric_option_defaults():
    """Each metric option is declared once (its Options dataclass in evaluation/suite.py); the eval
    config that lets users override it must hold the same default."""
    import dataclasses
    from pathlib import Path

    from omegaconf import OmegaConf

    from generative_bench.evaluation import suite  # noqa: F401  (the declarations)
    from generative_bench.evaluation.schema import metrics

    cfg = OmegaConf.load(Path(__file__).parents[1] / "conf" / "eval" / "default.yaml")
    declared = [(m.name, f) for m in metrics() if m.options for f in dataclasses.fields(m.options)]
    assert {f.name for _, f in declared} >= {"pr_k", "dc_k", "is_splits", "kid_subsets", "kid_subset_order"}
    for name, f in declared:
        assert f.name in cfg, f"{name}: eval.{f.name} is not overridable"
        assert cfg[f.name] == f.default, (name, f.name)
