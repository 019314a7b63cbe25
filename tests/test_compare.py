"""`gbench compare`: the regression gate, on real run folders made by a tiny real sweep."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from generative_bench.cli.compare import compare_main
from generative_bench.reporting import compare as cmp
from generative_bench.reporting import leaderboard

GBENCH = [sys.executable, "-m", "generative_bench"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """One real Gaussian-baseline job on the ring mixture: a sweep folder with its report."""
    sweep = tmp_path_factory.mktemp("compare") / "sweep"
    cmd = GBENCH + ["-m", "model=gaussian", "seed=0", "train.max_steps=20", "eval.num_samples=200",
                    "eval.nll.examples=50", f"hydra.sweep.dir={sweep}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert (sweep / "report" / "leaderboard.csv").is_file()
    return sweep


def variant(sweep: Path, dest: Path, edit) -> Path:
    """A copy of the sweep whose results.json records are changed by ``edit(record)``."""
    shutil.copytree(sweep, dest)
    for path in dest.glob("*/results.json"):
        record = json.loads(path.read_text())
        edit(record)
        path.write_text(json.dumps(record))
    return dest


def set_metric(key: str, factor: float):
    def edit(record):
        metrics = record["evaluations"][0]["metrics"]
        assert key in metrics, sorted(metrics)
        metrics[key] *= factor
    return edit


def run_compare(capsys, *args) -> tuple[int, str]:
    code = compare_main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.mark.slow
def test_identical_copy_and_own_report_pass(sweep, tmp_path, capsys):
    copy = variant(sweep, tmp_path / "copy", lambda rec: None)
    code, out = run_compare(capsys, copy, sweep)
    assert code == cmp.EXIT_OK, out
    assert "PASS" in out and "REGRESSION" not in out and "hq (High-quality share)" in out
    assert "nll_bpd" in out and "images_per_s" not in out and "train_wall" not in out  # timings never compared
    # through the console entry point: the sweep against the leaderboard.csv its report wrote
    r = subprocess.run(GBENCH + ["compare", str(sweep), str(sweep / "report" / "leaderboard.csv")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 regression(s)" in r.stdout and "Traceback" not in r.stderr
    # a report folder alone (a committed baseline without its runs) reads as its leaderboard.csv
    committed = tmp_path / "baseline"
    shutil.copytree(sweep / "report", committed)
    assert run_compare(capsys, sweep, committed)[0] == cmp.EXIT_OK


@pytest.mark.slow
def test_worse_metric_is_a_regression_named_in_all_outputs(sweep, tmp_path, capsys):
    worse = variant(sweep, tmp_path / "worse", set_metric("toy_reverse_kl", 1.5))  # lower is better
    md, js = tmp_path / "out" / "compare.md", tmp_path / "out" / "compare.json"
    code, out = run_compare(capsys, worse, sweep / "report" / "leaderboard.csv", "--out", md, "--json", js)
    assert code == cmp.EXIT_REGRESSION, out
    line = next(ln for ln in out.splitlines() if "REGRESSION" in ln)
    assert "reverse_kl" in line and "+50.00%" in line
    assert "FAIL: 1 regression(s)" in out
    assert "reverse_kl" in md.read_text() and "REGRESSION" in md.read_text()
    report = json.loads(js.read_text())
    assert report["exit_code"] == 1 and report["counts"]["REGRESSION"] == 1
    bad = [ln for ln in report["lines"] if ln["verdict"] == "REGRESSION"]
    assert len(bad) == 1 and bad[0]["metric"].startswith("reverse_kl")
    assert bad[0]["new"] == pytest.approx(1.5 * bad[0]["baseline"])
    # a higher-is-better metric going down regresses too
    lower_hq = variant(sweep, tmp_path / "lower_hq", set_metric("toy_high_quality", 0.5))
    code, out = run_compare(capsys, lower_hq, sweep)
    assert code == cmp.EXIT_REGRESSION and "hq" in next(ln for ln in out.splitlines() if "REGRESSION" in ln)


@pytest.mark.slow
def test_better_metric_is_reported_improved(sweep, tmp_path, capsys):
    def better(record):
        record["evaluations"][0]["metrics"]["toy_high_quality"] = 0.9
        record["evaluations"][0]["metrics"]["toy_reverse_kl"] *= 0.5
        record["nll"]["bpd"] -= 0.25

    code, out = run_compare(capsys, variant(sweep, tmp_path / "better", better), sweep / "report" / "leaderboard.csv")
    assert code == cmp.EXIT_OK, out
    improved = [ln for ln in out.splitlines() if "improved" in ln and "|" in ln]
    assert len(improved) == 3 and any("nll_bpd" in ln for ln in improved)
    assert "PASS" in out and "3 improved" in out


@pytest.mark.slow
def test_fingerprint_change_exits_3_and_names_the_field(sweep, tmp_path, capsys):
    def more_samples(record):
        record["evaluations"][0]["num_samples"] = 1000
        record["evaluations"][0]["protocol"]["features"]["weights_sha256"] = "0" * 64

    changed = variant(sweep, tmp_path / "changed", more_samples)
    code, out = run_compare(capsys, changed, sweep / "report" / "leaderboard.csv")
    assert code == cmp.EXIT_FINGERPRINT, out
    assert "fingerprint MISMATCH" in out and "num_samples: 200 vs 1000" in out
    assert "features.weights_sha256" in out and "FINGERPRINT MISMATCH" in out
    code, out = run_compare(capsys, changed, sweep, "--allow-fingerprint-change")
    assert code == cmp.EXIT_OK, out
    assert "changed (allowed)" in out and "num_samples: 200 vs 1000" in out


@pytest.mark.slow
def test_tolerances_relative_absolute_and_per_metric(sweep, tmp_path, capsys):
    slightly = variant(sweep, tmp_path / "slightly", set_metric("toy_reverse_kl", 1.1))  # 10% worse
    baseline = sweep / "report" / "leaderboard.csv"
    assert run_compare(capsys, slightly, baseline)[0] == cmp.EXIT_REGRESSION  # default: any change is caught
    code, out = run_compare(capsys, slightly, baseline, "--tolerance", "0.5")
    assert code == cmp.EXIT_OK and "relative 0.5" in out, out
    assert run_compare(capsys, slightly, baseline, "--tolerance", "0.05")[0] == cmp.EXIT_REGRESSION
    assert run_compare(capsys, slightly, baseline, "--abs-tolerance", "1.0")[0] == cmp.EXIT_OK
    # a per-metric absolute value replaces the global ones for that metric (record names accepted)
    assert run_compare(capsys, slightly, baseline, "--tolerance", "reverse_kl=1.0")[0] == cmp.EXIT_OK
    assert run_compare(capsys, slightly, baseline, "--tolerance", "toy_reverse_kl=1.0")[0] == cmp.EXIT_OK
    assert run_compare(capsys, slightly, baseline, "--tolerance", "0.5", "--tolerance",
                       "reverse_kl=0.001")[0] == cmp.EXIT_REGRESSION
    assert run_compare(capsys, slightly, baseline, "--tolerance", "fid=100")[0] == cmp.EXIT_REGRESSION


@pytest.mark.slow
def test_missing_rows_fail_unless_allowed_and_additions_pass(sweep, tmp_path, capsys):
    def rename(record):
        record["backend"]["name"] = "gaussian-v2"

    renamed = variant(sweep, tmp_path / "renamed", rename)
    code, out = run_compare(capsys, renamed, sweep / "report" / "leaderboard.csv")
    assert code == cmp.EXIT_REGRESSION, out
    assert "missing in NEW: gaussian / " in out and "only in NEW (added): gaussian-v2 / " in out
    code, out = run_compare(capsys, renamed, sweep, "--allow-missing")  # allowed, but then nothing is compared
    assert code == cmp.EXIT_REGRESSION and out.startswith("gbench compare: nothing was compared"), out
    # NEW holds the baseline row and one more: the addition is reported and passes
    both = tmp_path / "both"
    both.mkdir()
    shutil.copytree(sweep, both / "a")
    shutil.copytree(renamed, both / "b")
    code, out = run_compare(capsys, both, sweep / "report" / "leaderboard.csv")
    assert code == cmp.EXIT_OK and "1 added row(s)" in out, out


@pytest.mark.parametrize("case", ["missing_path", "not_a_leaderboard", "bad_option"])
def test_bad_input_exits_2_with_one_line(tmp_path, case):
    other = tmp_path / "other.csv"
    other.write_text("name,value\nfid,3.0\n")
    args = {"missing_path": [tmp_path / "does-not-exist", other],
            "not_a_leaderboard": [other, other],
            "bad_option": [other, other, "--tolerance", "fid=much"]}[case]
    r = subprocess.run(GBENCH + ["compare"] + [str(a) for a in args], capture_output=True, text=True, timeout=300)
    assert r.returncode == cmp.EXIT_BAD_INPUT, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gbench compare: error: ")
    expected = {"missing_path": ["does-not-exist", "does not exist", "leaderboard.csv"],
                "not_a_leaderboard": ["other.csv", "not a leaderboard CSV", "gbench report"],
                "bad_option": ["fid=much", "KEY=VALUE"]}[case]
    assert all(text in lines[0] for text in expected), lines[0]


def test_folder_without_runs_is_bad_input(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, out = run_compare(capsys, tmp_path / "empty", tmp_path / "empty")
    assert code == cmp.EXIT_BAD_INPUT and "no results.json" in out and "Traceback" not in out


def test_metric_direction_reads_the_leaderboard_declarations(monkeypatch):
    for spec in leaderboard.METRICS:
        assert cmp.metric_direction(spec.key) == spec.better
        assert cmp.metric_direction(f"{spec.key}_mean") == spec.better
        assert all(cmp.metric_direction(alias) == spec.better for alias in spec.aliases)
    assert cmp.metric_direction("kid_x1e3_mean") == "lower" and cmp.metric_direction("is_mean") == "higher"
    assert cmp.metric_direction("nll_bpd_mean") == "lower"
    assert cmp.metric_direction("x:toy_energy_mean") == ""  # an extra metric: shown, never fails
    for timing in ("sample_images_per_s_mean", "train_wall_s_mean", "train_steps_mean", "images_seen_mean", "nfe"):
        assert cmp.metric_direction(timing) is None
    # a metric declared later is picked up without touching the comparison
    from generative_bench.evaluation.schema import Metric, Output, register, unregister

    register(Metric("sharpness", "toy", compute=lambda inp: ({}, {}),
                    outputs=(Output("toy_sharpness", "Sharpness", "higher", column="sharpness"),)))
    try:
        assert cmp.metric_direction("sharpness_mean") == "higher" and cmp.metric_direction("toy_sharpness") == "higher"
    finally:
        unregister("sharpness")


@pytest.mark.slow
def test_an_identical_rerun_of_the_command_passes_the_gate(sweep, tmp_path, capsys):
    """The same command run again from scratch (a fresh folder) gives the same numbers: exit 0."""
    again = tmp_path / "again"
    cmd = GBENCH + ["-m", "model=gaussian", "seed=0", "train.max_steps=20", "eval.num_samples=200",
                    "eval.nll.examples=50", f"hydra.sweep.dir={again}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    code, out = run_compare(capsys, again, sweep / "report" / "leaderboard.csv")
    assert code == cmp.EXIT_OK, out


@pytest.mark.slow
def test_a_gate_that_compares_nothing_fails(sweep, tmp_path, capsys):
    """A run against a failed run (no rows): exit 1, said first."""
    def fail(record):
        record["status"] = "failed"
        record["error"] = {"type": "InputError", "message": "boom", "stage": "train"}

    failed = variant(sweep, tmp_path / "failed", fail)
    code, out = run_compare(capsys, sweep, failed)
    assert code == cmp.EXIT_REGRESSION, out
    assert out.splitlines()[0].startswith("gbench compare: nothing was compared: NEW has 1 row(s), the baseline 0")
    code, out = run_compare(capsys, failed, sweep)
    assert code == cmp.EXIT_REGRESSION and "nothing was compared" in out.splitlines()[0]


@pytest.mark.slow
def test_different_protocols_are_said_first(sweep, tmp_path, capsys):
    def other(record):
        record["backend"]["name"] = "gaussian-v2"
        for ev in record["evaluations"]:
            ev["num_samples"] = 999

    changed = variant(sweep, tmp_path / "other", other)
    code, out = run_compare(capsys, changed, sweep)
    assert code == cmp.EXIT_FINGERPRINT, out
    first = out.splitlines()[0]
    assert first.startswith("gbench compare: protocols differ") and "num_samples: 200 vs 999" in first, first


@pytest.mark.slow
def test_the_baseline_is_read_from_typed_cells_of_leaderboard_json(sweep, tmp_path, capsys):
    """A report folder reads as its leaderboard.json: each cell's own direction decides, so a
    cell whose recorded direction is flipped flips the verdict without any declaration."""
    committed = tmp_path / "baseline"
    shutil.copytree(sweep / "report", committed)
    side = cmp.read_side(committed)
    assert side.kind == "json" and side.path.name == "leaderboard.json"
    assert side.rows and all(isinstance(c, cmp.Cell) for r in side.rows for c in r.metrics.values())
    assert cmp.read_side(sweep).rows[0].metrics == side.rows[0].metrics  # runs and their report read alike
    code, out = run_compare(capsys, sweep, committed)
    assert code == cmp.EXIT_OK and "leaderboard.json" in out, out
    doc = json.loads((committed / "leaderboard.json").read_text())
    cell = doc["tables"][0]["rows"][0]["metrics"]["reverse_kl"]
    assert cell["better"] == "lower"
    cell["better"], cell["mean"] = "higher", cell["mean"] * 2  # the baseline was "better" at twice the value
    (committed / "leaderboard.json").write_text(json.dumps(doc))
    code, out = run_compare(capsys, sweep, committed)
    assert code == cmp.EXIT_REGRESSION and "reverse_kl" in next(ln for ln in out.splitlines() if "REGRESSION" in ln)


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["=1+1", "@SUM(A1)", "n/a"])
def test_a_formula_or_text_cell_in_the_baseline_is_refused(sweep, tmp_path, cell):
    """A CSV cell with a spreadsheet formula or text is not 'not measured' (that would pass a worse
    run): exit 2, one line naming the line, the column and the fix."""
    lines = (sweep / "report" / "leaderboard.csv").read_text().splitlines()
    header_at = next(i for i, ln in enumerate(lines) if not ln.startswith("#"))
    header = lines[header_at].split(",")
    col = header.index("reverse_kl_mean")
    import csv as _csv
    import io as _io
    row = next(_csv.reader(_io.StringIO(lines[header_at + 1])))
    row[col] = cell
    buf = _io.StringIO()
    _csv.writer(buf, lineterminator="").writerow(row)
    lines[header_at + 1] = buf.getvalue()
    bad = tmp_path / "leaderboard.csv"
    bad.write_text("\n".join(lines) + "\n")
    r = subprocess.run(GBENCH + ["compare", str(sweep), str(bad)], capture_output=True, text=True, timeout=300)
    assert r.returncode == cmp.EXIT_BAD_INPUT, r.stdout + r.stderr
    msg = r.stderr.strip().splitlines()
    assert len(msg) == 1 and "reverse_kl_mean" in msg[0] and "not a number" in msg[0] and "gbench report" in msg[0]
    assert "Traceback" not in r.stderr


def test_a_malformed_leaderboard_json_is_refused(tmp_path, capsys):
    cases = {"not_json": "{", "no_tables": "{}", "text_mean": json.dumps(
        {"tables": [{"protocol_fingerprint": {}, "rows": [
            {"backend": "b", "metrics": {"fid": {"mean": "=2*3", "better": "lower"}}}]}]}),
        "bad_direction": json.dumps({"tables": [{"protocol_fingerprint": {}, "rows": [
            {"backend": "b", "metrics": {"fid": {"mean": 1.0, "better": "up"}}}]}]})}
    for name, text in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(text)
        code, out = run_compare(capsys, path, path)
        assert code == cmp.EXIT_BAD_INPUT and out.startswith("gbench compare: error: ") and name + ".json" in out, out
        assert "gbench report" in out and len(out.strip().splitlines()) == 1


def test_an_output_path_equal_to_an_input_is_refused(tmp_path, capsys):
    doc = {"tables": [{"protocol_fingerprint": {"n": 1}, "rows": [
        {"backend": "b", "config": "", "budget": "", "sampler": "", "metrics": {"fid": {"mean": 1.0, "better": "lower"}}}]}]}
    base = tmp_path / "leaderboard.json"
    base.write_text(json.dumps(doc))
    before = base.read_bytes()
    for option in ("--out", "--json"):
        code, out = run_compare(capsys, base, base, option, base)
        assert code == cmp.EXIT_BAD_INPUT and f"{option} " in out and "one of the inputs" in out, out
        assert base.read_bytes() == before
    code, out = run_compare(capsys, base, base, "--json", tmp_path / "compare.json")
    assert code == cmp.EXIT_OK, out
