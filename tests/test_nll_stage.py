"""The NLL stage averages every batch: bits/dim and each recorded term are means over all the
held-out examples, whatever eval.nll.batch_size cuts them into."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf

from generative_bench import pipeline
from generative_bench.backends.base import NLLResult


class PerExample:
    """An NLL that is a known function of each example (its first coordinate), with one term."""

    nll_defined, conditional, family = True, False, "toy"

    def nll(self, x, generator=None, labels=None, **options):
        value = x[:, 0].double()
        return NLLResult(bpd=value, bound="first coordinate", terms={"prior": 2 * value})


class Record:
    def __init__(self):
        self.data = {}

    def update(self, **fields):
        self.data.update(fields)


def test_bits_per_dim_and_terms_are_means_over_every_batch(compose):
    cfg = compose(["model=gaussian", "eval.nll.examples=40"])
    OmegaConf.resolve(cfg)
    records = {}
    for bs in (40, 7, 1):
        cfg.eval.nll.batch_size = bs
        rec = Record()
        pipeline.nll(cfg, PerExample(), rec, torch.device("cpu"), {})
        records[bs] = rec.data["nll"]
    whole = records[40]
    assert whole["examples"] == 40
    for bs in (7, 1):
        assert records[bs]["bpd"] == whole["bpd"]
        assert abs(records[bs]["terms"]["prior"] - 2 * whole["bpd"]) < 1e-12  # every batch, not the last one
