"""A class-conditional 2-D diffusion model with a small noisy classifier (hidden 32, 4 input
features), the guided settings of every solver family, and a draw of a set in batches: shared by
tests/test_guided_rows.py and its 2-rank run (``python -m torch.distributed.run ... tests/guided_rows.py OUT``)."""

from __future__ import annotations

import functools
import sys

import numpy as np
import torch

from generative_bench.backends.diffusion import DiffusionBackend
from generative_bench.backends.nets.classifier import NoisyVectorClassifier
from generative_bench.backends.nets.mlp_denoiser import MLPDenoiser
from generative_bench.sampler import SampleBatch

N, SEED, CHUNK = 64, 11, 16
#: classifier guidance and classifier-free guidance on ancestral, DDIM, DPM-Solver++ (2M) and Heun
SETTINGS = {
    "ancestral_cg": {"method": "ancestral", "steps": 10, "classifier_scale": 3.0},
    "ddim_cg": {"method": "ddim", "steps": 10, "classifier_scale": 3.0},
    "dpmpp_cg": {"method": "dpmpp_2m", "steps": 10, "classifier_scale": 3.0},
    "heun_cg": {"method": "heun", "steps": 6, "classifier_scale": 3.0},
    "ddim_cfg": {"method": "ddim", "steps": 10, "cfg_scale": 2.0},
    "heun_cfg_cg": {"method": "heun", "steps": 6, "cfg_scale": 2.0, "classifier_scale": 1.5},
}


def backend() -> DiffusionBackend:
    torch.manual_seed(0)
    b = DiffusionBackend([2], vector_net=functools.partial(MLPDenoiser, hidden=32, num_blocks=2, time_dim=16,
                                                           input_features=4),
                         timesteps=40, num_classes=4, schedule="cosine", classifier=True,
                         vector_classifier=functools.partial(NoisyVectorClassifier, hidden=32, num_blocks=1,
                                                             time_dim=16, input_features=4))
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # zero-initialised residual branches would hide the class and time inputs
        for p in [*b.net.parameters(), *b.classifier.parameters()]:
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    return b


def draw(b: DiffusionBackend, name: str, batches: range, batch_size: int) -> dict[int, SampleBatch]:
    settings = b.resolve_settings(**SETTINGS[name])
    return {i: b.draw(i * batch_size, min(N, (i + 1) * batch_size), SEED, settings, chunk=CHUNK) for i in batches}


if __name__ == "__main__":  # under torchrun: each rank draws batches r, r + W, ... of 7; rank 0 saves the set
    from generative_bench import distributed

    distributed.init_from_env(torch.device("cpu"))
    b, out = backend(), {}
    for name in SETTINGS:
        num = -(-N // 7)
        local = draw(b, name, distributed.my_batches(num), 7)
        parts = distributed.gather_batches(local, num)
        out[name] = SampleBatch.concat(parts).images.numpy()
    if distributed.info().is_main:
        np.savez(sys.argv[1], **out)
