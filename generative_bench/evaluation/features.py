"""One pass over the images, every feature set the metrics need.

* :class:`Features` -- named float32 arrays of N rows each (``'pool'`` (N, 2048), ``'spatial'``
  (N, 2023), ``'logits'`` (N, 1008) for Inception; another extractor may provide a subset or
  others), plus the extractor's description; saved as ``.npz`` without pickles.
* :class:`FeatureExtractor` -- the generic surface: ``name``, ``describe()``, ``extract(batches)``,
  ``extract_tensor(x)``. Subclasses implement ``_forward(uint8 batch) -> {name: tensor}``.
* :class:`InceptionFeatures` -- the TF-faithful FID Inception-v3
  (:mod:`generative_bench.evaluation.inception`) with weights from
  :mod:`generative_bench.evaluation.weights`.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from generative_bench.data.codec import check_uint8_images
from generative_bench.errors import InputError, NotComparableWarning, WeightsUnavailableError
from generative_bench.evaluation import inception as inc
from generative_bench.evaluation import weights as wts
from generative_bench.io import atomic_write

RANDOM_INIT_WARNING = "random-init Inception: NOT comparable to published figures"
_META_KEY = "__meta__"


class Features:
    """Dict-like container of float32 feature arrays sharing the first dimension N.

    ``Features({'pool': a, 'logits': b}, meta)`` or ``Features(pool=a, logits=b)``;
    ``len(features)`` is N (the number of images); ``features['pool']`` an (N, D) array.
    """

    def __init__(self, arrays: dict[str, np.ndarray] | None = None, meta: dict[str, Any] | None = None, **named):
        arrays = {**(arrays or {}), **named}
        if not arrays:
            raise InputError("Features needs at least one named array")
        self._arrays: dict[str, np.ndarray] = {}
        n = None
        for key, a in arrays.items():
            a = np.asarray(a, dtype=np.float32)
            if a.ndim != 2:
                raise InputError(f"feature '{key}' must be 2-D (N, D), got shape {a.shape}")
            if n is not None and len(a) != n:
                raise InputError(f"feature '{key}' has {len(a)} rows, the others {n}")
            n = len(a)
            self._arrays[key] = a
        self.meta: dict[str, Any] = dict(meta or {})

    # dict-like access
    def __getitem__(self, key: str) -> np.ndarray:
        try:
            return self._arrays[key]
        except KeyError:
            raise KeyError(f"no feature '{key}'; this set has {sorted(self._arrays)}") from None

    def __contains__(self, key: object) -> bool:
        return key in self._arrays

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def keys(self):
        return self._arrays.keys()

    def items(self):
        return self._arrays.items()

    def get(self, key: str, default=None):
        return self._arrays.get(key, default)

    def as_dict(self) -> dict[str, np.ndarray]:
        return dict(self._arrays)

    def __len__(self) -> int:
        return len(next(iter(self._arrays.values())))

    @property
    def dims(self) -> dict[str, int]:
        return {k: int(a.shape[1]) for k, a in self._arrays.items()}

    def __repr__(self) -> str:
        return f"Features(n={len(self)}, dims={self.dims})"

    def subset(self, index) -> "Features":
        return Features({k: a[index] for k, a in self._arrays.items()}, self.meta)

    @staticmethod
    def concat(parts: Iterable["Features"]) -> "Features":
        parts = list(parts)
        if not parts:
            raise InputError("Features.concat needs at least one part")
        keys = list(parts[0].keys())
        for p in parts[1:]:
            if list(p.keys()) != keys:
                raise InputError(f"cannot concat features with keys {list(p.keys())} and {keys}")
        return Features({k: np.concatenate([p[k] for p in parts]) for k in keys}, parts[0].meta)

    def save(self, path: str | os.PathLike) -> Path:
        """Write an ``.npz`` (arrays + the description as a JSON string) atomically."""
        payload = dict(self._arrays)
        payload[_META_KEY] = np.array(json.dumps(self.meta, sort_keys=True, default=str))
        return atomic_write(path, lambda f: np.savez(f, **payload))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Features":
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files if k != _META_KEY}
                meta = json.loads(str(z[_META_KEY])) if _META_KEY in z.files else {}
        except (OSError, ValueError) as e:
            raise InputError(f"could not read features from {path}: {e}") from e
        return cls(arrays, meta)


@contextlib.contextmanager
def strict_float32():
    """Full float32 inside: no TF32 on CUDA, no reduced-precision CPU matmuls (restored after)."""
    prec = torch.get_float32_matmul_precision()
    cudnn_tf32, mm_tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(prec)
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = cudnn_tf32, mm_tf32


class FeatureExtractor:
    """Generic surface of a feature extractor over uint8 NCHW images.

    Subclasses set ``name``, ``dims`` ({feature: width}), ``batch_size``, ``device`` and implement
    :meth:`_forward` (one batch of at most ``batch_size`` validated uint8 images on ``device``
    -> {feature: (n, width) float tensor}) and :meth:`describe`.
    """

    name: str = "features"
    dims: dict[str, int] = {}
    batch_size: int = 64
    device: torch.device = torch.device("cpu")
    channels: int | None = 3

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError

    def _forward(self, x_uint8: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _chunks(self, batches: Iterable) -> Iterator[torch.Tensor]:
        """Validate each incoming batch and cut it into pieces of at most ``batch_size``."""
        for i, b in enumerate(batches):
            if isinstance(b, np.ndarray):
                b = torch.from_numpy(b)
            check_uint8_images(b, name=f"{self.name} input batch {i}", channels=self.channels)
            for s in range(0, len(b), self.batch_size):
                yield b[s : s + self.batch_size]

    @torch.inference_mode()
    def extract(self, batches: Iterable, total: int | None = None, progress: bool = False) -> Features:
        """Features of every image in ``batches`` (an iterable of uint8 NCHW tensors), in order.

        Streams: only one batch of network inputs exists at a time. ``total`` (number of images)
        preallocates the output and drives the progress bar.
        """
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, desc=f"features ({self.name})", unit="img")
        out: dict[str, Any] = {}
        n = 0
        try:
            with strict_float32():
                for x in self._chunks(batches):
                    feats = self._forward(x.to(self.device, non_blocking=True))
                    m = len(x)
                    for k, v in feats.items():
                        v = v.detach().float().cpu().numpy()
                        if total is not None:
                            if k not in out:
                                out[k] = np.empty((total, v.shape[1]), np.float32)
                            if n + m > total:
                                raise InputError(f"{self.name}: got more than total={total} images")
                            out[k][n : n + m] = v
                        else:
                            out.setdefault(k, []).append(v)
                    n += m
                    if bar is not None:
                        bar.update(m)
        finally:
            if bar is not None:
                bar.close()
        if n == 0:
            raise InputError(f"{self.name}: no images to extract features from (empty input)")
        if total is not None and n != total:
            raise InputError(f"{self.name}: total={total} images announced but {n} received")
        arrays = {k: (v if total is not None else np.concatenate(v)) for k, v in out.items()}
        return Features(arrays, meta=self.describe())

    def extract_tensor(self, x_uint8: torch.Tensor, batch_size: int | None = None, progress: bool = False) -> Features:
        """Features of an in-memory uint8 NCHW tensor, ``batch_size`` images at a time."""
        check_uint8_images(x_uint8, name=f"{self.name} input", channels=self.channels)
        bs = int(batch_size or self.batch_size)
        if bs < 1:
            raise InputError(f"batch_size must be >= 1, got {bs}")
        saved, self.batch_size = self.batch_size, bs  # this call's forward-pass size
        try:
            return self.extract((x_uint8[i : i + bs] for i in range(0, len(x_uint8), bs)), total=len(x_uint8),
                                progress=progress)
        finally:
            self.batch_size = saved


def _preprocessing(mode: str) -> str:
    from generative_bench.evaluation.resize import DESCRIPTIONS

    return DESCRIPTIONS[mode]


class InceptionFeatures(FeatureExtractor):
    """FID Inception-v3 features: 'pool' (2048), 'spatial' (2023, sFID), 'logits' (1008, unbiased).

    ``pretrained=True`` loads ``pt_inception-2015-12-05-6726825d.pth`` (``weights`` path, or see
    :func:`generative_bench.evaluation.weights.resolve_inception_weights`); ``"auto"`` does the
    same but falls back to random init with a warning when they are unavailable (a file named by
``weights`` or ``GBENCH_INCEPTION_WEIGHTS`` that is missing or wrong stays an error); ``pretrained=False``
    draws seeded random weights (``weights`` is then ignored) whose outputs are marked NOT
    comparable to published figures. ``describe()`` carries the fingerprint the results record.
    """

    name = "inception-v3-fid"
    FEATURES = ("pool", "spatial", "logits")
    dims = {"pool": inc.POOL_DIM, "spatial": inc.SPATIAL_DIM, "logits": inc.NUM_CLASSES}

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        pretrained: bool | str = True,
        seed: int = 0,
        device: str | torch.device = "cpu",
        batch_size: int = 128,
        channels_last: bool = True,
        download: bool = True,
        resize: str = "tf1_bilinear",
    ):
        from generative_bench.evaluation import resize as rsz

        self.resize = rsz.check_mode(str(resize))
        if int(batch_size) < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.channels_last = bool(channels_last)
        self.seed = int(seed)
        path = None
        if pretrained == "auto":  # the real weights when they can be found, else flagged random init
            named = weights is not None or bool(os.environ.get(wts.ENV_WEIGHTS))
            try:
                path, self.file_sha256 = wts.resolve_inception_weights(weights, download=download)
            except WeightsUnavailableError:
                if named:  # a file the user named is wrong or missing: an error, never a silent fallback
                    raise
                warnings.warn(f"the FID Inception weights ({wts.FILENAME}, sha256 {wts.KNOWN_SHA256[:12]}...) are not in "
                              f"{wts.cache_dir()} and could not be downloaded: using a {RANDOM_INIT_WARNING}; "
                              f"set {wts.ENV_WEIGHTS}=PATH to the file (eval.features.pretrained=true makes this an "
                              "error)", NotComparableWarning, stacklevel=2)
        elif pretrained:
            path, self.file_sha256 = wts.resolve_inception_weights(weights, download=download)
        self.pretrained = path is not None
        net = inc.FIDInceptionV3()
        if self.pretrained:
            self.weights_path = str(path)
            net.load_state_dict(wts.load_state_dict(path), strict=True)
        else:
            inc.init_random_(net, self.seed)
            self.weights_path, self.file_sha256 = None, None
        self.state_sha256 = wts.state_dict_sha256(net.state_dict())
        net.fuse_().to(self.device)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = net

    def describe(self) -> dict[str, Any]:
        d = {
            "name": self.name,
            "kind": "inception",
            "pretrained": self.pretrained,
            "comparable": self.pretrained,
            "weights": wts.FILENAME if self.pretrained else f"random-init(seed={self.seed})",
            # the file's sha256 for real weights; the state dict's content hash for random init
            "weights_sha256": self.file_sha256 if self.pretrained else self.state_sha256,
            "state_dict_sha256": self.state_sha256,
            "warning": None if self.pretrained else RANDOM_INIT_WARNING,
            "dims": dict(self.dims),
            "resize": self.resize,
            "preprocessing": _preprocessing(self.resize),
            "spatial": "TF mixed_6/conv[..., :7] = Mixed_6d.branch1x1 channels 0-6, (h, w, c) order",
            "logits": "unbiased: pool_3 @ fc.weight.T (no bias)",
        }
        return d

    def _forward(self, x_uint8: torch.Tensor) -> dict[str, torch.Tensor]:
        from generative_bench.evaluation.resize import inception_input

        x = inception_input(x_uint8, self.resize)
        if not self.channels_last:
            x = x.contiguous()
        return self.net.features(x)
