"""DINOv2 ViT-L/14 and CLIP ViT-B/32 feature spaces behind the harness's one-pass extractor surface.

* :class:`DINOv2Features` -- ``pool`` (N, 1024): the normed class token of DINOv2 ViT-L/14, the
  feature space of FD_DINOv2 (Stein et al. 2023, "Exposing flaws of generative model evaluation
  metrics and their unfair treatment of diffusion models", dgm-eval): images resized to 224x224
  (clean-fid's PIL bicubic, as dgm-eval), ImageNet mean/std normalisation. The FD/KD/P-R-D-C
  formulas then run on these features and are named ``FD_DINOv2``, ``KD_DINOv2``,
  ``precision_DINOv2``, ... (never FID).
* :class:`CLIPFeatures` -- ``clip`` (N, 512): the L2-normalised image embedding of CLIP ViT-B/32
  (224x224 torch bicubic as the CMMD reference code, CLIP's mean/std), the input of CMMD
  (metrics/cmmd.py; Jayasumana et al. 2024 use ViT-L/14@336px, so CMMD here is the ViT-B/32
  variant, and the record names the network).

Weights are plain state dicts read with ``torch.load(weights_only=True)`` from ``weights=`` or an
environment variable (``GBENCH_DINOV2_WEIGHTS`` / ``GBENCH_CLIP_WEIGHTS``) and checked against their
full sha256 before use (``sha256=``, or the known digest of the official file when there is one).
``pretrained=False`` draws seeded random weights (tests, pipeline checks); every description then
says **NOT comparable to published figures**. ``pretrained="auto"`` uses the weights when a file
is named and random init otherwise, with a warning.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from generative_bench.errors import InputError, WeightsUnavailableError
from generative_bench.evaluation import vit
from generative_bench.evaluation import weights as wts
from generative_bench.evaluation.domain.naming import metric_names
from generative_bench.evaluation.features import FeatureExtractor

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


RESIZES = {
    "clean_bicubic": "per-channel PIL BICUBIC on the float image (clean-fid / dgm-eval's pil_resize; antialiased "
                     "when shrinking), clipped to [0, 255]",
    "torch_bicubic": "torch bicubic interpolate (align_corners=False, no antialias, no clipping; "
                     "google-research/cmmd's _resize_bicubic)",
}


def resize_normalise(x_uint8: torch.Tensor, size: int, mean, std, mode: str = "torch_bicubic") -> torch.Tensor:
    """uint8 NCHW -> ``size`` x ``size`` by ``mode`` (:data:`RESIZES`) -> [0, 1] -> ``(x - mean) / std`` per channel."""
    if mode not in RESIZES:
        raise InputError(f"eval.features.resize={mode!r} is not a resize of this extractor; choose one of "
                         f"{list(RESIZES)}")
    if tuple(x_uint8.shape[-2:]) == (size, size):
        x = x_uint8.float() / 255.0
    elif mode == "clean_bicubic":
        from generative_bench.evaluation.resize import clean_bicubic

        x = clean_bicubic(x_uint8, size) / 255.0
    else:
        x = F.interpolate(x_uint8.float() / 255.0, size=(size, size), mode="bicubic", align_corners=False)
    m = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def resolve_weights(path: str | os.PathLike | None, env: str, sha256: str | None, known: str | None,
                    what: str, how: str) -> tuple[Path | None, str | None]:
    """(file, its verified full sha256), or (None, None) when no file is named."""
    path = path if path not in (None, "") else os.environ.get(env) or None
    if path is None:
        return None, None
    expected = (sha256 or known or "").lower()
    if not expected:
        raise InputError(f"{what} weights {path} given without their sha256: pass sha256=<64 hex digits of the "
                         f"file> (eval.features.sha256=...; `sha256sum {path}`) so that the exact weights are pinned")
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise InputError(f"{what} sha256 {expected!r} is not 64 hex digits; pass the file's full sha256")
    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsUnavailableError(f"{what} weights file {p} does not exist. {how}")
    digest = wts.file_sha256(p)
    if digest != expected:
        raise WeightsUnavailableError(f"{what} weights file {p} has sha256 {digest}, expected {expected}: the file is "
                                      f"corrupt, truncated or other weights. {how}")
    return p, digest


def read_state_dict(path: Path, what: str, prefix: str | None = None) -> dict[str, torch.Tensor]:
    """A tensors-only state dict (``weights_only=True``); keys under ``prefix`` when the file has them."""
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise WeightsUnavailableError(f"could not read {what} weights {path} as a state dict ({e}); save one with "
                                      "torch.save(model.state_dict(), FILE)") from e
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsUnavailableError(f"{path} is not a state dict of tensors; save one with "
                                      "torch.save(model.state_dict(), FILE)")
    if prefix and any(k.startswith(prefix) for k in sd):
        sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    return sd


class ViTFeatures(FeatureExtractor):
    """Shared loading, fingerprint and preprocessing of the ViT extractors (subclasses set the rest)."""

    # "domain": the harness's kind for a feature space that is not Inception's, whose metrics carry their own
    # names (FD_DINOv2, never FID) and no Inception display scales (KID x10^3)
    kind = "domain"
    RESIZE_MODES = tuple(RESIZES)
    display = "ViT"
    feature_key = "pool"
    image_size = 224
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    env_weights = ""
    known_sha256: str | None = None
    official_file = ""
    state_prefix: str | None = None
    default_resize = "torch_bicubic"
    build: Callable[[], torch.nn.Module]

    def __init__(self, weights: str | os.PathLike | None = None, sha256: str | None = None,
                 pretrained: bool | str = "auto", seed: int = 0, device: str | torch.device = "cpu",
                 batch_size: int = 32, resize: str | None = None, net: torch.nn.Module | None = None):
        self.resize = str(resize or self.default_resize)
        if self.resize not in RESIZES:
            raise InputError(f"eval.features.resize={self.resize!r} is not a resize of {self.display}; choose one of "
                             f"{list(RESIZES)}")
        if int(batch_size) < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        self.device, self.batch_size, self.seed = torch.device(device), int(batch_size), int(seed)
        if pretrained not in (True, False, "auto"):
            raise InputError(f"pretrained must be true, false or auto, got {pretrained!r}")
        path, self.file_sha256 = (None, None) if pretrained is False else resolve_weights(
            weights, self.env_weights, sha256, self.known_sha256, self.display, self.how_to_provide())
        if path is None and pretrained is True:
            raise WeightsUnavailableError(f"no {self.display} weights given. {self.how_to_provide()}")
        if path is None and pretrained == "auto":
            warnings.warn(f"no {self.display} weights given -- using random init: NOT comparable to published "
                          f"figures. {self.how_to_provide()}", stacklevel=2)
        self.pretrained = path is not None
        model = net if net is not None else type(self).build()
        if self.pretrained:
            try:
                model.load_state_dict(read_state_dict(path, self.display, self.state_prefix), strict=True)
            except RuntimeError as e:  # missing / unexpected keys or other shapes
                detail = " ".join(str(e).split())[:400]
                raise WeightsUnavailableError(f"{path} does not fit {self.display} ({detail}). "
                                              f"{self.how_to_provide()}") from e
            self.weights_path = str(path)
        else:
            vit.init_random_(model, self.seed)
            self.weights_path = None
        self.state_sha256 = wts.state_dict_sha256(model.state_dict())
        self.net = model.to(self.device).eval()
        self.dims = {self.feature_key: int(self._width())}

    def _width(self) -> int:
        raise NotImplementedError

    @classmethod
    def how_to_provide(cls) -> str:
        digest = (f"the official file's sha256 is {cls.known_sha256}" if cls.known_sha256 else
                  "pass its sha256 too (sha256=...; no digest of the official file is built in)")
        return (f"Provide the {cls.display} weights as a state dict file ({cls.official_file}): weights=PATH "
                f"(eval.features.weights) or {cls.env_weights}=PATH; {digest}. For a pipeline test use "
                f"pretrained=false (random init: NOT comparable to published figures).")

    def metric_names(self) -> dict[str, str]:
        return metric_names(self.display)

    def describe(self) -> dict[str, Any]:
        warning = None if self.pretrained else f"random-init {self.display}: NOT comparable to published figures"
        return {
            "name": self.name,
            "kind": self.kind,
            "architecture": type(self.net).__name__,
            "pretrained": self.pretrained,
            "comparable": self.pretrained,
            "weights": Path(self.weights_path).name if self.pretrained else f"random-init(seed={self.seed})",
            "weights_sha256": self.file_sha256 if self.pretrained else self.state_sha256,
            "state_dict_sha256": self.state_sha256,
            "warning": warning,
            "dims": dict(self.dims),
            "metric_names": self.metric_names(),
            "resize": self.resize,
            "preprocessing": f"{RESIZES[self.resize]} to {self.image_size}x{self.image_size}, /255, normalised with "
                             f"mean {self.mean} std {self.std}",
            "features": self.feature_doc,
        }

    feature_doc = ""

    def _forward(self, x_uint8: torch.Tensor) -> dict[str, torch.Tensor]:
        x = resize_normalise(x_uint8, self.image_size, self.mean, self.std, self.resize)
        return {self.feature_key: self._embed(x)}

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DINOv2Features(ViTFeatures):
    """DINOv2 ViT-L/14 class-token features ('pool', 1024-d) for FD_DINOv2 & co (module doc)."""

    name = "dinov2-vitl14"
    FEATURES = ("pool",)
    display = "DINOv2"
    env_weights = "GBENCH_DINOV2_WEIGHTS"
    official_file = "dinov2_vitl14_pretrain.pth from https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/"
    feature_doc = "pool: the normed class token (x_norm_clstoken), 1024-d"
    default_resize = "clean_bicubic"  # dgm-eval resizes with clean-fid's PIL bicubic
    build = staticmethod(vit.dinov2_vitl14)

    def _width(self) -> int:
        return self.net.width


class CLIPFeatures(ViTFeatures):
    """CLIP ViT-B/32 image embeddings ('clip', 512-d, L2-normalised) for CMMD (module doc)."""

    name = "clip-vitb32"
    FEATURES = ("clip",)
    display = "CLIP"
    feature_key = "clip"
    mean, std = CLIP_MEAN, CLIP_STD
    env_weights = "GBENCH_CLIP_WEIGHTS"
    # OpenAI publishes ViT-B-32.pt as a TorchScript archive (sha256 40d36571...950af, the digest in its URL), which
    # weights_only loading cannot read: its state dict, saved with torch.save, is the file to give, with its digest.
    official_file = ("the state dict of OpenAI's ViT-B-32.pt (sha256 40d365715913c9da98579312b702a82c18be219cc2a73407c4"
                     "526f58eba950af), e.g. torch.save(torch.jit.load('ViT-B-32.pt').state_dict(), FILE); keys with or "
                     "without the 'visual.' prefix")
    state_prefix = "visual."
    default_resize = "torch_bicubic"  # google-research/cmmd resizes with torch bicubic
    feature_doc = "clip: the projected image embedding (ln_post(class token) @ proj), L2-normalised, 512-d"
    build = staticmethod(vit.clip_vitb32)

    def _width(self) -> int:
        return int(self.net.proj.shape[1])

    def metric_names(self) -> dict[str, str]:
        return {"cmmd": "CMMD"}

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x).float(), dim=-1)


__all__ = ["CLIPFeatures", "DINOv2Features", "RESIZES", "ViTFeatures", "read_state_dict", "resize_normalise",
           "resolve_weights"]
