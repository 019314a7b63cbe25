"""The FID Inception-v3 (TF ``inception-2015-12-05`` graph) in PyTorch, one pass for every metric.

Architecture and state-dict keys follow the network that pytorch-fid and torch-fidelity load from
``pt_inception-2015-12-05-6726825d.pth`` (torchvision key names, 1008 classes, BatchNorm
eps=1e-3, no auxiliary head), including the three places where the TF graph differs from
torchvision's Inception3: average pools that ignore padding (``count_include_pad=False``) in the
A/C/E blocks, and a 3x3 *max* pool in the pool branch of the last E block (``Mixed_7c``).

Preprocessing is the one baked into the TF graph: uint8 -> float32, TF-1.x ``ResizeBilinear`` to
299x299 (``align_corners=False``, no half-pixel centres), then ``(x - 128) / 128``.

One forward pass returns the three feature sets of the evaluation harness:

* ``pool``    (N, 2048): ``pool_3``, the global average pool after ``Mixed_7c`` (FID, KID, P/R).
* ``spatial`` (N, 2023): sFID features. guided-diffusion reads the TF tensor ``mixed_6/conv:0``
  and keeps ``[..., :7]`` of the NHWC map. In the TF graph the eleven mixed blocks are named
  ``mixed, mixed_1 .. mixed_10`` (= Mixed_5b, 5c, 5d, 6a, 6b, 6c, 6d, 6e, 7a, 7b, 7c), and inside a
  block ``conv`` is the 1x1 branch (torch-fidelity's TF->PyTorch weight map sends
  ``mixed_6/conv/conv2d_params`` to ``Mixed_6d.branch1x1.conv``); the tensor named ``mixed_6/conv``
  is that layer's output after BatchNorm and ReLU. So the features are the first 7 channels of
  ``Mixed_6d.branch1x1`` (equivalently of the ``Mixed_6d`` output, whose concat starts with that
  branch) -- *not* ``Mixed_6e`` -- flattened in TF's (h, w, c) order: 17 * 17 * 7 = 2023 values,
  so that statistics match guided-diffusion's ``mu_s`` / ``sigma_s`` reference batches.
* ``logits``  (N, 1008): ``pool_3 @ fc.weight.T`` without the bias: torch-fidelity's
  ``logits_unbiased`` and guided-diffusion's ``softmax/logits/MatMul``, the Inception Score input.

:meth:`FIDInceptionV3.fuse_` folds every BatchNorm into its convolution (exact in real arithmetic,
done in float64), runs each conv + bias + ReLU as one oneDNN call with prepacked weights on
CPU, and average-pools the pool branches after their 1x1 conv instead of before: pure
speed-ups, exact in real arithmetic (features agree with the unfused net to ~1e-6 relative).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

INPUT_SIZE = 299
NUM_CLASSES = 1008
POOL_DIM = 2048
SPATIAL_CHANNELS = 7
SPATIAL_DIM = 17 * 17 * SPATIAL_CHANNELS
BN_EPS = 1e-3


# ----------------------------------------------------------------------------- preprocessing
def _tf1_source_index(in_size: int, out_size: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Legacy TF-1 sampling grid: ``src = dst * (in / out)`` in float32 (no half-pixel offset)."""
    scale = torch.tensor(in_size / out_size, dtype=torch.float32)
    src = torch.arange(out_size, dtype=torch.float32) * scale
    lo = src.long()  # src >= 0, so truncation == floor
    hi = (lo + 1).clamp_max(in_size - 1)
    frac = src - lo.float()
    return lo.to(device), hi.to(device), frac.to(device)


def tf1_resize_bilinear(x: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """Bilinear resize of an NCHW batch to ``size x size`` exactly as TF-1.x ``ResizeBilinear``
    (align_corners=False, half_pixel_centers=False; tensorflow/core/kernels/resize_bilinear_op.cc).

    Interpolates along the width first, then the height, each as ``a + (b - a) * t`` in float32,
    which is TF's arithmetic (and torch-fidelity's ``interpolate_bilinear_2d_like_tensorflow1x``,
    method 'slow'). Works on an NHWC copy and returns a channels_last NCHW float32 tensor.
    """
    if x.ndim != 4:
        raise ValueError(f"expected an NCHW batch, got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    xh = x.permute(0, 2, 3, 1).to(torch.float32)  # N, H, W, C
    if (h, w) == (size, size):  # scale 1: every weight is 0, TF returns the input unchanged
        out = xh.contiguous()
        return (out.clone() if out.data_ptr() == x.data_ptr() else out).permute(0, 3, 1, 2)  # never alias x
    lo, hi, t = _tf1_source_index(w, size, x.device)
    a = xh.index_select(2, lo)
    rows = xh.index_select(2, hi).sub_(a).mul_(t.view(1, 1, size, 1)).add_(a)  # N, H, size, C
    lo, hi, t = _tf1_source_index(h, size, x.device)
    a = rows.index_select(1, lo)
    out = rows.index_select(1, hi).sub_(a).mul_(t.view(1, size, 1, 1)).add_(a)  # N, size, size, C
    return out.permute(0, 3, 1, 2)


def tf_inception_input(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW (any size) -> the graph's network input: resize to 299, then (x - 128) / 128."""
    x = tf1_resize_bilinear(x_uint8, INPUT_SIZE)
    return x.sub_(128.0).mul_(1.0 / 128.0)  # / 128 == * 2**-7 exactly


# ----------------------------------------------------------------------------- building blocks
def _onednn_pointwise():
    """oneDNN's fused conv+bias+ReLU op (what ``torch.compile`` uses on CPU), or None."""
    try:
        return torch.ops.mkldnn._convolution_pointwise
    except (AttributeError, RuntimeError):
        return None


_ONEDNN_OK: bool | None = None


def onednn_fused_conv_available() -> bool:
    """True when the fused oneDNN conv runs here and matches ``F.conv2d`` + ReLU (probed once)."""
    global _ONEDNN_OK
    if _ONEDNN_OK is None:
        _ONEDNN_OK = False
        op = _onednn_pointwise()
        if op is not None and torch.backends.mkldnn.is_available():
            try:
                g = torch.Generator().manual_seed(0)
                x = torch.randn(2, 8, 9, 9, generator=g).contiguous(memory_format=torch.channels_last)
                w, b = torch.randn(16, 8, 3, 3, generator=g), torch.randn(16, generator=g)
                packed = torch._C._nn.mkldnn_reorder_conv2d_weight(w.to_mkldnn(), [1, 1], [2, 2], [1, 1], 1, list(x.shape))
                ref = F.relu(F.conv2d(x, w, b, stride=2, padding=1))
                with torch.inference_mode():
                    outs = [op(x, ww, b, [1, 1], [2, 2], [1, 1], 1, "relu", [], "") for ww in (w, packed)]
                _ONEDNN_OK = all(torch.allclose(o, ref, rtol=1e-5, atol=1e-5) for o in outs)
            except Exception:  # noqa: BLE001 - any failure means: use the plain path
                _ONEDNN_OK = False
    return _ONEDNN_OK


class FusedConv(nn.Module):
    """Conv2d with the BatchNorm folded into (weight, bias), then ReLU.

    On CPU float32 this is one oneDNN call with the ReLU as a post-op and the weight prepacked
    into oneDNN's blocked layout (the kernels are the same as ``F.conv2d``'s; only the separate
    passes for BatchNorm, ReLU and the per-call weight reorder disappear). Elsewhere (CUDA, no
    oneDNN) it is ``relu(conv2d(x, weight, bias))``.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, stride, padding):
        super().__init__()
        self.register_buffer("weight", weight.contiguous())
        self.register_buffer("bias", bias.contiguous())
        self.stride, self.padding = list(stride), list(padding)
        self._packed: tuple[tuple[int, ...], torch.Tensor] | None = None  # (input shape, weight)

    def _cpu_weight(self, x: torch.Tensor) -> torch.Tensor:
        """The weight prepacked for the largest batch seen; smaller batches reuse it."""
        if self._packed is None or x.shape[0] > self._packed[0][0] or x.shape[1:] != self._packed[0][1:]:
            packed = torch._C._nn.mkldnn_reorder_conv2d_weight(
                self.weight.to_mkldnn(), self.padding, self.stride, [1, 1], 1, list(x.shape)
            )
            self._packed = (tuple(x.shape), packed)
        return self._packed[1]

    def forward(self, x, relu: bool = True):
        if x.device.type == "cpu" and x.dtype == torch.float32 and onednn_fused_conv_available():
            op = _onednn_pointwise()
            post = "relu" if relu else "none"
            return op(x, self._cpu_weight(x), self.bias, self.padding, self.stride, [1, 1], 1, post, [], "")
        y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding)
        return F.relu_(y) if relu else y

    def _apply(self, fn, recurse=True):
        self._packed = None  # device/dtype moves invalidate the prepacked copy
        return super()._apply(fn, recurse)


class BasicConv2d(nn.Module):
    """conv (no bias) -> BatchNorm(eps=1e-3) -> ReLU; :meth:`fuse_` turns it into one FusedConv."""

    def __init__(self, cin: int, cout: int, **kw):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)

    def forward(self, x):
        if isinstance(self.conv, FusedConv):
            return self.conv(x)
        return F.relu(self.bn(self.conv(x)), inplace=True)

    def after_avg3(self, x):
        """``self(avg_pool_3x3(x))`` (the A/C/E pool branch). Once fused, computed as
        ``relu(avg_pool(conv(x) + b))``: a padding-ignoring average pool is a per-channel convex
        combination, so it commutes with a 1x1 conv and its bias, and pooling the conv's few
        output channels is cheaper than pooling the block's many input channels."""
        if isinstance(self.conv, FusedConv) and self.conv.weight.shape[-2:] == (1, 1):
            return F.relu_(_avg3(self.conv(x, relu=False)))
        return self(_avg3(x))

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) of the conv with the eval-mode BatchNorm folded in, computed in float64:
        w' = w * gamma / sqrt(var + eps), b' = beta - mean * gamma / sqrt(var + eps)."""
        bn = self.bn
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        w = self.conv.weight.double() * scale.view(-1, 1, 1, 1)
        b = bn.bias.double() - bn.running_mean.double() * scale
        return w.to(self.conv.weight.dtype), b.to(self.conv.weight.dtype)

    def fuse_(self) -> None:
        if not isinstance(self.conv, FusedConv):
            w, b = self.folded()
            self.conv, self.bn = FusedConv(w, b, self.conv.stride, self.conv.padding), nn.Identity()


def _avg3(x):
    """TF's SAME 3x3/1 average pool: padded zeros are not counted."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class _Block(nn.Module):
    """An Inception block; :meth:`fuse_` folds the BatchNorm of every conv it contains."""

    def fuse_(self) -> None:
        for m in self.children():
            if isinstance(m, BasicConv2d):
                m.fuse_()


class InceptionA(_Block):
    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

    def forward(self, x):
        b1, b5, b3 = self.branch1x1(x), self.branch5x5_1(x), self.branch3x3dbl_1(x)
        bp = self.branch_pool.after_avg3(x)
        b5 = self.branch5x5_2(b5)
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(b3))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(_Block):
    """Grid reduction 35 -> 17 (Mixed_6a); unchanged from torchvision."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([b3, bd, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionC(_Block):
    def __init__(self, cin: int, channels_7x7: int):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x):
        b1, b7, bd = self.branch1x1(x), self.branch7x7_1(x), self.branch7x7dbl_1(x)
        bp = self.branch_pool.after_avg3(x)
        b7 = self.branch7x7_3(self.branch7x7_2(b7))
        for i in (2, 3, 4, 5):
            bd = getattr(self, f"branch7x7dbl_{i}")(bd)
        return torch.cat([b1, b7, bd, bp], 1)


class InceptionD(_Block):
    """Grid reduction 17 -> 8 (Mixed_7a); unchanged from torchvision."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x):
        b3, b7 = self.branch3x3_1(x), self.branch7x7x3_1(x)
        b3 = self.branch3x3_2(b3)
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(b7)))
        return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(_Block):
    """Mixed_7b (``pool='avg'``, padding-ignoring) and Mixed_7c (``pool='max'``: the TF graph's
    max pool, where the paper and torchvision use an average pool)."""

    def __init__(self, cin: int, pool: str):
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool
        self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x):
        b1, b3, bd = self.branch1x1(x), self.branch3x3_1(x), self.branch3x3dbl_1(x)
        if self.pool == "avg":
            bp = self.branch_pool.after_avg3(x)
        else:
            bp = self.branch_pool(F.max_pool2d(x, 3, stride=1, padding=1))
        bd = self.branch3x3dbl_2(bd)
        # one concatenation of the six outputs (the branches' own concatenations are its slices)
        return torch.cat([b1, self.branch3x3_2a(b3), self.branch3x3_2b(b3),
                          self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd), bp], 1)


# ----------------------------------------------------------------------------- the network
class FIDInceptionV3(nn.Module):
    """Inception-v3 of the TF FID graph; ``forward(uint8 NCHW)`` -> {'pool', 'spatial', 'logits'}.

    ``load_state_dict(torch.load('pt_inception-2015-12-05-6726825d.pth', weights_only=True), strict=True)`` works
    as is. Call :meth:`fuse_` after loading for inference speed (the keys change afterwards).
    """

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool="avg")
        self.Mixed_7c = InceptionE(2048, pool="max")
        self.fc = nn.Linear(POOL_DIM, NUM_CLASSES)
        self.fused = False

    @torch.no_grad()
    def fuse_(self) -> "FIDInceptionV3":
        """Fold every BatchNorm into its conv (in place, for inference only)."""
        if not self.fused:
            for m in list(self.children()):
                if hasattr(m, "fuse_"):
                    m.fuse_()
            self.fused = True
        return self.eval().requires_grad_(False)

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Network body on a preprocessed float batch (N, 3, 299, 299) in [-1, 1]."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d"):
            x = getattr(self, name)(x)
        # TF 'mixed_6/conv:0' = Mixed_6d.branch1x1 = the first channels of Mixed_6d's output
        spatial = x[:, :SPATIAL_CHANNELS].permute(0, 2, 3, 1).reshape(x.shape[0], -1)
        for name in ("Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(self, name)(x)
        pool = x.mean(dim=(2, 3))
        # one matmul gives the unbiased logits; the biased ones are logits + fc.bias
        logits = pool @ self.fc.weight.t()
        return {"pool": pool, "spatial": spatial, "logits": logits}

    def forward(self, x_uint8: torch.Tensor) -> dict[str, torch.Tensor]:
        if x_uint8.dtype != torch.uint8 or x_uint8.ndim != 4 or x_uint8.shape[1] != 3:
            raise ValueError(f"expected uint8 (N, 3, H, W) images, got {x_uint8.dtype} {tuple(x_uint8.shape)}")
        x = tf_inception_input(x_uint8)
        p = self.fc.weight
        return self.features(x.to(dtype=p.dtype, device=p.device))


@torch.no_grad()
def init_random_(net: FIDInceptionV3, seed: int = 0) -> FIDInceptionV3:
    """Seeded, deterministic random weights for tests and offline runs (NOT the FID network).

    Kaiming-normal convs, and BatchNorm statistics/affine drawn near identity (mean ~ N(0, 0.1),
    var ~ U(0.5, 2), gamma ~ U(0.5, 1.5), beta ~ N(0, 0.1)) so activations neither explode nor
    vanish through the 94 conv layers and a BatchNorm-folding bug would change the output.
    """
    if net.fused:
        raise ValueError("init_random_ needs the unfused network (call it before fuse_())")
    g = torch.Generator().manual_seed(int(seed))
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
            m.weight.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.copy_(torch.randn(c, generator=g) * 0.1)
            m.num_batches_tracked.zero_()
        elif isinstance(m, nn.Linear):
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (1.0 / m.in_features) ** 0.5)
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return net
