"""Report building from real run folders written to disk (records, configs, logs, samples)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from generative_bench.errors import InputError
from generative_bench.records import SCHEMA
from generative_bench.reporting import build_report, collect_runs
from generative_bench.reporting.leaderboard import NOT_COMPARABLE, build_leaderboard, display_frame

INCEPTION = {"name": "inception-v3-tf", "weights": "pt_inception-2015-12-05", "pretrained": False,
             "weights_sha256": "0" * 64, "dims": 2048}
WARNING = "random-init Inception weights (the pretrained file is unavailable)"


def _evaluation(name, settings, metrics, n=500, comparable=False, tag="default", ips=100.0, nfe=1):
    return {"sampler": {"name": name, "settings": settings, "nfe": nfe}, "num_samples": n, "metrics": metrics,
            "protocol": {"reference": {"dataset": "cifar10", "split": "train", "examples": 1000, "seed": 3},
                         "features": dict(INCEPTION), "metric_settings": {"kid_subsets": 100, "pr_k": 3},
                         "seed": 0},
            "comparable": comparable, "warnings": [WARNING] if not comparable else [],
            "timings": {"sample_s": n / ips, "sample_images_per_s": ips, "features_s": 1.0, "metrics_s": 0.1},
            "samples_file": f"samples/{tag}.npz"}


def write_run(root: Path, job: str, model: str, family: str, seed: int, evaluations, nll, status="completed",
              error=None, log_cols=("loss",), toy=False, steps=200, display=None):
    """One Hydra job folder with everything a real run writes."""
    run = root / job
    (run / ".hydra").mkdir(parents=True)
    (run / "samples").mkdir()
    overrides = [f"model={model}", f"seed={seed}"]
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    data_cfg = ({"name": "ring8", "shape": [2], "source": {"_target_": "generative_bench.data.toy.RingOfGaussians",
                                                           "size": 1000}}
                if toy else {"name": "cifar10", "shape": [3, 32, 32], "subset": 1000})
    (run / "config.yaml").write_text(
        f"model:\n  name: {model}\n  backend:\n    num_timesteps: 1000\n"
        + "data:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in data_cfg.items()) + f"seed: {seed}\n")
    rng = np.random.default_rng(seed)
    rows = ["step,images_seen,wall_s,lr,images_per_s," + ",".join(log_cols)]
    for s in range(1, steps + 1, 20):
        rows.append(f"{s},{s * 64},{s * 0.1:.2f},0.0002,640," + ",".join(f"{rng.random():.4f}" for _ in log_cols))
    (run / "train_log.csv").write_text("\n".join(rows) + "\n")
    for ev in evaluations:
        arr = (rng.normal(size=(64, 2)).astype(np.float32) if toy
               else rng.integers(0, 256, size=(16, 32, 32, 3), dtype=np.uint8))
        np.savez(run / ev["samples_file"], arr)
    record = {
        "schema": SCHEMA, "status": status, "error": error, "run_dir": str(run), "run_name": job, "stage": "done",
        "seed": seed, "overrides": overrides,
        "backend": {"name": model, "family": family, "class": f"x.{family}", "parameters": 1000,
                    "data_shape": [2] if toy else [3, 32, 32], "nll_defined": family != "gan",
                    **({"display_name": display} if display else {})},
        "data": ({"dataset": "ring8", "split": "train", "subset": None, "examples": 1000} if toy else
                 {"dataset": "cifar10", "variant": "JPEG re-encoding (shared/datasets)", "split": "train",
                  "subset": 1000, "subset_seed": 0, "examples": 1000}),
        "train": {"steps": steps, "images_seen": steps * 64, "wall_s": 60.0 + seed, "stopped_by": "max_steps",
                  "budget": {"max_steps": steps}},
        "nll": nll, "evaluations": evaluations,
        "environment": {"device": "cpu", "device_name": "cpu (test, 2 cores)"},
        "wall_times": {"train_s": 60.0}, "config": {"model": {"name": model, "backend": {"num_timesteps": 1000}}},
    }
    (run / "results.json").write_text(json.dumps(record))
    return run


@pytest.fixture
def sweep(tmp_path):
    """2 backends x 2 seeds + one failed job + one unfinished job folder, as a Hydra multirun."""
    root = tmp_path / "runs" / "sweep_2026-11-23_10-00-00"
    gan_fid, ddpm_fid = {0: 50.0, 1: 54.0}, {0: 30.0, 1: 31.0}
    for i, seed in enumerate((0, 1)):
        write_run(root, f"{i}_model=gan,seed={seed}", "gan", "gan", seed,
                  [_evaluation("gan", {}, {"fid": gan_fid[seed], "is_mean": 3.0 + seed, "is_std": 0.1,
                                           "kid_mean": 0.040 + 0.002 * seed, "kid_std": 0.001,
                                           "precision": 0.5, "recall": 0.2 + 0.1 * seed}, ips=5000.0)],
                  {"defined": False, "reason": "the GAN defines no likelihood"},
                  log_cols=("d_loss", "g_loss", "d_real", "d_fake"))
        write_run(root, f"{i + 2}_model=ddpm,seed={seed}", "ddpm", "diffusion", seed,
                  [_evaluation("ddpm", {}, {"fid": ddpm_fid[seed], "is_mean": 5.0, "kid_mean": 0.02,
                                            "precision": 0.6, "recall": 0.5}, ips=2.0, nfe=1000),
                   _evaluation("ddpm", {"respacing": "ddim10"}, {"fid": 45.0 + seed, "is_mean": 4.0, "kid_mean": 0.03,
                                                                 "precision": 0.55, "recall": 0.45},
                               tag="ddim10", ips=200.0, nfe=10)],
                  {"defined": True, "bpd": 3.9 + 0.2 * seed, "bpd_sem": 0.01,
                   "bound": "full variational bound (prior + KL terms + decoder), T=1000", "split": "test",
                   "examples": 256, "terms": {}})
    write_run(root, "4_model=ddpm,seed=2", "ddpm", "diffusion", 2, [], None, status="failed",
              error={"type": "NonFiniteLossError", "message": "loss became NaN at step 40", "stage": "train"})
    unfinished = root / "5_model=vae,seed=0"
    (unfinished / ".hydra").mkdir(parents=True)
    (unfinished / ".hydra" / "overrides.yaml").write_text("- model=vae\n- seed=0\n")
    (unfinished / "train.log").write_text("[INFO] building backend\n[ERROR] CUDA out of memory\n")
    return root


def _md_rows(md: str, header_prefix: str) -> list[dict[str, str]]:
    """Rows of the first Markdown table whose header starts with ``header_prefix``."""
    lines = md.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(header_prefix))
    cells = lambda ln: [c.strip() for c in ln.strip().strip("|").split("|")]  # noqa: E731
    header, out = cells(lines[start]), []
    for ln in lines[start + 2:]:
        if not ln.startswith("|"):
            break
        out.append(dict(zip(header, cells(ln))))
    return out


def _table_rows(board):
    assert len(board.tables) == 1
    f = board.tables[0].frame
    return {(r.backend, r.sampler): r for r in f.itertuples()}


def test_aggregation_mean_and_std_over_seeds(sweep):
    board = build_leaderboard(collect_runs([sweep]))
    rows = _table_rows(board)
    gan = rows[("gan", "gan (default)")]
    assert gan.n == 2 and gan.seeds == "0, 1"
    assert gan.fid_mean == pytest.approx(52.0) and gan.fid_std == pytest.approx(math.sqrt(8.0))
    assert gan.kid_mean == pytest.approx(41.0)  # shown x1e3
    ddpm = rows[("ddpm", "ddpm (default)")]
    assert ddpm.fid_mean == pytest.approx(30.5) and ddpm.fid_std == pytest.approx(math.sqrt(0.5))
    assert ddpm.nll_mean == pytest.approx(4.0) and ddpm.nll_std == pytest.approx(math.sqrt(0.02))
    assert ddpm.nfe == 1000 and rows[("ddpm", "ddpm (respacing=ddim10)")].nfe == 10 and gan.nfe == 1
    assert gan.nll_status == "undefined"
    disp = display_frame(board.tables[0]).frame
    fid_col = next(c for c in disp.columns if c.startswith("FID"))
    cells = dict(zip(disp["Sampler"], disp[fid_col]))
    assert cells["gan (default)"] == "52.00 ± 2.83"
    assert cells["ddpm (default)"] == "\x0130.50 ± 0.71\x02"  # best FID marked


def test_report_files_banner_failed_and_anchors(sweep, tmp_path):
    out = tmp_path / "report"
    paths = build_report([sweep], out, title="Test board")
    for key in ("md", "csv", "tex", "json", "html", "failed_csv"):
        assert paths[key].is_file() and paths[key].stat().st_size > 0, key
    md, tex, html = (paths[k].read_text() for k in ("md", "tex", "html"))
    csv_text = paths["csv"].read_text()

    # NOT-comparable banner in every output
    for text in (md, html, csv_text):
        assert NOT_COMPARABLE in text
    assert "NOT comparable to published figures" in tex and "\\caption{\\textbf{(!) NOT comparable" in tex
    assert md.index(NOT_COMPARABLE) < md.index("## P1")
    assert csv_text.startswith("# ⚠ " + NOT_COMPARABLE)
    frame = pd.read_csv(paths["csv"], skiprows=2)
    assert set(frame["comparable"]) == {False}
    assert frame.loc[frame["backend"] == "gan", "fid_mean"].iloc[0] == pytest.approx(52.0)
    assert "kid_x1e3_mean" in frame.columns
    assert frame.loc[frame["backend"] == "gan", "nll_bpd_mean"].isna().all()

    # GAN NLL: an em dash with the footnote, never 0 or NaN
    rows = _md_rows(md, "| Backend")
    gan_row = next(r for r in rows if r["Backend"].startswith("gan"))
    nll_cell = next(v for k, v in gan_row.items() if k.startswith("NLL"))
    assert nll_cell.startswith("—") and "nan" not in nll_cell.lower() and not nll_cell.startswith("0")
    marker = re.search(r"\[(\d+)\]", nll_cell).group(1)
    assert re.search(rf"^{marker}\. —: the GAN defines no likelihood", md, re.M)  # the record's own reason
    assert "the GAN defines no likelihood" in html and "---" in tex
    assert "**30.50 ± 0.71**" in md and "<b>30.50 ± 0.71</b>" in html and "\\textbf{30.50 $\\pm$ 0.71}" in tex
    assert "KID ×10³" in md and "full variational bound" in md

    # fingerprint: dataset variant, weights sha256 and pretrained flag
    assert "JPEG re-encoding" in md and "not the official CIFAR-10" in md
    assert "weights sha256: " + "0" * 64 in md and "NO (random initialisation)" in md

    # failed and unfinished runs listed with their messages
    failed = pd.read_csv(paths["failed_csv"])
    statuses = dict(zip(failed["run folder"].map(lambda p: Path(p).name), failed["status"]))
    assert statuses == {"4_model=ddpm,seed=2": "failed", "5_model=vae,seed=0": "unfinished"}
    for text in (md, html):
        assert "NonFiniteLossError: loss became NaN at step 40" in text
        assert "CUDA out of memory" in text and "no results.json" in text

    # anchors: a separate block after the measured tables, never inside them
    heading = "Published figures — for context only (different protocol, not measured here)"
    assert heading in md and heading in html
    block = md[md.index(heading):]
    measured = md[:md.index(heading)]
    assert "3.17" in block and "Ho, Jain & Abbeel 2020" in block and "21.7" in block
    assert "Ho, Jain & Abbeel" not in measured and "SNGAN" not in measured
    assert "SNGAN" not in csv_text and "Miyato" not in csv_text
    assert html.index('class="anchors"') > html.index("Failed and unfinished runs")

    # plots: valid PNG files for samples, trade-off, precision/recall and every training log
    names = {p.name for p in paths["plots"]}
    assert {"P1_samples_gan.png", "P1_samples_ddpm.png", "P1_quality_vs_nfe.png", "P1_precision_recall.png"} <= names
    assert sum(n.startswith("train_") for n in names) == 5  # 4 completed + the failed run's log
    for p in paths["plots"]:
        with Image.open(p) as im:
            im.verify()
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "plots/P1_quality_vs_nfe.png" in html and "Figures that could not be made" not in html
    assert "model=gan seed=0" in html  # the overrides that made each run


def test_protocols_are_not_mixed_and_toy_plots(tmp_path):
    root = tmp_path / "runs"
    write_run(root, "a", "gan", "gan", 0, [_evaluation("gan", {}, {"fid": 10.0}, n=500, comparable=True)],
              {"defined": False})
    write_run(root, "b", "gan", "gan", 1, [_evaluation("gan", {}, {"fid": 12.0}, n=1000, comparable=True)],
              {"defined": False})
    toy_metrics = {"toy_modes": 8, "toy_high_quality": 0.9, "toy_reverse_kl": 0.01, "toy_precision": 0.95,
                   "toy_recall": 0.9}
    toy_eval = {"sampler": {"name": "ddpm", "settings": {}, "nfe": 1000}, "num_samples": 64, "metrics": toy_metrics,
                "protocol": {"reference": {"dataset": "ring8", "examples": 1000}, "features": {},
                             "metric_settings": {"hq_std": 3}}, "comparable": True, "warnings": [],
                "timings": {"sample_images_per_s": 1e4}, "samples_file": "samples/default.npz"}
    write_run(root, "c", "ddpm", "diffusion", 0, [toy_eval], {"defined": True, "bpd": -1.5, "bound": "vlb"}, toy=True)
    out = tmp_path / "rep"
    paths = build_report([root], out, formats=("md", "csv"))
    assert "html" not in paths and "tex" not in paths
    md = paths["md"].read_text()
    assert len(re.findall(r"^## P\d+: ", md, re.M)) == 3 and NOT_COMPARABLE not in md
    board = build_leaderboard(collect_runs(root))
    assert sorted(len(t.frame) for t in board.tables) == [1, 1, 1]
    toy = next(t for t in board.tables if t.toy)
    assert {s.key for s in toy.metrics} == {"modes", "hq", "reverse_kl", "data_precision", "data_recall"}
    names = {p.name for p in paths["plots"]}
    toy_png = next(p for p in paths["plots"] if p.name == f"{toy.pid}_samples_ddpm.png")
    with Image.open(toy_png) as im:
        assert im.size[0] > 100
    assert f"{toy.pid}_quality_vs_nfe.png" in names


def test_collect_errors_and_unreadable_records(tmp_path):
    with pytest.raises(InputError, match="do not exist"):
        collect_runs([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no results.json"):
        collect_runs(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "results.json").write_text("{not json")
    col = collect_runs(tmp_path)
    assert [p.status for p in col.problems] == ["unreadable"] and "cannot be read" in col.problems[0].error
    with pytest.raises(InputError, match="unknown report format"):
        build_report([bad], tmp_path / "o", formats=("pdf",))


def test_nfe_config_variant_and_interrupted_runs(tmp_path):
    from generative_bench.reporting.collect import RunEntry, config_variant, network_evaluations

    # the number of network evaluations is what the sampler recorded, never guessed from settings
    diff = RunEntry(tmp_path, {"backend": {"family": "diffusion"}})
    ev = lambda settings, nfe=None: {"sampler": {"name": "x", "settings": settings, "nfe": nfe}}  # noqa: E731
    assert network_evaluations(diff, ev({"steps": 250}, 250)) == 250
    assert network_evaluations(diff, ev({"steps": 250})) is None
    assert network_evaluations(diff, ev({}, True)) is None
    overrides = ["model=ddpm", "seed=3", "hydra.run.dir=/x", "train.max_steps=500", "eval.num_samples=9",
                 "data.root=/d", "+model.backend.dropout=0.1", "train.lr_decay=linear"]
    assert config_variant(overrides) == "+model.backend.dropout=0.1 train.lr_decay=linear"

    root = tmp_path / "runs"
    write_run(root, "i", "vae", "vae", 0, [_evaluation("vae", {}, {"fid": 80.0})], {"defined": True, "bpd": 5.0},
              status="interrupted", error={"type": "KeyboardInterrupt", "message": "", "stage": "evaluate"})
    write_run(root, "ok", "vae", "vae", 1, [_evaluation("vae", {}, {"fid": 70.0})], {"defined": True, "bpd": 5.0})
    col = collect_runs(root)
    assert [r.run_dir.name for r in col.records] == ["ok"]
    board = build_leaderboard(col)
    assert board.tables[0].frame["fid_mean"].tolist() == [70.0]  # the interrupted run's numbers stay out
    row = board.failed.iloc[0]
    assert row["status"] == "interrupted" and row["stage"] == "evaluate"
    assert "KeyboardInterrupt" in row["error"] and "1 evaluation(s) recorded" in row["error"]


def test_domain_feature_tables_never_say_fid(tmp_path):
    """Scores made in a domain feature space are labelled FD_/KD_/CS_<extractor> in every output."""
    from generative_bench.evaluation.domain.naming import metric_names

    domain = {"name": "cifar10-resnet", "kind": "domain", "weights_sha256": "f" * 64, "pretrained": True,
              "comparable": False, "metric_names": metric_names("cifar10-resnet")}
    root = tmp_path / "runs"
    for i, (model, fid) in enumerate((("gan", 40.0), ("vae", 90.0))):
        ev = _evaluation(model, {}, {"fid": fid, "is_mean": 4.0, "kid_mean": 0.01, "precision": 0.5, "recall": 0.3})
        ev["protocol"]["features"] = dict(domain)
        ev["warnings"] = ["domain feature space cifar10-resnet: FD/KD/CS are not FID/KID/IS"]
        write_run(root, f"{i}_{model}", model, model, 0, [ev], {"defined": False})
    paths = build_report([root], tmp_path / "rep", formats=("md", "html"))
    md = paths["md"].read_text()
    header = next(ln for ln in md.splitlines() if ln.startswith("| Backend"))
    assert "FD_cifar10-resnet" in header and "CS_cifar10-resnet" in header
    assert "KD_cifar10-resnet" in header and "×10³" not in header  # own scale, shown raw
    assert "recall_cifar10-resnet" in header
    assert not re.search(r"\b(FID|KID|IS)\b", header), header
    rows = _md_rows(md, "| Backend")
    assert [r["Backend"].split()[0] for r in rows] == ["gan", "vae"]
    assert "**40.00**" in rows[0]["FD_cifar10-resnet"] and NOT_COMPARABLE in md
    assert rows[0]["KD_cifar10-resnet"].strip("*") == "0.010"
    assert "FD_cifar10-resnet" in paths["html"].read_text()


def test_published_run_without_npz_shows_its_grid_png(tmp_path):
    """A run folder copied without sample .npz files still gets its samples figure from the grid PNG."""
    root = tmp_path / "runs"
    run = write_run(root, "0_gan", "gan", "gan", 0, [_evaluation("gan", {}, {"fid": 40.0})], {"defined": False})
    (run / "samples" / "default.npz").unlink()
    Image.fromarray(np.full((34, 34, 3), 200, np.uint8)).save(run / "samples" / "default_grid.png")
    paths = build_report([root], tmp_path / "rep", formats=("md",))
    png = next(p for p in paths["plots"] if "_samples_gan" in p.name)
    with Image.open(png) as im:
        assert im.size[0] > 100
    (run / "samples" / "default_grid.png").unlink()
    paths = build_report([root], tmp_path / "rep2", formats=("md",))
    assert not any("_samples_gan" in p.name for p in paths["plots"])


def test_tradeoff_lines_join_one_knob_at_one_base_setting(tmp_path):
    """Sampler-step sweeps are not knob lines: a cfg_scale line joins its settings at the default
    DDIM-50 sampler, in knob order, with that sampler's unguided point as its neutral one."""
    from generative_bench.reporting.collect import collect_runs
    from generative_bench.reporting.plots import _tradeoff_lines, backend_style

    def ev(settings, fid, nfe, tag):
        e = _evaluation("ddpm", settings, {"fid": fid, "precision": 0.7, "recall": 0.5}, tag=tag, nfe=nfe)
        w = settings.get("cfg_scale", 0.0)
        e["sampler"]["knobs"] = {"cfg_scale": {"value": w, "neutral": 0.0, "symbol": "w"}}
        return e

    evals = [ev({"method": "ddim", "steps": 50, "cfg_scale": 0.0}, 30.0, 50, "a"),
             ev({"method": "ddim", "steps": 10, "cfg_scale": 0.0}, 40.0, 10, "b"),
             ev({"method": "ancestral", "steps": None, "cfg_scale": 0.0}, 25.0, 1000, "c"),
             ev({"method": "ddim", "steps": 50, "cfg_scale": 3.0}, 35.0, 100, "d"),
             ev({"method": "ddim", "steps": 50, "cfg_scale": 1.0}, 28.0, 100, "e")]
    write_run(tmp_path, "0_ddpm", "ddpm", "diffusion", 0, evals, {"defined": True, "bpd": 4.0}, display="DDPM")
    write_run(tmp_path, "1_gan", "gan", "gan", 0, [_evaluation("gan", {}, {"fid": 50.0}, tag="g")],
              {"defined": False})
    table = build_leaderboard(collect_runs(tmp_path)).tables[0]
    lines = list(_tradeoff_lines(table))
    assert len(lines) == 1
    label, knob, rows, backend = lines[0]
    assert knob == "cfg_scale" and backend == "ddpm" and label == "ddpm: w (cfg_scale)"
    assert list(rows["_v"]) == [0.0, 1.0, 3.0] and list(rows["fid_mean"]) == [30.0, 28.0, 35.0]
    assert backend_style(table, "ddpm")["color"] != backend_style(table, "gan")["color"]


def test_first_stage_reconstruction_is_shown_when_recorded(tmp_path):
    """Latent diffusion records its autoencoder's PSNR and rFD: the report shows them in their own
    table, the rFD flagged when its feature space is not the published one."""
    from generative_bench.reporting import build_report

    run = write_run(tmp_path / "runs", "0_ldm", "ldm", "latent_diffusion", 0,
                    [_evaluation("ldm", {}, {"fid": 60.0}, tag="l")], {"defined": False}, display="LDM")
    rec = json.loads((run / "results.json").read_text())
    rec["reconstruction"] = {"examples": 200, "psnr_db": 27.5, "rfd": 3.25, "rfd_features": "cifar10-resnet",
                             "rfd_comparable": False, "latent_shape": [4, 8, 8], "downsampling_factor": 4}
    (run / "results.json").write_text(json.dumps(rec))
    paths = build_report([tmp_path / "runs"], tmp_path / "out", plots=False)
    md = paths["md"].read_text()
    assert "## First-stage reconstruction" in md
    row = _md_rows(md[md.index("## First-stage reconstruction"):], "| Backend")[0]
    assert row["PSNR (dB)"] == "27.50" and row["rFD"] == "3.25 (NOT comparable)" and row["Latent"] == "4×8×8"
    assert "First-stage reconstruction" in paths["html"].read_text()
