"""The DDPM / improved-DDPM UNet (Ho et al. 2020 App. B; Nichol & Dhariwal 2021 Sec. 2.4 / App. A).

A Wide-ResNet UNet: ``num_res_blocks`` residual blocks per resolution, channel multipliers
``ch_mult``, self-attention at ``attn_resolutions``, a sinusoidal timestep embedding injected into
every residual block (added, or as adaptive GroupNorm scale/shift with ``scale_shift_norm``),
GroupNorm(32) + SiLU, conv down/up-sampling and zero-initialised output layers.

* DDPM CIFAR-10: ch=128, ch_mult=(1,2,2,2), num_res_blocks=2, attn at 16, dropout 0.1 (35.7M).
* improved DDPM CIFAR-10: num_res_blocks=3, attn at 16 and 8, 4 heads, scale_shift_norm,
  dropout 0.3, out_channels=6 (eps and the variance interpolation v).

Every op works on any memory format; ``channels_last=True`` converts weights and inputs.

``num_classes > 0`` makes the UNet class-conditional as guided-diffusion's (Dhariwal & Nichol
2021): a learned class embedding is added to the time embedding. Row ``num_classes`` of the
embedding is the *null class* used for label dropout and unconditional predictions in
classifier-free guidance (Ho & Salimans 2022).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from generative_bench.errors import InputError


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [cos(t w_i), sin(t w_i)], w_i = max_period^(-i / (dim/2)) (Vaswani et al.)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


def zero_init(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """GN-SiLU-conv, add (or scale-shift by) the time embedding, GN-SiLU-dropout-conv, plus skip."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float, scale_shift_norm: bool, groups: int):
        super().__init__()
        self.scale_shift_norm = scale_shift_norm
        self.in_layers = nn.Sequential(nn.GroupNorm(groups, in_ch), nn.SiLU(), nn.Conv2d(in_ch, out_ch, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * out_ch if scale_shift_norm else out_ch))
        self.out_norm = nn.GroupNorm(groups, out_ch)
        self.out_layers = nn.Sequential(nn.SiLU(), nn.Dropout(dropout), zero_init(nn.Conv2d(out_ch, out_ch, 3, padding=1)))
        self.skip = nn.Identity() if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        e = self.emb_layers(emb)[:, :, None, None].to(h.dtype)
        if self.scale_shift_norm:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_norm(h) * (1 + scale) + shift
        else:
            h = self.out_norm(h + e)
        return self.skip(x) + self.out_layers(h)


class AttentionBlock(nn.Module):
    """Multi-head self-attention over all positions, residual, zero-initialised projection."""

    def __init__(self, ch: int, num_heads: int, groups: int):
        super().__init__()
        if ch % num_heads:
            raise InputError(f"attention channels {ch} are not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.norm = nn.GroupNorm(groups, ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = zero_init(nn.Conv2d(ch, ch, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.num_heads, c // self.num_heads, h * w)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # (b, heads, hw, d) each
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class Downsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Stage(nn.ModuleList):
    """Layers applied in order; residual blocks also receive the time embedding."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


def label_indices(y: torch.Tensor | None, batch: int, num_classes: int, device: torch.device) -> torch.Tensor:
    """Class indices for a conditional net: ``y`` as int64, or the null class ``num_classes`` for every row."""
    if y is None:
        return torch.full((batch,), num_classes, dtype=torch.long, device=device)
    y = torch.as_tensor(y, device=device).long().reshape(-1)
    if len(y) != batch:
        raise InputError(f"got {len(y)} class labels for a batch of {batch}")
    return y


def add_label_embedding(net: nn.Module, emb: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """``emb + label_embed(y)`` on a conditional net (``y=None``: the null class); ``emb`` otherwise."""
    if not net.num_classes:
        if y is not None:
            raise InputError(f"{type(net).__name__} is unconditional (num_classes=0) but got class labels")
        return emb
    return emb + net.label_embed(label_indices(y, len(emb), net.num_classes, emb.device)).to(emb.dtype)


def check_unet_config(image_size: int, ch: int, ch_mult: Sequence[int], attn_resolutions: Sequence[int],
                      norm_groups: int) -> list[int]:
    """Validate a UNet layout; returns the resolution of every level."""
    levels = len(ch_mult)
    if image_size % (2 ** (levels - 1)):
        raise InputError(f"image_size {image_size} is not divisible by 2^{levels - 1} for ch_mult={tuple(ch_mult)}")
    resolutions = [image_size // 2 ** i for i in range(levels)]
    bad = sorted(set(int(r) for r in attn_resolutions) - set(resolutions))
    if bad:
        raise InputError(f"attn_resolutions {bad} are not resolutions of this UNet {resolutions}")
    if any((ch * m) % norm_groups for m in ch_mult) or ch % norm_groups:
        raise InputError(f"channel counts {[ch * m for m in ch_mult]} must be divisible by norm_groups={norm_groups}")
    return resolutions


def down_path(ch: int, ch_mult: Sequence[int], num_res_blocks: int, resolutions: Sequence[int],
              attn_resolutions: Sequence[int], res, attn) -> tuple[nn.ModuleList, list[int], int]:
    """The UNet encoder: per level ``num_res_blocks`` (res block [+ attention]) stages, then a
    downsampling stage except at the last level. Returns (stages, skip channels, final channels)."""
    down = nn.ModuleList()
    skips, cur = [ch], ch
    levels = len(ch_mult)
    for level, mult in enumerate(ch_mult):
        for _ in range(num_res_blocks):
            layers = [res(cur, ch * mult)]
            cur = ch * mult
            if resolutions[level] in attn_resolutions:
                layers.append(attn(cur))
            down.append(Stage(layers))
            skips.append(cur)
        if level != levels - 1:
            down.append(Stage([Downsample(cur)]))
            skips.append(cur)
    return down, skips, cur


def build_encoder(net: nn.Module, in_channels: int, ch: int, ch_mult: Sequence[int], num_res_blocks: int,
                  resolutions: Sequence[int], attn_resolutions: Sequence[int], num_heads: int, dropout: float,
                  scale_shift_norm: bool, norm_groups: int):
    """Give ``net`` the UNet's time MLP, input conv, down path and middle block (created in this
    order, so seeded initialisation is the same for every net built on it). Returns
    (skip channels, final channels, res-block factory, attention factory) for the rest."""
    emb_dim = 4 * ch
    net.time_embed = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

    def res(i, o):
        return ResBlock(i, o, emb_dim, dropout, scale_shift_norm, norm_groups)

    def attn(c):
        return AttentionBlock(c, num_heads, norm_groups)

    net.input_conv = nn.Conv2d(in_channels, ch, 3, padding=1)
    net.down, skips, cur = down_path(ch, ch_mult, num_res_blocks, resolutions, attn_resolutions, res, attn)
    net.middle = Stage([res(cur, cur), attn(cur), res(cur, cur)])
    return skips, cur, res, attn


class UNet(nn.Module):
    """eps-prediction UNet; ``forward(x, t, y=None)`` with ``t`` a float timestep per example and
    ``y`` class labels (conditional nets only; ``None`` = the null class)."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, image_size: int = 32, ch: int = 128,
                 ch_mult: Sequence[int] = (1, 2, 2, 2), num_res_blocks: int = 2,
                 attn_resolutions: Sequence[int] = (16,), num_heads: int = 1, dropout: float = 0.1,
                 scale_shift_norm: bool = False, norm_groups: int = 32, channels_last: bool = False,
                 num_classes: int = 0):
        super().__init__()
        ch_mult = tuple(int(m) for m in ch_mult)
        resolutions = check_unet_config(image_size, ch, ch_mult, attn_resolutions, norm_groups)
        if int(num_classes) < 0:
            raise InputError(f"num_classes must be >= 0, got {num_classes}")
        self.image_size, self.ch, self.out_channels = image_size, ch, out_channels
        self.num_classes = int(num_classes)
        emb_dim = 4 * ch
        skips, cur, res, attn = build_encoder(self, in_channels, ch, ch_mult, num_res_blocks, resolutions,
                                              attn_resolutions, num_heads, dropout, scale_shift_norm, norm_groups)
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(ch_mult))):
            for i in range(num_res_blocks + 1):
                layers = [res(cur + skips.pop(), ch * mult)]
                cur = ch * mult
                if resolutions[level] in attn_resolutions:
                    layers.append(attn(cur))
                if level and i == num_res_blocks:
                    layers.append(Upsample(cur))
                self.up.append(Stage(layers))
        self.out = nn.Sequential(nn.GroupNorm(norm_groups, cur), nn.SiLU(),
                                 zero_init(nn.Conv2d(cur, out_channels, 3, padding=1)))
        if self.num_classes:  # created last: the other parameters initialise as in the unconditional net
            self.label_embed = nn.Embedding(self.num_classes + 1, emb_dim)  # row num_classes: null class
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        emb = add_label_embedding(self, self.time_embed(timestep_embedding(t, self.ch).to(x.dtype)), y)
        h = self.input_conv(x)
        hs = [h]
        for stage in self.down:
            h = stage(h, emb)
            hs.append(h)
        h = self.middle(h, emb)
        for stage in self.up:
            h = stage(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)
