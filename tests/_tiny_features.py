"""A tiny deterministic feature extractor for fast harness tests (not a metric network): pooled
4x4 pixels through a seeded random projection ('pool'), 12 raw pooled values ('spatial') and 10
scaled pool coordinates ('logits'). Its description says it is not comparable to anything."""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F

from generative_bench.evaluation.features import FeatureExtractor


class TinyFeatures(FeatureExtractor):
    name = "tiny-test-features"
    FEATURES = ("pool", "spatial", "logits")

    def __init__(self, device="cpu", batch_size: int = 64, dim: int = 16, seed: int = 0, spatial: bool = True,
                 resize: str | None = None, **_ignored):
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.proj = torch.randn(48, int(dim), generator=torch.Generator().manual_seed(self.seed))
        self.spatial = bool(spatial)
        self.dims = {"pool": int(dim), "logits": 10, **({"spatial": 12} if spatial else {})}

    def describe(self):
        sha = hashlib.sha256(self.proj.numpy().tobytes()).hexdigest()
        return {"name": self.name, "kind": "test", "pretrained": False, "comparable": False, "weights_sha256": sha,
                "warning": "test features", "dims": dict(self.dims)}

    def _forward(self, x):
        v = F.adaptive_avg_pool2d(x.float() / 255.0, 4).flatten(1)
        pool = torch.tanh((v - 0.5) @ self.proj)
        out = {"pool": pool, "logits": 3.0 * pool[:, :10]}
        if self.spatial:
            out["spatial"] = v[:, :12]
        return out
