"""The evaluator as a library: ``generative_bench.evaluate`` gives the numbers of ``gbench
evaluate`` on the same samples, whatever form the samples come in (array NHWC or NCHW, float with
its range, an npz, a folder of PNGs, a function), and refuses ambiguous input with the fix.

Features: the committed cifar10-resnet domain extractor on 32x32 images (fast on a CPU); its
numbers are labelled NOT comparable, which the result says."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from generative_bench import evaluate
from generative_bench.errors import InputError

README = Path(__file__).resolve().parents[1] / "README.md"
OPTIONS = dict(metrics=["fid", "kid", "prdc"], features="cifar10_resnet", overrides=["eval.kid_subset_size=50"])


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 256, (200, 32, 32, 3), dtype=np.uint8)
    smp = rng.integers(0, 256, (60, 32, 32, 3), dtype=np.uint8)
    np.savez(root / "ref.npz", arr_0=ref)
    np.savez(root / "samples.npz", arr_0=smp)
    return root, ref, smp


def test_arrays_npz_folder_and_the_cli_give_the_same_numbers(images):
    from PIL import Image

    root, ref, smp = images
    cache = root / "cache"
    nhwc = evaluate(smp, reference=ref, cache_dir=cache, **OPTIONS)
    assert set(nhwc.metrics) >= {"fid", "kid_mean", "precision", "recall", "density", "coverage"}
    assert nhwc.comparable is False and nhwc.protocol["features"]["name"] == "cifar10-resnet"
    assert nhwc.protocol["num_samples"] == 60 and nhwc["fid"] == nhwc.metrics["fid"]
    nchw = evaluate(smp.transpose(0, 3, 1, 2).copy(), reference=ref, cache_dir=cache, **OPTIONS)
    floats = evaluate(smp.astype(np.float32) / 255.0, reference=ref, value_range=(0, 1), cache_dir=cache, **OPTIONS)
    from_npz = evaluate(root / "samples.npz", reference=root / "ref.npz", cache_dir=cache, **OPTIONS)
    folder = root / "pngs"
    folder.mkdir()
    for i, img in enumerate(smp):
        Image.fromarray(img).save(folder / f"{i:03d}.png")
    from_folder = evaluate(folder, reference=ref, cache_dir=cache, **OPTIONS)
    for other in (nchw, floats, from_npz, from_folder):
        assert other.metrics == nhwc.metrics
    run = root / "run"
    cmd = [sys.executable, "-m", "generative_bench", "evaluate", "sampler=npz", f"sampler.path={root}/samples.npz",
           "data=npz", f"data.source.path={root}/ref.npz", "data.shape=[3,32,32]", "eval/features=cifar10_resnet",
           "eval.metrics=[fid,kid,prdc]", "eval.kid_subset_size=50", "eval.num_samples=60",
           f"paths.cache_dir={cache}", f"hydra.run.dir={run}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    recorded = json.loads((run / "results.json").read_text())["evaluations"][0]["metrics"]
    assert {k: recorded[k] for k in nhwc.metrics} == nhwc.metrics  # bit for bit
    # the one-line CLI: the same numbers, no run folder
    out = root / "score.json"
    r = subprocess.run([sys.executable, "-m", "generative_bench", "score", str(root / "samples.npz"), str(root / "ref.npz"),
                        "--metrics", "fid,kid,prdc", "--features", "cifar10_resnet", "--json", str(out),
                        "eval.kid_subset_size=50", f"paths.cache_dir={cache}"], capture_output=True, text=True,
                       timeout=600, cwd=root)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(out.read_text())["metrics"] == nhwc.metrics
    assert "fid" in r.stdout and "NOT comparable" in r.stdout and not (root / "runs").exists()


def test_a_function_of_n_and_seed_is_scored_like_the_images_it_made(images):
    root, ref, _ = images

    def generator(n, seed):
        return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)

    result = evaluate(generator, reference=ref, num_samples=60, cache_dir=root / "cache", **OPTIONS)
    from generative_bench.evaluation.sample_sets import FunctionSampler

    drawn = FunctionSampler(generator).draw(0, 60, 0).images.numpy()  # one batch: eval.batch_size >= 60
    same = evaluate(drawn, reference=ref, cache_dir=root / "cache", **OPTIONS)
    assert result.metrics == same.metrics


def test_ambiguous_or_unknown_input_is_refused_with_the_fix(images):
    root, ref, smp = images
    with pytest.raises(InputError, match=r"float32 .*state their range: value_range=\(-1, 1\) or value_range=\(0, 1\)"):
        evaluate(smp.astype(np.float32), reference=ref, **OPTIONS)
    with pytest.raises(InputError, match=r"reference 'cifar100' is neither a data config \(.*cifar10_jpeg.*\) nor"):
        evaluate(smp, reference="cifar100", **OPTIONS)
    with pytest.raises(InputError, match=r"samples '.*nope\.npz' do not exist"):
        evaluate(root / "nope.npz", reference=ref, **OPTIONS)
    with pytest.raises(InputError, match=r"unknown metric 'fod'"):
        evaluate(smp, reference=ref, metrics=["fod"], features="cifar10_resnet", cache_dir=root / "cache")
    r = subprocess.run([sys.executable, "-m", "generative_bench", "score", str(root / "nope.npz"), "cifar10_jpeg"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.startswith("gbench score: error: samples '") and "Traceback" not in r.stderr


def readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Use it as an evaluator"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_runs(tmp_path, monkeypatch):
    """The README's "Use it as an evaluator" opens with this example (at most 10 lines)."""
    code = readme_example()
    assert len(code.strip().splitlines()) <= 10
    if not (Path(__file__).resolve().parents[1] / "data" / "cifar10-jpeg" / "train").is_dir():
        pytest.skip("the CIFAR-10 JPEG copy is not unpacked in data/ (README, Data)")
    monkeypatch.setenv("GBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    result = scope["result"]
    assert np.isfinite(result.metrics["fid"]) and result.comparable is False
