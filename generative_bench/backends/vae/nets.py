"""Encoder/decoder networks of the VAE.

* :class:`ConvVAENet` — images. Residual conv encoder that halves the resolution at each level
  (a 4x4 stride-2 stem keeps every hidden layer below full resolution, several times cheaper on
  a CPU), and a mirror decoder (nearest-neighbour upsampling + conv) that outputs the
  likelihood's parameters per pixel. The latent is either **spatial** (the GPU preset: 32x8x8)
  or **flat** (``latent_dim``; the small preset: 64-d). On a CPU budget of minutes the spatial
  latent reaches a lower bits/dim (IWAE 5.50 vs 6.25 bits/dim after 3 CPU minutes,
  reports/vae_cifar_cpu_spatial.md vs reports/vae_cifar_cpu.md), but samples from its i.i.d.
  prior decode to high-frequency texture; the flat latent gives globally coherent, blurry
  colour-blob samples, which is what image metrics reward.
* :class:`MLPVAENet` — vectors (the 2-D toy mixtures): MLP encoder and decoder, flat latent.

Both have ``latent_shape``, ``encode(x) -> (mean, log_var)`` of the diagonal Gaussian posterior
q(z|x) and ``decode(z) -> params`` (channels = ``out_channels``, given by the likelihood).
No batch statistics are used anywhere (no BatchNorm), so an example's likelihood does not depend
on the rest of its batch.

``num_classes > 0`` gives a conditional VAE (Sohn et al. 2015): q(z | x, y) and p(x | z, y), the
class entering as a learned per-class bias on the first hidden layer of the encoder (after the
stem conv / first linear) and of the decoder (after its first conv / linear); then
``encode(x, y)`` and ``decode(z, y)`` need the labels. The prior p(z) = N(0, I) stays
unconditional.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from generative_bench.errors import InputError

_ACTIVATIONS = {"silu": nn.SiLU, "elu": nn.ELU, "relu": nn.ReLU, "gelu": nn.GELU}

#: posterior log-variance is clamped to this range (exp(-30)..exp(10)) for numerical safety
LOGVAR_RANGE = (-30.0, 10.0)


def he_init_(module: nn.Module, output_layer: nn.Module | None = None, output_gain: float = 0.1) -> None:
    """He-normal weights and zero biases for every conv/linear layer (He et al. 2015).

    PyTorch's default init shrinks the signal at each layer, so a deep un-normalised decoder
    starts almost blind to z and learns slowly. Residual blocks keep their zero-initialised
    last conv (identity at start); ``output_layer`` gets ``output_gain`` times He scale, so the
    initial output is close to its bias, which the likelihood sets (``initial_bias``).
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        elif isinstance(m, nn.ConvTranspose2d):  # weight (in, out, k, k): fan-in is in * k * k / stride**2
            fan_in = m.weight.shape[0] * m.weight[0, 0].numel() / (m.stride[0] * m.stride[1])
            nn.init.normal_(m.weight, std=(2.0 / fan_in) ** 0.5)
        else:
            continue
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    for m in module.modules():
        if isinstance(m, ResBlock):
            nn.init.zeros_(m.body[-1].weight)
    if output_layer is not None:
        with torch.no_grad():
            output_layer.weight.mul_(output_gain)


def _activation(name: str) -> type[nn.Module]:
    if name not in _ACTIVATIONS:
        raise InputError(f"unknown activation {name!r}; choose one of {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]


class ResBlock(nn.Module):
    """x + conv(act(conv(act(x)))), the last conv zero-initialised so every block starts as identity."""

    def __init__(self, channels: int, activation: str = "silu"):
        super().__init__()
        act = _activation(activation)
        self.body = nn.Sequential(act(), nn.Conv2d(channels, channels, 3, padding=1), act(),
                                  nn.Conv2d(channels, channels, 3, padding=1))
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class _EncoderDecoder(nn.Module):
    """``encoder`` (x -> mean and log-variance stacked on dim 1) and ``decoder`` (z -> likelihood
    parameters), with the interface the VAE backend uses."""

    encoder: nn.Module
    decoder: nn.Sequential

    @property
    def output_layer(self) -> nn.Module:
        """The last layer; its bias holds the likelihood's initial parameters."""
        return self.decoder[-1]

    num_classes: int = 0

    def _add_label_embeddings(self, num_classes: int) -> None:
        """Per-class biases for the outputs of the first encoder and decoder layers (created after
        every other parameter, so those initialise as in the unconditional net)."""
        if int(num_classes) < 0:
            raise InputError(f"num_classes must be >= 0, got {num_classes}")
        self.num_classes = int(num_classes)
        if self.num_classes:
            self.enc_label_embed = nn.Embedding(self.num_classes, _out_size(self.encoder[0]))
            self.dec_label_embed = nn.Embedding(self.num_classes, _out_size(self.decoder[0]))

    def _labels(self, y: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        name = type(self).__name__
        if not self.num_classes:
            if y is not None:
                raise InputError(f"{name} is unconditional (num_classes=0) but got class labels")
            return None
        if y is None:
            raise InputError(f"{name} is class-conditional (num_classes={self.num_classes}): pass the labels y")
        y = torch.as_tensor(y).long().reshape(-1)
        if len(y) != batch:
            raise InputError(f"{name}: got {len(y)} class labels for a batch of {batch}")
        return y

    @staticmethod
    def _run(layers: nn.Sequential, x: torch.Tensor, embed: nn.Embedding, y: torch.Tensor) -> torch.Tensor:
        """``layers(x)`` with ``embed(y)`` added (per channel / unit) to the first layer's output."""
        h = layers[0](x)
        bias = embed(y.to(h.device)).to(h.dtype)
        h = h + bias.view(*bias.shape, *([1] * (h.ndim - 2)))
        for layer in layers[1:]:
            h = layer(h)
        return h

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        y = self._labels(y, len(x))
        out = self.encoder(x) if y is None else self._run(self.encoder, x, self.enc_label_embed, y)
        mean, log_var = out.chunk(2, dim=1)
        return mean, log_var.clamp(*LOGVAR_RANGE)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        y = self._labels(y, len(z))
        return self.decoder(z) if y is None else self._run(self.decoder, z, self.dec_label_embed, y)


def _out_size(layer: nn.Module) -> int:
    """Channels of a conv's output, units of a linear's."""
    return int(layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels)


class ConvVAENet(_EncoderDecoder):
    """Residual conv encoder/decoder with a spatial latent of ``latent_channels`` channels.

    ``stem_stride`` 1: a 3x3 stem at full resolution; 2: a 4x4 stride-2 stem (and a 4x4
    stride-2 transposed-conv head in the decoder), so no hidden layer runs at full resolution,
    which is several times cheaper on a CPU. ``channels[i]`` is the width at resolution
    ``R / (stem_stride * 2**i)``; the latent is ``(latent_channels, R / (stem_stride *
    2**(L-1)))`` squared for ``L = len(channels)``. ``res_blocks`` residual blocks per level in
    both encoder and decoder.

    ``latent_dim`` (optional) replaces the spatial latent by a flat vector of that size: a linear
    map from the last feature map to (mean, log-variance), and back in the decoder (the classic
    VAE of Kingma & Welling 2014). Its prior samples are smooth, globally coherent images (colour
    blobs after minutes of CPU training), where the i.i.d. prior of a spatial latent decodes to
    high-frequency texture; the spatial latent reaches a lower bits/dim sooner.
    """

    def __init__(self, data_shape: Sequence[int], out_channels: int, channels: Sequence[int] = (64, 128),
                 latent_channels: int = 16, res_blocks: int = 1, stem_stride: int = 2, activation: str = "silu",
                 latent_dim: int | None = None, num_classes: int = 0):
        super().__init__()
        c_in, h, w = (int(s) for s in data_shape)
        levels = len(channels)
        if levels < 1:
            raise InputError("ConvVAENet.channels needs at least one entry")
        if stem_stride not in (1, 2):
            raise InputError(f"ConvVAENet.stem_stride must be 1 or 2, got {stem_stride}")
        factor = stem_stride * 2 ** (levels - 1)
        if h % factor or w % factor:
            raise InputError(f"image size {h}x{w} is not divisible by stem_stride * 2**(len(channels)-1) = {factor}; "
                             "use fewer levels in model.backend.image_net.channels")
        feature_shape = (int(latent_channels), h // factor, w // factor)
        self.latent_shape = feature_shape if latent_dim is None else (int(latent_dim),)
        act = _activation(activation)
        ch = [int(c) for c in channels]

        stem = nn.Conv2d(c_in, ch[0], 3, padding=1) if stem_stride == 1 else nn.Conv2d(c_in, ch[0], 4, 2, 1)
        enc: list[nn.Module] = [stem]
        for i, c in enumerate(ch):
            enc += [ResBlock(c, activation) for _ in range(res_blocks)]
            if i + 1 < levels:
                enc += [act(), nn.Conv2d(c, ch[i + 1], 4, stride=2, padding=1)]
        enc += [act(), nn.Conv2d(ch[-1], 2 * latent_channels, 1)]
        dec: list[nn.Module] = [nn.Conv2d(latent_channels, ch[-1], 3, padding=1)]
        if latent_dim is not None:  # flat latent: linear maps to and from the last feature map
            flat = feature_shape[0] * feature_shape[1] * feature_shape[2]
            enc[-1] = nn.Conv2d(ch[-1], latent_channels, 1)
            enc += [act(), nn.Flatten(), nn.Linear(flat, 2 * int(latent_dim))]
            dec = [nn.Linear(int(latent_dim), flat), nn.Unflatten(1, feature_shape), act(), *dec]
        self.encoder = nn.Sequential(*enc)

        for i in reversed(range(levels)):
            dec += [ResBlock(ch[i], activation) for _ in range(res_blocks)]
            if i > 0:
                dec += [nn.Upsample(scale_factor=2, mode="nearest"), act(), nn.Conv2d(ch[i], ch[i - 1], 3, padding=1)]
        head = (nn.Conv2d(ch[0], int(out_channels), 3, padding=1) if stem_stride == 1
                else nn.ConvTranspose2d(ch[0], int(out_channels), 4, 2, 1))
        dec += [act(), head]
        self.decoder = nn.Sequential(*dec)
        he_init_(self, output_layer=head)
        self._add_label_embeddings(num_classes)


def _mlp(sizes: Sequence[int], activation: str) -> nn.Sequential:
    act = _activation(activation)
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i + 2 < len(sizes):
            layers.append(act())
    return nn.Sequential(*layers)


class MLPVAENet(_EncoderDecoder):
    """MLP encoder/decoder for vector data: ``depth`` hidden layers of ``hidden`` units each."""

    def __init__(self, data_shape: Sequence[int], out_channels: int, hidden: int = 128, depth: int = 2,
                 latent_dim: int = 2, activation: str = "silu", num_classes: int = 0):
        super().__init__()
        if len(data_shape) != 1:
            raise InputError(f"MLPVAENet needs vector data (shape [d]), got shape {list(data_shape)}")
        d = int(data_shape[0])
        self.latent_shape = (int(latent_dim),)
        self.encoder = _mlp([d] + [hidden] * depth + [2 * latent_dim], activation)
        self.decoder = _mlp([latent_dim] + [hidden] * depth + [int(out_channels)], activation)
        he_init_(self, output_layer=self.decoder[-1])
        self._add_label_embeddings(num_classes)


__all__ = ["ConvVAENet", "MLPVAENet", "ResBlock"]
