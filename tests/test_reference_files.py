"""Reference files as references: pytorch-fid statistics, guided-diffusion reference batches and the
suite's own cache, scored through the real harness (a tiny test extractor keeps it fast)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from generative_bench.errors import InputError
from generative_bench.evaluation.harness import Evaluator
from generative_bench.evaluation.reference_file import read_reference_file, write_reference_file
from generative_bench.evaluation.sample_sets import NpzSampleSet

ROOT = Path(__file__).resolve().parents[1]
TINY = "tests._tiny_features.TinyFeatures"


@pytest.fixture
def folder(tmp_path) -> Path:
    """root/{train,test}/{cat,dog}/*.png: 8x8 images, 60 + 30 per class."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 60), ("test", 30)):
        for c, shift in (("cat", 0), ("dog", 60)):
            d = tmp_path / "folder" / split / c
            d.mkdir(parents=True)
            for i in range(n):
                img = np.clip(rng.normal(100 + shift, 40, (8, 8, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(d / f"{i:03d}.png")
    return tmp_path / "folder"


@pytest.fixture
def samples(tmp_path) -> Path:
    rng = np.random.default_rng(1)
    path = tmp_path / "samples.npz"
    np.savez(path, arr_0=np.clip(rng.normal(120, 45, (80, 8, 8, 3)), 0, 255).astype(np.uint8))
    return path


def _cfgs(folder, tmp_path, **eval_over):
    data = OmegaConf.create({"name": "folder", "kind": "image", "shape": [3, 8, 8], "subset": None, "subset_seed": 0,
                             "num_classes": 2, "hflip": False,
                             "source": {"_target_": "generative_bench.data.images.ImageFolderImages",
                                        "root": str(folder)}})
    ev = OmegaConf.load(ROOT / "conf" / "eval" / "default.yaml")
    ev.pop("defaults", None)
    ev.features = {"_target_": TINY, "batch_size": 64}
    ev.merge_with({"num_samples": 80, "batch_size": 40, "kid_subsets": 10, "kid_subset_size": 40, "is_splits": 2,
                   "grid_size": 0, "save_samples": False, **eval_over})
    return data, ev


def _evaluate(folder, tmp_path, samples, **eval_over):
    data, ev = _cfgs(folder, tmp_path, **eval_over)
    return Evaluator(data, ev, cache_dir=tmp_path / "cache", seed=0).evaluate(NpzSampleSet(str(samples)), {})


def _write(folder, tmp_path, fmt, name):
    data, ev = _cfgs(folder, tmp_path)
    e = Evaluator(data, ev, cache_dir=tmp_path / "cache", seed=0)
    desc, arrays = e.split_reference("train", None)
    from generative_bench.data.loading import load_split

    split = load_split(data, "train")
    path = write_reference_file(tmp_path / name, fmt, {k: v for k, v in arrays.items() if k != "labels"},
                                images=split.x.permute(0, 2, 3, 1).numpy() if fmt == "guided-diffusion" else None,
                                meta={"dataset": "folder", "split": "train", "extractor": e.extractor.describe()},
                                labels=split.labels if fmt == "guided-diffusion" else None)
    return path, arrays


def test_fid_from_a_pytorch_fid_stats_file_equals_fid_from_recomputed_features(folder, tmp_path, samples):
    stats, arrays = _write(folder, tmp_path, "pytorch-fid", "stats.npz")
    with np.load(stats, allow_pickle=False) as z:
        assert {"mu", "sigma"} <= set(z.files) and z["mu"].dtype == np.float64
    split = _evaluate(folder, tmp_path, samples, metrics=["fid", "kid"])
    from_file = _evaluate(folder, tmp_path, samples, **{"reference": {"file": str(stats)}})
    assert from_file["metrics"]["fid"] == pytest.approx(split["metrics"]["fid"], rel=1e-12)
    ref = from_file["protocol"]["reference"]
    assert ref["file"] == str(stats) and ref["format"] == "pytorch-fid"
    assert ref["file_sha256"] == read_reference_file(stats).sha256 and len(ref["file_sha256"]) == 64
    assert ref["feature_space_check"] == "fingerprint"
    # the default list leaves out what a stats-only file cannot give, with one note
    assert set(from_file["metrics"]) == {"fid", "is_mean", "is_std"}
    assert len(from_file["notes"]) == 1 and "kid" in from_file["notes"][0] and "sfid" in from_file["notes"][0]
    # an explicit request for KID is the clear error naming the fix
    with pytest.raises(InputError, match=r"metric 'kid' cannot be computed.*guided-diffusion reference batch"):
        _evaluate(folder, tmp_path, samples, metrics=["fid", "kid"], reference={"file": str(stats)})


def test_pytorch_fid_agrees_with_our_fid_on_the_file(folder, tmp_path, samples):
    fid_score = pytest.importorskip("pytorch_fid.fid_score")
    stats, _ = _write(folder, tmp_path, "pytorch-fid", "stats.npz")
    ours = _evaluate(folder, tmp_path, samples, metrics=["fid"], reference={"file": str(stats)})["metrics"]["fid"]
    data, ev = _cfgs(folder, tmp_path)
    feats = Evaluator(data, ev, seed=0)._features([NpzSampleSet(str(samples)).draw(0, 80).images])
    mu, sigma = feats["pool"].astype(np.float64).mean(0), np.cov(feats["pool"].astype(np.float64), rowvar=False)
    with np.load(stats, allow_pickle=False) as z:
        theirs = fid_score.calculate_frechet_distance(mu, sigma, z["mu"], z["sigma"])
    assert ours == pytest.approx(theirs, rel=1e-6)  # eigh trace vs scipy sqrtm: 1e-6 relative


def test_guided_diffusion_batch_round_trips(folder, tmp_path, samples):
    path, arrays = _write(folder, tmp_path, "guided-diffusion", "VIRTUAL_folder.npz")
    with np.load(path, allow_pickle=False) as z:
        assert {"arr_0", "mu", "sigma", "mu_s", "sigma_s"} <= set(z.files)
        assert z["arr_0"].dtype == np.uint8 and z["arr_0"].shape == (120, 8, 8, 3)
    rf = read_reference_file(path)
    assert rf.format == "guided-diffusion"
    np.testing.assert_array_equal(rf.arrays["mu"], arrays["mu"])
    np.testing.assert_array_equal(rf.arrays["sigma_s"], arrays["sigma_s"])
    names = ["fid", "sfid", "is", "kid", "prdc", "class_fd"]
    split = _evaluate(folder, tmp_path, samples, metrics=names)
    from_file = _evaluate(folder, tmp_path, samples, metrics=names, reference={"file": str(path)})
    for k, v in split["metrics"].items():
        assert from_file["metrics"][k] == pytest.approx(v, rel=1e-9, abs=1e-12), k
    ref = from_file["protocol"]["reference"]
    assert ref["images"] == 120 and ref["stored_stats_vs_images_fd"] == pytest.approx(0, abs=1e-9)


def test_feature_space_mismatches_are_clear_errors(folder, tmp_path, samples):
    stats, _ = _write(folder, tmp_path, "pytorch-fid", "stats.npz")
    with pytest.raises(InputError, match="feature-space mismatch.*weights_sha256"):
        _evaluate(folder, tmp_path, samples, reference={"file": str(stats)},
                  features={"_target_": TINY, "seed": 1})
    foreign = tmp_path / "fid_stats_2048.npz"
    np.savez(foreign, mu=np.zeros(2048), sigma=np.eye(2048))
    with pytest.raises(InputError, match=r"holds 2048-d pool statistics but eval.features \(tiny-test-features\) "
                                         r"makes 16-d"):
        _evaluate(folder, tmp_path, samples, reference={"file": str(foreign)})
    with pytest.raises(InputError, match="not found"):
        _evaluate(folder, tmp_path, samples, reference={"file": str(tmp_path / "missing.npz")})


def test_a_cache_entry_folder_is_a_reference(folder, tmp_path, samples):
    split = _evaluate(folder, tmp_path, samples, metrics=["fid", "kid", "prdc"])
    entry = tmp_path / "cache" / "reference" / next(p.name for p in (tmp_path / "cache" / "reference").iterdir())
    from_cache = _evaluate(folder, tmp_path, samples, metrics=["fid", "kid", "prdc"], reference={"file": str(entry)})
    assert from_cache["metrics"] == pytest.approx(split["metrics"], rel=1e-12)
    assert from_cache["protocol"]["reference"]["format"] == "gbench-cache"


@pytest.mark.slow
def test_gbench_reference_then_evaluate_against_the_file(folder, tmp_path, samples):
    env = {**os.environ, "GBENCH_CACHE": str(tmp_path / "cache"), "GBENCH_HOME": str(tmp_path), "OMP_NUM_THREADS": "1"}
    common = ["data=folder", f"data.source.root={folder}", "data.shape=[3,8,8]", f"eval.features._target_={TINY}"]
    out = tmp_path / "ref.npz"
    r = subprocess.run([sys.executable, "-m", "generative_bench", "reference", *common, "--format", "guided-diffusion",
                        "--out", str(out)], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    rec = json.loads(next((tmp_path / "runs").glob("reference-folder_*/results.json")).read_text())
    assert rec["reference_file"]["sha256"] == read_reference_file(out).sha256
    r = subprocess.run([sys.executable, "-m", "generative_bench", "evaluate", "sampler=npz", f"sampler.path={samples}",
                        *common, "eval.num_samples=80", "eval.kid_subset_size=40", "eval.is_splits=2",
                        f"eval.reference.file={out}", "eval.bootstrap=20"],
                       capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    run = next((tmp_path / "runs").glob("samples-folder_*"))  # named after the sample file, not a model
    ev = json.loads((run / "results.json").read_text())["evaluations"][0]
    assert ev["protocol"]["reference"]["file_sha256"] == read_reference_file(out).sha256
    assert {"fid", "sfid", "kid_mean", "precision"} <= set(ev["metrics"])
    lo, hi = ev["intervals"]["fid"]["lo"], ev["intervals"]["fid"]["hi"]
    assert lo <= ev["metrics"]["fid"] <= hi
