"""Hydra callback: when a sweep ends, build its leaderboard and report and print where they are."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("gbench")


class SweepReportCallback(Callback):
    """``on_multirun_end``: ``gbench report <sweep dir> --out <sweep dir>/report``."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from generative_bench.cli.report import print_summary
        from generative_bench.reporting import build_report

        sweep_dir = Path(config.hydra.sweep.dir)
        if not any(sweep_dir.rglob("results.json")):
            return
        try:
            paths = build_report([sweep_dir], sweep_dir / "report", title=f"generative-bench: {sweep_dir.name}")
        except Exception as e:  # the runs are on disk; a report failure must not hide them
            log.error("could not build the sweep report (%s: %s); run `gbench report %s` to retry",
                      type(e).__name__, e, sweep_dir)
            return
        print_summary(paths)
        # jobs run by other processes (joblib, submitit) fail there: count them here for the exit code
        from generative_bench.cli import task
        from generative_bench.io import read_json

        for rec_path in sweep_dir.rglob("results.json"):
            try:
                status = read_json(rec_path).get("status")
            except ValueError:
                status = "unreadable"
            if status != "completed" and str(rec_path.parent) not in task.FAILED_JOBS:
                task.FAILED_JOBS.append(str(rec_path.parent))
