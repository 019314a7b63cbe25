"""A user's own metric and family, registered from a package outside generative_bench
(tests/plugin_example: one metric file with one registration, one backend and its model preset),
run through a real sweep: validation accepts them, the leaderboard, the figures and the compare
gate show them, with no edit inside generative_bench."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

PLUGIN_ROOT = Path(__file__).parent / "plugin_example"
GBENCH = [sys.executable, "-m", "generative_bench"]


def _env(with_plugin: bool = True) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GBENCH_PLUGINS"}
    if with_plugin:
        env["GBENCH_PLUGINS"] = "gbench_plugin_example"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PLUGIN_ROOT), env.get("PYTHONPATH")]))
    return env


def _gbench(*args, cwd, with_plugin=True, timeout=600):
    return subprocess.run([*GBENCH, *args], cwd=cwd, env=_env(with_plugin), capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("plugin")
    r = _gbench("-m", "model=gaussian,shrunk_gaussian", "train.max_steps=30", "eval.num_samples=300",
                "eval.nll.examples=100", "eval.toy_metrics=[modes,data_pr,radius]", f"hydra.sweep.dir={root / 's'}",
                cwd=root)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return root / "s"


def test_without_the_plugin_its_metric_and_family_are_unknown(tmp_path):
    r = _gbench("run", "eval.toy_metrics=[radius]", "train.max_steps=2", cwd=tmp_path, with_plugin=False)
    assert r.returncode == 2 and "unknown metric 'radius'" in r.stderr
    r = _gbench("run", "model=shrunk_gaussian", cwd=tmp_path, with_plugin=False)
    assert r.returncode == 2 and "shrunk_gaussian" in r.stderr


def test_a_plugin_that_cannot_be_imported_is_a_clear_error(tmp_path):
    env = {**_env(False), "GBENCH_PLUGINS": "no_such_plugin_module"}
    r = subprocess.run([*GBENCH, "run"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "plugin 'no_such_plugin_module'" in r.stderr and "PYTHONPATH" in r.stderr


def test_the_leaderboard_shows_the_plugin_metric_and_family(sweep):
    records = [json.loads(p.read_text()) for p in sweep.glob("*/results.json")]
    shrunk = next(r for r in records if r["backend"]["name"] == "shrunk_gaussian")
    assert shrunk["status"] == "completed" and shrunk["backend"]["display_name"] == "Shrunk Gaussian"
    assert [e["sampler"]["knobs"]["temperature"]["symbol"] for e in shrunk["evaluations"]] == ["τ"] * 3
    assert all("radius_error" in e["metrics"] for r in records for e in r["evaluations"])
    md = (sweep / "report" / "leaderboard.md").read_text()
    assert "Radius error" in md and "Shrunk Gaussian" in md  # the column and the caption's display name
    assert re.search(r"lower is better for [^;)]*Radius error", md)  # the values note reads the declared direction
    csv = pd.read_csv(sweep / "report" / "leaderboard.csv", comment="#")
    assert "radius_error_mean" in csv.columns and csv["radius_error_mean"].notna().all()


def test_the_figures_show_the_plugin_metric_and_knob(sweep, monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGIN_ROOT))
    monkeypatch.setenv("GBENCH_PLUGINS", "gbench_plugin_example")
    from generative_bench.evaluation.schema import unregister
    from generative_bench.plugins import load_plugins
    from generative_bench.reporting.collect import collect_runs
    from generative_bench.reporting.leaderboard import build_leaderboard
    from generative_bench.reporting.plots import metric_panels_figure, tradeoff_figure

    load_plugins()
    try:
        table = build_leaderboard(collect_runs(sweep)).tables[0]
        panels = metric_panels_figure(table)
        assert any("Radius error" in ax.get_title() for ax in panels.axes)
        trade = tradeoff_figure(table)
        legends = [t.get_text() for ax in trade.axes for leg in [ax.get_legend()] if leg for t in leg.get_texts()]
        legends += [t.get_text() for leg in trade.legends for t in leg.get_texts()]
        assert any("τ (temperature)" in t for t in legends), legends
    finally:
        unregister("radius")
        sys.modules.pop("gbench_plugin_example.radius", None)
        sys.modules.pop("gbench_plugin_example", None)
        importlib.import_module("generative_bench.plugins")._loaded.clear()


def test_the_compare_gate_checks_the_plugin_metric(sweep, tmp_path):
    board = sweep / "report" / "leaderboard.csv"
    same = _gbench("compare", str(sweep), str(board), cwd=tmp_path)
    assert same.returncode == 0 and "radius_error (Radius error)" in same.stdout, same.stdout[-2000:]
    lines = board.read_text().splitlines(keepends=True)
    header = next(i for i, ln in enumerate(lines) if not ln.startswith("#"))
    frame = pd.read_csv(board, skiprows=header)
    frame["radius_error_mean"] = frame["radius_error_mean"] / 10  # a baseline ten times better
    better = tmp_path / "baseline.csv"
    better.write_text("".join(lines[:header]) + frame.to_csv(index=False))
    worse = _gbench("compare", str(sweep), str(better), "--tolerance", "0.05", cwd=tmp_path)
    assert worse.returncode == 1, worse.stdout[-2000:] + worse.stderr[-2000:]
    assert "radius_error" in worse.stdout and "regression" in worse.stdout.lower()
