"""Vision Transformers of the DINOv2 and CLIP feature spaces, with the official checkpoints' key names.

* :class:`DinoViT` -- DINOv2's ViT (Oquab et al. 2023, "DINOv2: Learning Robust Visual Features
  without Supervision"; ``facebookresearch/dinov2`` ``vision_transformer.py``): patch embedding,
  class token, learned position embedding for a 518x518 (37x37 patch) grid interpolated bicubically
  to the input's grid (scale factor ``(grid + 0.1) / 37``, the hub models' ``interpolate_offset``),
  pre-norm blocks ``x + ls1(attn(norm1(x)))``, ``x + ls2(mlp(norm2(x)))`` with LayerScale
  (Touvron et al. 2021, CaiT eq. 2), exact GELU, LayerNorm eps 1e-6, and the final norm; the
  feature is the normed class token (``x_norm_clstoken``). :func:`dinov2_vitl14` is ViT-L/14
  (width 1024, 24 blocks, 16 heads; 304,368,640 parameters, as ``dinov2_vitl14_pretrain.pth``).
* :class:`CLIPVisionTransformer` -- the image tower of CLIP (Radford et al. 2021, ``openai/CLIP``
  ``model.py``): bias-free patch convolution, class embedding, position embedding, ``ln_pre``,
  residual attention blocks with QuickGELU (``x * sigmoid(1.702 x)``), ``ln_post`` on the class
  token and the projection to the joint embedding. :func:`clip_vitb32` is ViT-B/32 (width 768,
  12 blocks, 12 heads, 224x224 input, 512-d embedding; 87,849,216 parameters).

Parameter names equal the official state dicts' (CLIP's without the ``visual.`` prefix), so a
checkpoint loads with ``load_state_dict(strict=True)``. :func:`init_random_` draws seeded weights
for pipeline tests; their features are not comparable to anything.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens: a conv with kernel = stride = patch size."""

    def __init__(self, patch: int, width: int, bias: bool = True):
        super().__init__()
        self.proj = nn.Conv2d(3, width, patch, stride=patch, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, grid*grid, width)


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection (DINOv2's ``attn.qkv`` / ``attn.proj``)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v
        return self.proj(y.transpose(1, 2).reshape(b, n, c))


class LayerScale(nn.Module):
    """Per-channel learned scale of a residual branch (CaiT, Touvron et al. 2021)."""

    def __init__(self, width: int, init: float = 1.0):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((width,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class DinoBlock(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=eps)
        self.attn = Attention(width, heads)
        self.ls1 = LayerScale(width)
        self.norm2 = nn.LayerNorm(width, eps=eps)
        self.mlp = Mlp(width, int(width * mlp_ratio))
        self.ls2 = LayerScale(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoViT(nn.Module):
    """DINOv2 backbone; ``forward(x)`` -> the normed class token (B, width) of a normalised image batch."""

    def __init__(self, patch: int = 14, width: int = 1024, depth: int = 24, heads: int = 16, mlp_ratio: float = 4.0,
                 pos_grid: int = 37, interpolate_offset: float = 0.1):
        super().__init__()
        self.patch, self.width, self.pos_grid, self.interpolate_offset = patch, width, pos_grid, interpolate_offset
        self.patch_embed = PatchEmbed(patch, width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + pos_grid * pos_grid, width))
        self.mask_token = nn.Parameter(torch.zeros(1, width))  # used in training only; part of the checkpoint
        self.blocks = nn.ModuleList(DinoBlock(width, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(width, eps=1e-6)

    def position_embedding(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """The class position and the patch grid's embedding resized bicubically to ``grid_h x grid_w``."""
        pos = self.pos_embed.float()
        if grid_h == grid_w == self.pos_grid:
            return pos
        m, off = self.pos_grid, self.interpolate_offset
        grid = pos[:, 1:].reshape(1, m, m, -1).permute(0, 3, 1, 2)
        kwargs = ({"scale_factor": ((grid_h + off) / m, (grid_w + off) / m)} if off else {"size": (grid_h, grid_w)})
        grid = F.interpolate(grid, mode="bicubic", antialias=False, **kwargs)
        if tuple(grid.shape[-2:]) != (grid_h, grid_w):  # pragma: no cover - guarded by the offset rule
            raise RuntimeError(f"position grid {tuple(grid.shape[-2:])} != {(grid_h, grid_w)}")
        return torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, -1)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2] // self.patch, x.shape[-1] // self.patch
        t = self.patch_embed(x)
        t = torch.cat([self.cls_token.expand(len(t), -1, -1), t], dim=1)
        t = t + self.position_embedding(h, w).to(t.dtype)
        for block in self.blocks:
            t = block(t)
        return self.norm(t)[:, 0]


class QuickGELU(nn.Module):
    """CLIP's activation ``x * sigmoid(1.702 x)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class CLIPBlock(nn.Module):
    """CLIP's ``ResidualAttentionBlock``: ``x + attn(ln_1(x))``, ``x + mlp(ln_2(x))``."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(width, 4 * width)), ("gelu", QuickGELU()),
                                              ("c_proj", nn.Linear(4 * width, width))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class CLIPTransformer(nn.Module):
    def __init__(self, width: int, depth: int, heads: int):
        super().__init__()
        self.resblocks = nn.ModuleList(CLIPBlock(width, heads) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x)
        return x


class CLIPVisionTransformer(nn.Module):
    """CLIP image tower; ``forward(x)`` -> the projected image embedding (B, embed_dim), not normalised."""

    def __init__(self, image_size: int = 224, patch: int = 32, width: int = 768, depth: int = 12, heads: int = 12,
                 embed_dim: int = 512):
        super().__init__()
        self.image_size, self.patch = image_size, patch
        grid = image_size // patch
        self.conv1 = nn.Conv2d(3, width, patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros(grid * grid + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = CLIPTransformer(width, depth, heads)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.zeros(width, embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.conv1(x).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(t.dtype).expand(len(t), 1, -1)
        t = torch.cat([cls, t], dim=1) + self.positional_embedding.to(t.dtype)
        t = self.transformer(self.ln_pre(t))
        return self.ln_post(t[:, 0]) @ self.proj


def dinov2_vitl14() -> DinoViT:
    return DinoViT(patch=14, width=1024, depth=24, heads=16, mlp_ratio=4.0, pos_grid=37)


def clip_vitb32() -> CLIPVisionTransformer:
    return CLIPVisionTransformer(image_size=224, patch=32, width=768, depth=12, heads=12, embed_dim=512)


@torch.no_grad()
def init_random_(net: nn.Module, seed: int = 0) -> nn.Module:
    """Seeded random weights, the same for a seed on every machine, for pipeline tests only: unit
    LayerNorms and LayerScales, zero biases, every other tensor N(0, 0.02^2) truncated at 2 std."""
    g = torch.Generator().manual_seed(int(seed))
    norms = {id(p) for m in net.modules() if isinstance(m, (nn.LayerNorm, LayerScale)) for p in m.parameters()}
    for name, p in sorted(net.named_parameters()):
        if id(p) in norms:
            p.fill_(0.0 if name.endswith(".bias") else 1.0)
        elif name.endswith("bias"):
            p.zero_()
        else:
            p.copy_((torch.randn(p.shape, generator=g) * 0.02).clamp_(-0.04, 0.04))
    return net


__all__ = ["CLIPVisionTransformer", "DinoViT", "clip_vitb32", "dinov2_vitl14", "init_random_"]
