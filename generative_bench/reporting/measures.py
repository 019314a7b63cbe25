"""The run-level measures a leaderboard shows beside the metrics: sampling speed, network
evaluations per image and training compute, declared once like the metrics are
(:mod:`generative_bench.evaluation.schema`).

Each declaration says where the value comes from (the key of a collected row,
:func:`~generative_bench.reporting.collect.measurements`), how the tables, the CSV and the JSON
name it, its digits, which way is better (``""``: bookkeeping, never ranked) and its footnote.
The leaderboard aggregates, the renderers write and the headline ranks every declared measure
by looping over :data:`MEASURES`; the regression gate never compares them (timings move with the
machine). The NLL has its own column logic (an upper bound, "—" where undefined) and is declared
as :data:`NLL`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Measure:
    """One run-level column: frame columns ``{key}_mean`` / ``{key}_std``."""

    key: str
    source: str  # key of a collected row
    label: str  # column header in the full table
    better: str  # "higher" | "lower" | "" (not ranked)
    digits: int
    csv: str  # stem of the CSV columns ``{csv}_mean`` / ``{csv}_std``
    note: str = ""
    prose: str = ""  # the measure in a sentence of the headline ("sampling speed")
    minutes: bool = False  # shown in minutes (a value in seconds)


SAMPLING_SPEED = Measure(
    "ips", "images_per_s", "Sampling img/s", "higher", 1, "sample_images_per_s",
    note="Sampling speed: generated images per second, sampling only", prose="sampling speed")
TRAIN_STEPS = Measure("train_steps", "train_steps", "Train steps", "", 0, "train_steps")
IMAGES_SEEN = Measure("images_seen", "images_seen", "Images seen", "", 0, "images_seen")
TRAIN_WALL = Measure("train_wall_s", "train_wall_s", "Train wall (min)", "", 1, "train_wall_s", minutes=True)

#: every averaged run-level measure, in column order
MEASURES: tuple[Measure, ...] = (SAMPLING_SPEED, TRAIN_STEPS, IMAGES_SEEN, TRAIN_WALL)

#: network evaluations per image: one value per row (the sampler's own count, not averaged over seeds)
NFE = Measure("nfe", "nfe", "NFE", "", 0, "nfe",
              note="NFE: network evaluations per generated image, as the sampler that made them records it.")

#: the likelihood column: bits/dim, an upper bound, lower is better
NLL = Measure("nll", "nll", "NLL (bits/dim)", "lower", 3, "nll_bpd", prose="NLL")

__all__ = ["IMAGES_SEEN", "MEASURES", "NFE", "NLL", "SAMPLING_SPEED", "TRAIN_STEPS", "TRAIN_WALL", "Measure"]
