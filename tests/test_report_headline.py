"""The report's headline: the operating point chosen per backend, the caption generated from the
numbers, the NOT-comparable warning said once, leaderboard.json and the booktabs LaTeX table."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from generative_bench.reporting import build_report, collect_runs
from generative_bench.reporting.leaderboard import (NOT_COMPARABLE, build_leaderboard, headline, headline_caption,
                                                    headline_display, is_default_evaluation)
from tests.test_reporting_report import _evaluation, _md_rows, write_run

ROOT = Path(__file__).resolve().parents[1]
TOY = {"toy_modes": 8, "toy_high_quality": 0.9, "toy_reverse_kl": 0.01, "toy_precision": 0.9, "toy_recall": 0.9}


def _set_default_sampling(run: Path, sampling: dict | None) -> None:
    """Record ``sampling`` as the model's default sampler settings (config.model.sampling)."""
    path = run / "results.json"
    record = json.loads(path.read_text())
    if sampling is None:
        record["config"]["model"].pop("sampling", None)
    else:
        record["config"]["model"]["sampling"] = sampling
    path.write_text(json.dumps(record))


def _ddpm_evals(**fids):
    """ddpm evaluations named ``<method><steps>`` with the given FIDs, NFE = steps, in that order."""
    out = []
    for tag, fid in fids.items():
        method, steps = re.fullmatch(r"([a-z]+)(\d+)", tag).groups()
        out.append(_evaluation("ddpm", {"method": method, "steps": int(steps), "eta": 0.0, "clip_denoised": True},
                               {"fid": fid, "precision": 0.5, "recall": 0.5}, tag=tag, nfe=int(steps),
                               comparable=True))
    return out


def _headline_rows(root: Path) -> pd.DataFrame:
    board = build_leaderboard(collect_runs(root))
    assert len(board.tables) == 1
    return headline(board.tables[0]).frame


def test_headline_is_the_models_default_setting_not_the_best_one(tmp_path):
    root = tmp_path / "runs"
    # the default (ddim 50) is the second evaluation and not the best FID: it is still the headline
    run = write_run(root, "0_ddpm", "ddpm", "diffusion", 0, _ddpm_evals(ancestral1000=10.0, ddim50=30.0, ddim10=60.0),
                    {"defined": True, "bpd": 4.0, "bound": "vlb"})
    _set_default_sampling(run, {"method": "ddim", "steps": 50, "eta": 0.0, "clip_denoised": None})
    h = _headline_rows(root)
    assert len(h) == 1 and h.iloc[0]["sampler"].endswith("method=ddim, steps=50)") and h.iloc[0]["rule"] == "default"
    assert h.iloc[0]["fid_mean"] == 30.0
    col = headline_display(headline(build_leaderboard(collect_runs(root)).tables[0])).frame
    setting = next(c for c in col.columns if c.startswith("Setting"))
    assert col[setting].iloc[0] == "ddim, clip_denoised=True, eta=0.0, steps=50"  # no † for the default


def test_headline_falls_back_to_best_quality_at_the_largest_nfe(tmp_path):
    root = tmp_path / "runs"
    run = write_run(root, "0_ddpm", "ddpm", "diffusion", 0,
                    _ddpm_evals(ddim10=5.0, ancestral100=40.0, ddim100=35.0, ancestral50=20.0),
                    {"defined": True, "bpd": 4.0, "bound": "vlb"})
    _set_default_sampling(run, {"method": "ddim", "steps": 999})  # no evaluation at the default
    board = build_leaderboard(collect_runs(root))
    h = headline(board.tables[0])
    row = h.frame.iloc[0]
    assert row["rule"] == "fallback" and row["nfe"] == 100 and row["fid_mean"] == 35.0  # lower FID wins at NFE 100
    disp = headline_display(h)
    setting = next(c for c in disp.frame.columns if c.startswith("Setting"))
    assert disp.frame[setting].iloc[0].endswith(" †")
    rule_note = disp.notes[int(re.search(r"\[(\d+)\]", setting).group(1)) - 1]
    assert "default sampler setting" in rule_note and "largest NFE" in rule_note and "marked †" in rule_note


def test_default_needs_neutral_knobs_and_a_record_without_default_uses_its_first_evaluation(tmp_path):
    root = tmp_path / "runs"
    guided = _evaluation("ddpm", {"method": "ddim", "steps": 50, "guidance_scale": 3.0}, {"fid": 8.0},
                         tag="g3", nfe=100, comparable=True)
    guided["sampler"]["knobs"] = {"guidance_scale": {"value": 3.0, "neutral": 1.0}}
    plain = _evaluation("ddpm", {"method": "ddim", "steps": 50, "guidance_scale": 1.0}, {"fid": 20.0},
                        tag="g1", nfe=50, comparable=True)
    plain["sampler"]["knobs"] = {"guidance_scale": {"value": 1.0, "neutral": 1.0}}
    run = write_run(root, "0_ddpm", "ddpm", "diffusion", 0, [guided, plain], {"defined": False})
    _set_default_sampling(run, {"method": "ddim", "steps": 50})
    other = write_run(root, "1_vae", "vae", "vae", 0,
                      [_evaluation("vae", {"temperature": 0.8}, {"fid": 50.0}, tag="t08", comparable=True),
                       _evaluation("vae", {"temperature": 1.0}, {"fid": 40.0}, tag="t10", comparable=True)],
                      {"defined": True, "bpd": 5.0})
    _set_default_sampling(other, None)
    h = _headline_rows(root).set_index("backend")
    assert h.loc["ddpm", "fid_mean"] == 20.0 and h.loc["ddpm", "rule"] == "default"  # the guided point is not it
    assert h.loc["vae", "fid_mean"] == 50.0 and h.loc["vae", "rule"] == "default"  # first evaluation of the run
    rows = [r for r in build_leaderboard(collect_runs(root)).tables[0].rows]
    assert [is_default_evaluation(r) for r in rows] == [False, True, True, False]


def _three_backends(root: Path) -> None:
    """gan: best precision and speed; vae and ddpm tie on FID (lower is better); iddpm: best recall and NLL."""
    names = {"gan": "GAN", "vae": "VAE", "ddpm": "DDPM", "iddpm": "improved DDPM"}  # as the presets declare them
    specs = [("0_gan", "gan", "gan", {"fid": 40.0, "precision": 0.9, "recall": 0.1}, 5000.0, {"defined": False}),
             ("1_vae", "vae", "vae", {"fid": 20.004, "precision": 0.5, "recall": 0.3}, 900.0,
              {"defined": True, "bpd": 5.0}),
             ("2_ddpm", "ddpm", "diffusion", {"fid": 20.0, "precision": 0.6, "recall": 0.4}, 2.0,
              {"defined": True, "bpd": 4.0}),
             ("3_iddpm", "iddpm", "diffusion", {"fid": 25.0, "precision": 0.7, "recall": 0.6}, 1.0,
              {"defined": True, "bpd": 3.5})]
    for job, model, family, metrics, ips, nll in specs:
        run = write_run(root, job, model, family, 0, [_evaluation(model, {}, metrics, ips=ips)], nll,
                        display=names[model])
        _set_default_sampling(run, {})


def test_caption_names_the_best_backend_per_metric_with_ties_and_lower_is_better(tmp_path):
    root = tmp_path / "runs"
    _three_backends(root)
    board = build_leaderboard(collect_runs(root))
    h = headline(board.tables[0])
    assert list(h.frame["backend"]) == ["gan", "vae", "ddpm", "iddpm"]  # the order the runs were made
    caption = headline_caption(h)
    assert caption == ("GAN: best precision and sampling speed; VAE: best FID (tie); DDPM: best FID (tie); "
                       "improved DDPM: best recall and NLL.")
    # the best value of each column is bold in the headline table, the FID tie in both rows
    disp = headline_display(h).frame
    fid = next(c for c in disp.columns if c.startswith("FID"))
    assert [v.startswith("\x01") for v in disp[fid]] == [False, True, True, False]
    nll = next(c for c in disp.columns if c.startswith("NLL"))
    assert disp[nll].iloc[3] == "\x013.500\x02" and disp[nll].iloc[0].startswith("—")


def test_single_warning_before_the_first_table_in_html_and_markdown(tmp_path):
    root = tmp_path / "runs"
    _three_backends(root)
    paths = build_report([root], tmp_path / "rep", formats=("md", "html"), plots=False)
    md, html = paths["md"].read_text(), paths["html"].read_text()
    first_md_table = next(i for i, ln in enumerate(md.splitlines()) if ln.startswith("|"))
    before = "\n".join(md.splitlines()[:first_md_table])
    assert before.count(NOT_COMPARABLE) == 1 and md.count(NOT_COMPARABLE) >= 1
    assert html[:html.index("<table")].count(NOT_COMPARABLE) == 1
    assert '<table class="headline" id="headline-P1"><caption><b>Headline.</b> GAN: best precision' in html
    # headline first, the full sweep folded below it
    assert html.index('id="headline-P1"') < html.index("Full sweep tables") < html.index("<details><summary>gan")
    assert md.index("**Headline.**") < md.index("## Full sweep tables") < md.index("### P1 · gan — 1 setting")
    header = next(ln for ln in md.splitlines() if ln.startswith("| Backend"))
    assert "Training" in header and "NFE" in header and "Sampling img/s" in header
    assert "Comparable" not in header and "Budget" not in header


def test_committed_cifar_sweep_says_not_comparable_once(tmp_path):
    """The CIFAR preset's records (reports/cifar_cpu_hour) carry the warning in every evaluation."""
    src = ROOT / "reports" / "cifar_cpu_hour"
    if not any(src.glob("*/results.json")):
        pytest.skip("reports/cifar_cpu_hour has no run records")
    paths = build_report([src], tmp_path / "rep", formats=("md", "html", "json"), plots=False)
    md, html = paths["md"].read_text(), paths["html"].read_text()
    lines = md.splitlines()
    before = "\n".join(lines[:next(i for i, ln in enumerate(lines) if ln.startswith("|"))])
    assert before.count(NOT_COMPARABLE) == 1
    assert html[:html.index("<table")].count(NOT_COMPARABLE) == 1
    # the extractor in one line: name, 12 hex digits of the weights hash, comparable no
    assert re.search(r"\*\*Features:\*\* cifar10-resnet · weights [0-9a-f]{12} · comparable: no$", md, re.M)
    assert re.search(r"<li><b>Features:</b> cifar10-resnet · weights [0-9a-f]{12} · comparable: no</li>", html)
    assert "<details class=\"fingerprint\"><summary>Full protocol fingerprint</summary>" in html
    rows = _md_rows(md, "| Backend")
    assert [r["Backend"] for r in rows] == ["gan", "vae", "ddpm", "iddpm"]
    nfe = next(k for k in rows[0] if k.startswith("NFE"))
    assert all(r[nfe] == "n/a" for r in rows)  # these records predate the sampler's recorded NFE
    assert all(r[next(k for k in r if k.startswith("Training"))] == "10.0 min" for r in rows)  # a time budget
    doc = json.loads(paths["json"].read_text())
    table = doc["tables"][0]
    assert doc["warning"].startswith("⚠ " + NOT_COMPARABLE) and table["comparable"] is False
    assert [r["backend"] for r in table["headline"]["rows"]] == ["gan", "vae", "ddpm", "iddpm"]
    assert table["headline"]["caption"] and "default sampler setting" in table["headline"]["rule"]
    assert len(table["rows"]) == 4 and table["fingerprint_summary"]["Features"].startswith("cifar10-resnet")
    assert "weights_sha256" in json.dumps(table["protocol_fingerprint"])
    assert table["rows"][0]["metrics"]["fid"]["label"] == "FD_cifar10-resnet"


def test_latex_headline_is_a_booktabs_table_that_compiles(tmp_path):
    root = tmp_path / "runs"
    _three_backends(root)
    paths = build_report([root], tmp_path / "rep", formats=("tex",), plots=False)
    tex = paths["tex"].read_text()
    first = tex[tex.index("\\begin{table}"):tex.index("\\end{table}")]
    assert "\\label{tab:headline-P1}" in first and "GAN: best precision and sampling speed" in first
    for rule in ("\\toprule", "\\midrule", "\\bottomrule"):
        assert rule in first
    assert tex.index("tab:headline-P1") < tex.index("Full sweep, gan")
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed: the LaTeX source was checked, not compiled")
    doc = tmp_path / "rep" / "paper.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage{graphicx}\n"
                   "\\begin{document}\n\\input{leaderboard.tex}\n\\end{document}\n")
    r = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=doc.parent,
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout[-3000:]
    assert (doc.parent / "paper.pdf").stat().st_size > 0
