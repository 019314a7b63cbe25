"""`gbench report` on run folders made by someone else: nothing in them runs code, reads files
outside them, writes outside the output folder or leaks markup/formulas into the outputs."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from generative_bench.records import SCHEMA

GBENCH = [sys.executable, "-m", "generative_bench"]
SCRIPT = "<script>alert(1)</script>"
FORMULA = '=HYPERLINK("http://x")'
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

HOSTILE_CONFIG = """\
model:
  name: evil
data:
  name: ring8
  source:
    _target_: generative_bench.io.atomic_write_text
    path: {pwned}
    text:
      _target_: builtins.exec
      _args_: ["open({pwned2!r}, 'w').write('x')"]
    extra:
      _target_: os.system
      _args_: ["touch {pwned3}"]
"""


def _files(root: Path, skip: Path) -> set[str]:
    """Every file, folder and link below ``root`` (links not followed), minus ``skip``."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d != skip]
        found |= {str(here / n) for n in dirnames + filenames}
    return found


def _toy_eval(samples_file, comparable=True, warnings=(), **extra):
    return {"sampler": {"name": "ddpm", "settings": {}}, "num_samples": 64,
            "metrics": {"modes": 8, "high_quality": 0.9, "reverse_kl": 0.01},
            "protocol": {"reference": {"dataset": "ring8", "examples": 1000}, "features": {},
                         "metric_settings": {"hq_std": 3}},
            "comparable": comparable, "warnings": list(warnings),
            "timings": {"sample_images_per_s": 1e4}, "samples_file": samples_file, **extra}


def _write_run(root: Path, name: str, backend: str, evaluations, config_text: str, status="completed",
               overrides=(), seed=0, error=None) -> Path:
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    (run / "samples").mkdir()
    (run / "config.yaml").write_text(config_text)
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {json.dumps(o)}\n" for o in overrides))
    (run / "train_log.csv").write_text("step,loss\n1,0.5\n2,0.4\n")
    record = {
        "schema": SCHEMA, "status": status, "error": error, "run_dir": "/etc", "run_name": f"../../{SCRIPT}",
        "stage": "done", "seed": seed, "overrides": list(overrides), "command": f"gbench {SCRIPT}",
        "backend": {"name": backend, "family": "diffusion", "class": SCRIPT, "parameters": 10,
                    "data_shape": [2], "nll_defined": True},
        "data": {"dataset": "ring8", "name": "ring8", "modes": 8, "radius": 1.0, "std": 0.01, "split": "train",
                 "subset": None, "examples": 1000},
        "train": {"steps": 2, "images_seen": 128, "wall_s": 1.0, "budget": {"max_steps": 2}},
        "nll": {"defined": True, "bpd": -1.5, "bound": f"vlb {SCRIPT}"},
        "evaluations": evaluations,
        "environment": {"device": "cpu", "device_name": SCRIPT},
        "config": {"data": {"source": {"_target_": "generative_bench.io.atomic_write_text",
                                       "path": str(root / "pwned_from_record.txt"), "text": "x"}}},
    }
    (run / "results.json").write_text(json.dumps(record))
    return run


@pytest.fixture
def hostile(tmp_path):
    """A folder of hostile runs plus files beside it that the report must never touch."""
    outside = tmp_path / "outside.npz"
    np.savez(outside, np.full((16, 8, 8, 3), 7, np.uint8))
    from PIL import Image

    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "outside_grid.png")
    (tmp_path / "secret.log").write_text("step,loss\n1,SECRET_LOG_LINE\n")
    root = tmp_path / "runs"
    cfg = HOSTILE_CONFIG.format(pwned=tmp_path / "pwned.txt", pwned2=str(tmp_path / "pwned2.txt"),
                                pwned3=tmp_path / "pwned3.txt")
    overrides = [f"model={SCRIPT}", FORMULA, "+a|b=1", "data.x=../../evil", "[click](http://evil.example)"]
    hidden = [f"{SCRIPT}\n{FORMULA}\n\\input{{/etc/passwd}}"]
    _write_run(root, "a", SCRIPT, [_toy_eval("../../outside.npz", comparable=False, warnings=hidden)], cfg,
               overrides=overrides)
    _write_run(root, "b", FORMULA, [_toy_eval(str(outside))], cfg, overrides=overrides)
    c = _write_run(root, "c", "../../evil|x", [_toy_eval("samples/link.npz", grid_file="../../outside_grid.png")],
                   cfg, overrides=overrides)
    (c / "samples" / "link.npz").symlink_to(outside)
    (c / "train_log.csv").unlink()
    (c / "train_log.csv").symlink_to(tmp_path / "secret.log")
    ok = _write_run(root, "d", "-cmd|x", [_toy_eval("samples/default.npz")], cfg, overrides=overrides)
    np.savez(ok / "samples" / "default.npz", np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32))
    _write_run(root, "e", "failed", [], cfg, status="failed", overrides=overrides, seed="=1+1",
               error={"type": "@SUM(A1)", "message": f"{SCRIPT} | -2+3", "stage": "train"})
    # a results.json that is a link to a record elsewhere, and an unfinished job whose log links out
    foreign = tmp_path / "foreign"
    _write_run(foreign, "x", "FOREIGN_MARKER", [_toy_eval("samples/default.npz")], cfg)
    (root / "f").mkdir()
    (root / "f" / "results.json").symlink_to(foreign / "x" / "results.json")
    (root / "g" / ".hydra").mkdir(parents=True)
    (root / "g" / "train.log").symlink_to(tmp_path / "secret.log")
    return root


def _csv_cells(path: Path) -> list[str]:
    lines = [ln for ln in path.read_text().splitlines(keepends=True) if not ln.startswith("#")]
    return [cell for row in csv.reader(io.StringIO("".join(lines))) for cell in row]


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def test_hostile_run_folder_is_reported_safely(hostile, tmp_path):
    out = tmp_path / "report"
    before = _files(tmp_path, out)
    r = subprocess.run(GBENCH + ["report", str(hostile), "--out", str(out)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert _files(tmp_path, out) == before  # nothing created, moved or removed outside --out
    for name in ("pwned.txt", "pwned2.txt", "pwned3.txt", "runs/pwned_from_record.txt"):
        assert not (tmp_path / name).exists(), name
    for p in out.rglob("*"):
        assert p.resolve().is_relative_to(out.resolve()) and not p.is_symlink()

    html = (out / "index.html").read_text()
    md = (out / "leaderboard.md").read_text()
    tex = (out / "leaderboard.tex").read_text()
    assert "<script" not in html.lower() and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert not re.search(r"(?<!\\)<script", md.lower()) and "\\<script>" in md  # an escaped "<": no raw HTML
    assert "](http://evil.example)" not in md
    assert all(t.startswith("plots/") for t in re.findall(r"\]\(([^)]*)\)", md))
    assert not any(ln.lstrip().startswith("\\input") for ln in tex.splitlines())
    assert "\\input{/etc" not in "\n".join(ln for ln in tex.splitlines() if not ln.startswith("%"))

    # the paths outside the run folders were refused and the refusal is shown
    for text in (md, html):
        assert text.count("is not inside the run folder; ignored") == 4
        for shown in ("../../outside.npz", "samples/link.npz", "../../outside_grid.png"):
            assert shown in text
    samples = {p.name for p in (out / "plots").glob("*_samples_*.png")}
    assert samples == {"P1_samples_cmd_x.png"}  # only the sample file inside its run folder
    assert "SECRET_LOG_LINE" not in html + md and "FOREIGN_MARKER" not in html + md
    assert "outside its run folder" in md
    assert all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*\.png", p.name) for p in (out / "plots").iterdir())

    # no spreadsheet formula in any CSV string cell; the hostile cells are there, quoted
    cells = _csv_cells(out / "leaderboard.csv") + _csv_cells(out / "failed_runs.csv")
    bad = [c for c in cells if c.startswith(FORMULA_START) and not _is_number(c)]
    assert not bad, bad
    assert "'" + FORMULA in cells and "'=1+1" in cells and any(c.startswith("'-cmd") for c in cells)
    assert not any(ln.startswith(FORMULA_START) for ln in (out / "leaderboard.csv").read_text().splitlines())


def test_toy_density_comes_from_the_description_only(hostile):
    from generative_bench.data.toy import RingOfGaussians
    from generative_bench.reporting.plots import toy_density

    record = json.loads((hostile / "d" / "results.json").read_text())
    density = toy_density(record)
    assert isinstance(density, RingOfGaussians) and density.num_modes == 8
    assert toy_density({"data": {"name": "generative_bench.io.atomic_write_text", "path": "x"}}) is None
    assert toy_density({"data": {"name": "ring8", "modes": 10**9}}) is None
    assert toy_density({"config": record["config"]}) is None
    assert not (hostile / "pwned_from_record.txt").exists()


def test_contained_path_and_slug(tmp_path):
    from generative_bench.reporting.collect import contained_path
    from generative_bench.reporting.plots import slug
    from generative_bench.reporting.render import csv_safe, md_text

    run = tmp_path / "run"
    (run / "samples").mkdir(parents=True)
    (run / "samples" / "ok.npz").write_bytes(b"")
    (run / "samples" / "out.npz").symlink_to(tmp_path / "elsewhere.npz")
    assert contained_path(run, "samples/ok.npz") == (run / "samples" / "ok.npz").resolve()
    for bad in ("../x.npz", "samples/../../x.npz", str(run / "samples" / "ok.npz"), "/etc/passwd",
                "samples/out.npz", "", ".", "a\x00b", None, 3, ["samples/ok.npz"]):
        assert contained_path(run, bad) is None, bad
    for text in ("../../evil", "a/b", "..", ".hidden", "x\x00y", SCRIPT, "/abs/path"):
        s = slug(text)
        assert "/" not in s and ".." not in s and "\x00" not in s and not s.startswith(".") and s
    assert slug("gan") == "gan"
    assert csv_safe("=1+1") == "'=1+1" and csv_safe("@x") == "'@x" and csv_safe("\tx") == "'\tx"
    assert csv_safe(-1.5) == -1.5 and csv_safe("gan") == "gan"
    assert md_text("<b>&amp; & x</b>") == "\\<b>\\&amp; & x\\</b>"
    assert md_text("> quote") == "\\> quote" and md_text("x >= 1") == "x >= 1"
    assert md_text("\\<b>") == "\\\\\\<b>"  # a backslash of the record stays a backslash


@pytest.fixture
def small_run(tmp_path):
    return _write_run(tmp_path / "runs", "d", "ddpm", [_toy_eval(None)], "seed: 0\n")


def test_out_that_is_a_file_fails_cleanly(small_run, tmp_path):
    target = tmp_path / "taken.txt"
    target.write_text("keep me")
    for out in (target, target / "sub"):
        before = _files(tmp_path, tmp_path / "none")
        r = subprocess.run(GBENCH + ["report", str(small_run), "--out", str(out)], capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 2, r.stderr
        assert "Traceback" not in r.stderr
        assert r.stderr.startswith("gbench report: error: --out ") and str(out) in r.stderr
        assert "pass a folder" in r.stderr
        assert _files(tmp_path, tmp_path / "none") == before and target.read_text() == "keep me"


def test_unwritable_out_and_linked_default_out_fail_cleanly(small_run, tmp_path, monkeypatch, capsys):
    import generative_bench.reporting as reporting
    from generative_bench.cli import report as cli

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "ro" / "leaderboard.md"))

    monkeypatch.setattr(reporting, "build_report", denied)
    assert cli.report_main([str(small_run), "--out", str(tmp_path / "ro")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gbench report: error: cannot write") and "permission denied" in err
    assert "ro/leaderboard.md" in err and "--out" in err

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (small_run / "report").symlink_to(elsewhere)
    assert cli.report_main([str(small_run)]) == 2
    err = capsys.readouterr().err
    assert "symbolic link" in err and "--out" in err and not any(elsewhere.iterdir())

    (small_run / "report").unlink()
    monkeypatch.undo()
    (tmp_path / "empty").mkdir()  # an InputError from collecting: one line, exit code 2
    assert cli.report_main([str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.startswith("gbench report: error: no results.json")


def test_weights_are_checked_against_the_full_sha256(tmp_path, monkeypatch):
    from generative_bench.errors import WeightsUnavailableError
    from generative_bench.evaluation import weights as wts

    f = tmp_path / wts.FILENAME
    f.write_bytes(b"some weights")
    digest = hashlib.sha256(b"some weights").hexdigest()
    same_prefix = digest[:8] + ("0" if digest[8] != "0" else "1") + digest[9:]
    monkeypatch.setattr(wts, "KNOWN_SHA256", same_prefix)  # the 8-digit prefix matches, the rest does not
    with pytest.raises(WeightsUnavailableError, match=f"has sha256 {digest}.*{same_prefix}.*corrupt"):
        wts.verify(f)
    monkeypatch.setattr(wts, "KNOWN_SHA256", digest)
    assert wts.verify(f) == digest


def test_a_report_over_a_two_megabyte_backend_name_takes_the_time_of_a_normal_one(tmp_path):
    """Names from records are bounded before they reach a table, a legend or a file name."""
    import time

    from generative_bench.reporting import build_report
    from tests.test_reporting_report import _evaluation, write_run

    def build(name: str, where):
        write_run(where / "runs", "0_x", name, "gan", 0,
                  [_evaluation(name, {}, {"fid": 40.0, "precision": 0.5, "recall": 0.4}, tag="a")], {"defined": False})
        t0 = time.perf_counter()
        paths = build_report([where / "runs"], where / "out")
        return time.perf_counter() - t0, paths

    build("warm-up", tmp_path / "w")  # imports and font caches out of the timing
    normal_s, _ = build("gan", tmp_path / "a")
    hostile_s, paths = build("g" * 2_000_000, tmp_path / "b")
    assert hostile_s < 2 * normal_s + 1.0, (normal_s, hostile_s)
    md = paths["md"].read_text()
    assert "g" * 79 + "…" in md and "g" * 81 not in md and len(md) < 200_000
