"""Samples are reproducible by construction: per-image seeds and fixed network chunks.

The same seed gives bit-identical samples whatever the batch size of the draws, the stage that
draws them (``gbench sample`` vs ``gbench evaluate``), and (tests/test_distributed.py) the
number of ranks.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from generative_bench.backends.diffusion import DiffusionBackend
from generative_bench.backends.gan import GANBackend, MLPDiscriminator, MLPGenerator
from generative_bench.backends.nets.mlp_denoiser import MLPDenoiser
from generative_bench.backends.vae import VAEBackend
from generative_bench.evaluation.harness import Evaluator
from generative_bench.sampler import (GeneratorNoise, ImageNoise, SampleBatch, image_seed, randn_each_step,
                                     serial_normal_stream)

GBENCH = [sys.executable, "-m", "generative_bench"]


def _backends():
    torch.manual_seed(0)
    yield "diffusion", DiffusionBackend([2], vector_net=lambda dim, out_dim: MLPDenoiser(dim, out_dim, hidden=32,
                                                                                           num_blocks=1, time_dim=16),
                                        timesteps=50), {"method": "ancestral", "steps": 5}
    yield "gan", GANBackend([2], vector_generator=lambda out_shape: MLPGenerator(out_shape, z_dim=4, hidden=16),
                            vector_discriminator=lambda in_shape: MLPDiscriminator(in_shape, hidden=16)), {}
    yield "vae", VAEBackend([2]), {"decode": "sample"}


@pytest.mark.parametrize("name, backend, settings", list(_backends()), ids=lambda v: v if isinstance(v, str) else "")
def test_same_seed_same_samples_for_batch_sizes_1_7_64(name, backend, settings):
    settings = backend.resolve_settings(**settings)
    whole = backend.draw(0, 64, seed=5, settings=settings, chunk=16).images
    for bs in (1, 7, 64):
        parts = SampleBatch.concat(backend.draw(s, min(64, s + bs), 5, settings, chunk=16)
                                   for s in range(0, 64, bs)).images
        assert torch.equal(parts, whole), f"{name}: batch size {bs} changed the samples"
    assert not torch.equal(backend.draw(0, 64, seed=6, settings=settings, chunk=16).images, whole)
    # image 40 alone is image 40 of the set
    assert torch.equal(backend.draw(40, 41, 5, settings, chunk=16).images[0], whole[40])


def test_image_noise_rows_do_not_depend_on_their_neighbours():
    a = ImageNoise([image_seed(0, i) for i in range(5)]).randn((5, 3))
    b = ImageNoise([image_seed(0, 3)]).randn((1, 3))
    assert torch.equal(a[3], b[0]) and not torch.equal(a[2], a[3])
    assert len({image_seed(s, i) for s in range(50) for i in range(200)}) == 50 * 200


@pytest.mark.parametrize("rest", [(1,), (2,), (3,), (7,), (8,), (15,), (16,), (3, 2, 2)], ids=str)
def test_step_noise_equals_one_draw_per_step(rest):
    """randn_steps draws several steps per generator call where an image's draw is small: the
    numbers, and where the generators end, are those of one randn call per step."""
    assert serial_normal_stream()
    seeds = [image_seed(1, i) for i in range(5)]
    stepwise, streamed = ImageNoise(seeds), ImageNoise(seeds)
    steps = 23  # not a multiple of any block size: the last block is short
    want = [stepwise.randn((5, *rest)) for _ in range(steps)]
    got = list(streamed.randn_steps((5, *rest), steps))
    assert len(got) == steps and all(torch.equal(a, b) for a, b in zip(want, got))
    assert all(g.shape == (5, *rest) for g in got)
    # nothing drawn ahead: the next draw is the same for both
    assert torch.equal(stepwise.randn((5, *rest)), streamed.randn((5, *rest)))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    one = GeneratorNoise(g1)
    assert all(torch.equal(a, torch.randn((4, *rest), generator=g2)) for a in one.randn_steps((4, *rest), 3))


def test_ancestral_sampling_draws_the_noise_of_one_call_per_step():
    """The ancestral loop's streamed noise gives the samples of a loop that draws every step."""
    backend, settings = next(_backends())[1:]
    settings = backend.resolve_settings(**settings)
    seeds = [image_seed(0, i) for i in range(16)]

    class OneCallPerStep(ImageNoise):
        randn_steps = randn_each_step

    with torch.no_grad():
        a = backend.sample_model_space(16, ImageNoise(seeds), **settings)
        b = backend.sample_model_space(16, OneCallPerStep(seeds), **settings)
    assert torch.equal(a, b)


def test_harness_writes_the_same_images_for_every_batch_size(tmp_path):
    data = OmegaConf.create({"name": "ring8", "kind": "vector", "shape": [2], "subset": None, "subset_seed": 0,
                             "source": {"_target_": "generative_bench.data.toy.RingOfGaussians", "size": 500}})
    backend = next(_backends())[1]
    files = []
    for bs in (1, 7, 64):
        cfg = OmegaConf.create({"num_samples": 64, "batch_size": bs, "chunk": 32, "reference_split": "test",
                                "toy_metrics": ["modes"], "grid_size": 0, "save_samples": True})
        entry = Evaluator(data, cfg, seed=3).evaluate(backend, {"steps": 5}, out_dir=tmp_path / f"bs{bs}", name="d")
        files.append(np.load(tmp_path / f"bs{bs}" / entry["samples_file"])["arr_0"])
        assert entry["sampler"]["nfe"] == 5 and entry["protocol"]["network_chunk"] == 32
    assert np.array_equal(files[0], files[1]) and np.array_equal(files[0], files[2])


@pytest.mark.slow
def test_gbench_sample_and_evaluate_write_the_same_images(tmp_path):
    run = tmp_path / "run"
    common = ["model=vae", "train.max_steps=30", "eval.num_samples=40", "eval.nll.enabled=false",
              f"hydra.run.dir={run}", "+model.sampling.decode=sample"]
    r = subprocess.run(GBENCH + ["train", *common], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run(GBENCH + ["sample", *common, "eval.batch_size=7"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rec = json.loads((run / "results.json").read_text())
    sampled = np.load(run / rec["samples"]["file"])["arr_0"].copy()
    r = subprocess.run(GBENCH + ["evaluate", *common, "eval.batch_size=16", "eval.sweep_sampling=false"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rec = json.loads((run / "results.json").read_text())
    evaluated = np.load(run / rec["evaluations"][0]["samples_file"])["arr_0"]
    assert rec["evaluations"][0]["samples_file"] == rec["samples"]["file"]
    assert sampled.shape == (40, 2) and np.array_equal(sampled, evaluated)
