"""Noise-aware classifiers p(y | x_t, t) for classifier guidance (Dhariwal & Nichol 2021, Sec. 4, App. F).

* :class:`NoisyImageClassifier`: the encoder half of the UNet (down path and middle block, the
  timestep embedding in every residual block), then GroupNorm-SiLU, global average pooling and a
  linear head to the class logits.
* :class:`NoisyVectorClassifier`: the MLP denoiser's trunk (Fourier input features, time
  embedding, residual blocks) with a linear head to the class logits, for vector data.

Both take ``t`` as the same float timestep the denoiser gets.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from generative_bench.backends.nets.mlp_denoiser import VectorTrunk
from generative_bench.backends.nets.unet import build_encoder, check_unet_config, timestep_embedding
from generative_bench.errors import InputError


def _check_classes(num_classes: int) -> int:
    if int(num_classes) < 1:
        raise InputError(f"a classifier needs num_classes >= 1, got {num_classes}")
    return int(num_classes)


class NoisyImageClassifier(nn.Module):
    """UNet encoder + middle block + pooled linear head; ``forward(x, t) -> logits (B, num_classes)``."""

    def __init__(self, in_channels: int = 3, image_size: int = 32, num_classes: int = 10, ch: int = 32,
                 ch_mult: Sequence[int] = (1, 2, 2), num_res_blocks: int = 1, attn_resolutions: Sequence[int] = (8,),
                 num_heads: int = 1, dropout: float = 0.0, scale_shift_norm: bool = False, norm_groups: int = 32):
        super().__init__()
        ch_mult = tuple(int(m) for m in ch_mult)
        resolutions = check_unet_config(image_size, ch, ch_mult, attn_resolutions, norm_groups)
        self.image_size, self.ch, self.num_classes = image_size, ch, _check_classes(num_classes)
        _, cur, _, _ = build_encoder(self, in_channels, ch, ch_mult, num_res_blocks, resolutions, attn_resolutions,
                                     num_heads, dropout, scale_shift_norm, norm_groups)
        self.out_norm = nn.Sequential(nn.GroupNorm(norm_groups, cur), nn.SiLU())
        self.head = nn.Linear(cur, self.num_classes)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time_embed(timestep_embedding(t, self.ch).to(x.dtype))
        h = self.input_conv(x)
        for stage in self.down:
            h = stage(h, emb)
        h = self.out_norm(self.middle(h, emb))
        return self.head(h.mean(dim=(2, 3)))


class NoisyVectorClassifier(VectorTrunk):
    """MLP-denoiser trunk + SiLU-linear head; ``forward(x, t) -> logits (B, num_classes)``."""

    def __init__(self, dim: int = 2, num_classes: int = 8, hidden: int = 256, num_blocks: int = 3,
                 time_dim: int = 128, input_features: int = 64, input_scale: float = 25.0):
        num_classes = _check_classes(num_classes)
        super().__init__(dim, hidden, num_blocks, time_dim, input_features, input_scale)
        self.num_classes = num_classes
        self.head = nn.Sequential(nn.SiLU(), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x, self.embed_time(t, x.dtype)))


__all__ = ["NoisyImageClassifier", "NoisyVectorClassifier"]
