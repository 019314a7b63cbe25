"""Guided sampling gives each image the same bits whatever the batch size or number of ranks.

An image keeps its row in its network chunk (chunk k holds images k*chunk .. (k+1)*chunk-1 of the
set): with a noisy classifier of hidden size 32 and 4 input features, the BLAS products of its
input gradient round differently by row, so an image moved to another row (as padding a draw to
the chunk used to do) changed by up to 0.165 under DDIM guidance."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from generative_bench.sampler import SampleBatch

sys.path.insert(0, str(Path(__file__).parent))
import guided_rows  # noqa: E402

BACKEND = guided_rows.backend()


@pytest.fixture(scope="module")
def whole() -> dict[str, torch.Tensor]:
    return {name: guided_rows.draw(BACKEND, name, range(1), guided_rows.N)[0].images for name in guided_rows.SETTINGS}


@pytest.mark.parametrize("name", list(guided_rows.SETTINGS))
def test_guided_samples_are_bitwise_the_same_for_batch_sizes_1_7_64(name, whole):
    n = guided_rows.N
    for bs in (1, 7, 64):
        parts = guided_rows.draw(BACKEND, name, range(-(-n // bs)), bs)
        got = SampleBatch.concat(parts[i] for i in sorted(parts)).images
        assert torch.equal(got, whole[name]), f"{name}: batch size {bs} changed the samples"
    plain = BACKEND.draw(0, n, guided_rows.SEED, BACKEND.resolve_settings(method=guided_rows.SETTINGS[name]["method"],
                                                                          steps=guided_rows.SETTINGS[name]["steps"]),
                         chunk=guided_rows.CHUNK).images
    assert (plain - whole[name]).abs().max() > 1e-3  # the guidance is live


def test_an_image_drawn_alone_is_that_image_of_the_set(whole):
    settings = BACKEND.resolve_settings(**guided_rows.SETTINGS["ddim_cg"])
    for i in (0, 5, 17, 63):
        alone = BACKEND.draw(i, i + 1, guided_rows.SEED, settings, chunk=guided_rows.CHUNK).images[0]
        assert torch.equal(alone, whole["ddim_cg"][i])


@pytest.mark.slow
def test_two_gloo_ranks_draw_the_bits_of_one_process(tmp_path, whole):
    out = tmp_path / "two.npz"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        str(Path(__file__).parent / "guided_rows.py"), str(out)],
                       capture_output=True, text=True, timeout=300, env=env, cwd=Path(__file__).parents[1])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    two = np.load(out, allow_pickle=False)
    for name, images in whole.items():
        assert np.array_equal(two[name], images.numpy()), name
