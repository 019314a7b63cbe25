"""Noise-prediction MLP for vector (2-D toy) data: sinusoidal time embedding + residual MLP blocks.

Coordinates can also enter through sinusoidal features (``input_features`` per coordinate of
``x * input_scale``, as in Tancik et al. 2020 Fourier features). Without them an MLP on raw 2-D
inputs fits the steep noise predictor of sharp modes at small t only slowly (spectral bias), and
samples of e.g. the std-0.01 ring spread along the circle instead of landing on the modes.

``num_classes > 0``: a class embedding (row ``num_classes`` = the null class of classifier-free
guidance, Ho & Salimans 2022) is added to the time embedding. :class:`VectorTrunk` holds the
input features, time embedding and residual blocks shared with the noise-aware classifier.
"""

from __future__ import annotations

import torch
from torch import nn

from generative_bench.backends.nets.unet import add_label_embedding, timestep_embedding, zero_init
from generative_bench.errors import InputError

SHARED_TIME_ROWS = 8  # rows of a shared time embedding (see VectorTrunk.embed_time_shared)


class _Block(nn.Module):
    """h + W2 SiLU(W1 SiLU(h) + time projection)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.lin1 = nn.Linear(hidden, hidden)
        self.time = nn.Linear(hidden, hidden)
        self.lin2 = zero_init(nn.Linear(hidden, hidden))
        self.act = nn.SiLU()

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        proj = self.time(emb)
        if proj.shape[0] != h.shape[0]:  # a shared time embedding (identical rows): broadcast one row
            proj = proj[:1]
        return h + self.lin2(self.act(self.lin1(self.act(h)) + proj))


class VectorTrunk(nn.Module):
    """Fourier input features + sinusoidal time embedding MLP + residual :class:`_Block` stack.

    Subclasses add their output layer after calling ``__init__`` and run :meth:`features`.
    """

    def __init__(self, dim: int, hidden: int, num_blocks: int, time_dim: int, input_features: int,
                 input_scale: float):
        super().__init__()
        self.time_dim = time_dim
        self.input_features = int(input_features)
        self.input_scale = float(input_scale)
        self.time_embed = nn.Sequential(nn.Linear(time_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.inp = nn.Linear(dim * (1 + self.input_features), hidden)
        self.blocks = nn.ModuleList(_Block(hidden) for _ in range(num_blocks))

    def embed_input(self, x: torch.Tensor) -> torch.Tensor:
        """[x, sinusoidal features of x * input_scale for every coordinate]."""
        if not self.input_features:
            return x
        b, d = x.shape
        feats = timestep_embedding((x * self.input_scale).reshape(-1), self.input_features).reshape(b, d * self.input_features)
        return torch.cat([x, feats.to(x.dtype)], dim=1)

    def embed_time(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return self.time_embed(timestep_embedding(t, self.time_dim).to(dtype))

    def embed_time_shared(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """:meth:`embed_time` of ``t``, computed once when every entry of ``t`` is the same (a
        sampler's step) and there are at least two: then a few identical rows (``SHARED_TIME_ROWS``) come back instead of
        one per sample, and the blocks broadcast their time projection, so the time MLP and the
        blocks' time projections run once per call instead of once per sample. Several rows
        rather than one because BLAS libraries take a matrix-vector path for a single row, whose
        rounding differs from the batched product; with a few rows the output was bit-identical
        to embedding every row on the CPU tested (tests/test_mlp_time_embedding.py checks 1e-6)."""
        t = t.reshape(-1)
        if t.numel() > 1 and bool((t == t[0]).all()):
            # always the same number of rows, so a batch of 2 and a batch of 1000 round alike
            return self.embed_time(t[:1].expand(SHARED_TIME_ROWS), dtype)
        return self.embed_time(t, dtype)

    def features(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """The last hidden layer for input ``x`` and (time [+ class]) embedding ``emb``."""
        h = self.inp(self.embed_input(x))
        for block in self.blocks:
            h = block(h, emb)
        return h


class MLPDenoiser(VectorTrunk):
    """``forward(x, t, y=None)``: x (B, dim), t float (B,), y class labels (conditional nets only;
    ``None`` = the null class) -> (B, out_dim)."""

    def __init__(self, dim: int = 2, out_dim: int = 2, hidden: int = 256, num_blocks: int = 3, time_dim: int = 128,
                 input_features: int = 64, input_scale: float = 25.0, num_classes: int = 0):
        if int(num_classes) < 0:
            raise InputError(f"num_classes must be >= 0, got {num_classes}")
        super().__init__(dim, hidden, num_blocks, time_dim, input_features, input_scale)
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, out_dim))
        self.num_classes = int(num_classes)
        if self.num_classes:  # created last: the other parameters initialise as in the unconditional net
            self.label_embed = nn.Embedding(self.num_classes + 1, hidden)  # row num_classes: null class

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.embed_time_shared(t, x.dtype)
        if self.num_classes and y is not None and len(emb) != len(x):  # per-sample class embeddings
            emb = emb[:1].expand(len(x), -1)
        emb = add_label_embedding(self, emb, y)
        return self.out(self.features(x, emb))
