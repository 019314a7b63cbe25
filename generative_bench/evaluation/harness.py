"""The evaluation harness: any sampler in, one results entry out.

One pass over the samples: draw a batch -> keep it (npz + grid) -> extract all features
(pool_3, spatial, logits) in the same pass -> metrics as pure functions of the features against
cached reference features. For 2-D toy data the metrics are computed in data space against the
exact mixture. The harness only sees ``sample_batches(n, generator, batch_size, **settings)``,
so a trained backend, an npz of samples and an image folder are scored the same way.
"""

from __future__ import annotations

import logging
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from generative_bench import distributed
from generative_bench.data.codec import check_uint8_images
from generative_bench.data.loading import load_split
from generative_bench.errors import InputError, WeightsUnavailableError
from generative_bench.evaluation.suite import IMAGE_METRICS, toy_suite
from generative_bench.io import atomic_write

log = logging.getLogger(__name__)

NOT_COMPARABLE = "NOT comparable to published figures"


def settings_tag(settings: dict[str, Any]) -> str:
    """A file-name-safe tag for sampler settings, e.g. ``method-ddim_steps-50``."""
    if not settings:
        return "default"
    parts = [f"{k}-{v}" for k, v in sorted(settings.items())]
    tag = "_".join(parts)
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in tag)


def batch_seed(seed: int, batch_index: int) -> int:
    """Seed of global sample batch ``batch_index`` (independent of how batches are sharded)."""
    return (int(seed) * 1_000_003 + int(batch_index)) % (2**63 - 1)


@contextmanager
def strict_fp32():
    """Features stay float32: TF32 matmuls/convolutions are switched off while extracting."""
    if not torch.cuda.is_available():
        yield
        return
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def concat_features(parts: list) -> dict[str, np.ndarray]:
    """Concatenate per-batch feature containers key by key (keys present in every part)."""
    keys = [k for k in parts[0].keys() if all(k in p.keys() for p in parts)]
    return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in keys}


def build_extractor(features_cfg: DictConfig, device: torch.device):
    """Instantiate the feature extractor; ``pretrained: auto`` falls back to random init, flagged."""
    cfg = OmegaConf.to_container(features_cfg, resolve=True)
    if cfg.get("pretrained") == "auto":
        try:
            return instantiate({**cfg, "pretrained": True}, device=device)
        except WeightsUnavailableError as e:
            warnings.warn(f"pretrained Inception weights unavailable ({e}); using a random-init network: "
                          f"every figure is {NOT_COMPARABLE}", stacklevel=2)
            return instantiate({**cfg, "pretrained": False}, device=device)
    return instantiate(cfg, device=device)


def save_grid(images: torch.Tensor, path: Path, nrow: int | None = None) -> None:
    """A PNG montage of uint8 NCHW images (2-px borders), written atomically."""
    import math

    from PIL import Image
    from torchvision.utils import make_grid

    n = len(images)
    grid = make_grid(images.float() / 255.0, nrow=nrow or max(1, int(math.ceil(math.sqrt(n)))), padding=2)
    arr = (grid.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    atomic_write(path, lambda f: Image.fromarray(arr).save(f, format="PNG"))


def save_samples_npz(samples: torch.Tensor, path: Path) -> None:
    """uint8 NCHW -> ``arr_0`` uint8 NHWC (the guided-diffusion format); points stay float32."""
    arr = samples.permute(0, 2, 3, 1).numpy() if samples.dtype == torch.uint8 else samples.numpy().astype(np.float32)
    atomic_write(path, lambda f: np.savez(f, arr_0=arr))


class Evaluator:
    """Scores samplers against one reference set with one feature extractor (both cached)."""

    def __init__(self, data_cfg: DictConfig, eval_cfg: DictConfig, device: torch.device | str = "cpu",
                 cache_dir: str | Path | None = None, seed: int = 0, progress: bool | None = None):
        self.data_cfg = data_cfg
        self.cfg = eval_cfg
        self.device = torch.device(device)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.seed = int(seed)
        self.progress = progress
        self.is_image = str(data_cfg.get("kind", "image")) == "image"
        self._extractor = None
        self._reference = None

    # ------------------------------------------------------------------ references
    @property
    def extractor(self):
        if self._extractor is None:
            self._extractor = build_extractor(self.cfg.features, self.device)
        return self._extractor

    def reference_description(self, split) -> dict[str, Any]:
        return {k: v for k, v in split.info.items() if k != "root"}

    def reference(self):
        """(description, features or held-out points + mixture) of the reference set, cached."""
        if self._reference is not None:
            return self._reference
        split = load_split(self.data_cfg, str(self.cfg.reference_split), subset=self.cfg.get("reference_subset"),
                           num_workers=0, progress=bool(self.progress))
        desc = self.reference_description(split)
        if not self.is_image:
            self._reference = (desc, {"points": split.x, "mixture": split.source})
            return self._reference
        from generative_bench.evaluation.reference import ReferenceCache

        ext = self.extractor
        key = {**desc, "extractor": ext.describe()}
        root = (self.cache_dir / "reference") if self.cache_dir else None

        def compute():
            x = split.x
            bs = int(self.cfg.features.get("batch_size", 100))
            nb = -(-len(x) // bs)
            local = {b: self._features([x[b * bs:(b + 1) * bs]]) for b in distributed.my_batches(nb)}
            return concat_features(distributed.gather_batches(local, nb))

        feats = ReferenceCache(root).get_or_compute(key, compute)
        self._reference = ({**desc, "cache_key": ReferenceCache.key_hash(key)}, feats)
        return self._reference

    # ------------------------------------------------------------------ evaluation
    def _draw(self, sampler, b: int, m: int, bs: int, settings: dict[str, Any]) -> torch.Tensor:
        """Global batch ``b`` (m items) of ``sampler``: seeded by (seed, b), so sharding-invariant."""
        if hasattr(sampler, "load_range"):  # fixed sample sets (npz, folders)
            return sampler.load_range(b * bs, b * bs + m)
        device = getattr(sampler, "device", torch.device("cpu"))
        g = torch.Generator(device=device).manual_seed(batch_seed(self.seed, b))
        if hasattr(sampler, "sample_batches"):
            return next(iter(sampler.sample_batches(m, generator=g, batch_size=m, **settings)))
        x = sampler.sample(m, generator=g)  # any object with sample(n, generator)
        return check_uint8_images(x, name=f"samples of {type(sampler).__name__}") if self.is_image else x

    def evaluate(self, sampler, settings: dict[str, Any] | None = None, num_samples: int | None = None,
                 out_dir: str | Path | None = None, name: str | None = None) -> dict[str, Any]:
        """Draw ``num_samples`` from ``sampler`` with ``settings``, compute every configured metric.

        Samples come in global batches of ``eval.batch_size`` seeded by their index; under
        torch.distributed rank r makes batches r, r+W, ... and the results are gathered in index
        order, so the metrics equal a single process's for the same seed.
        """
        settings = sampler.sampler_settings(**(settings or {})) if hasattr(sampler, "sampler_settings") else {}
        if hasattr(sampler, "check_count"):
            sampler.check_count(int(num_samples or self.cfg.num_samples))
        n = int(num_samples or self.cfg.num_samples)
        bs = int(self.cfg.batch_size)
        num_batches = -(-n // bs)
        ref_desc, ref = self.reference()
        from tqdm.auto import tqdm

        local: dict[int, tuple] = {}
        t_sample = features_s = 0.0
        mine = distributed.my_batches(num_batches)
        for b in tqdm(mine, desc=f"sample+features {name or ''}".strip(), unit="batch", leave=False,
                      disable=None if distributed.info().is_main and self.progress is not False else True):
            m = min(bs, n - b * bs)
            t0 = time.perf_counter()
            x = self._draw(sampler, b, m, bs, settings)
            t1 = time.perf_counter()
            feats = self._features([x]) if self.is_image else None
            features_s += time.perf_counter() - t1
            t_sample += t1 - t0
            local[b] = (x.cpu(), feats)
        parts = distributed.gather_batches(local, num_batches)
        samples = torch.cat([p[0] for p in parts])
        times = distributed.gather_objects((t_sample, features_s))
        t_sample, features_s = max(t for t, _ in times), max(f for _, f in times)
        warns: list[str] = []
        t1 = time.perf_counter()
        if self.is_image:
            feats = concat_features([p[1] for p in parts])
            metrics, metric_settings = self._image_metrics(feats, ref)
            extractor_desc = self.extractor.describe()
            comparable = bool(extractor_desc.get("comparable", False))
            if not comparable:
                warns.append(f"features from {extractor_desc.get('name')} "
                             f"({extractor_desc.get('warning') or 'not the standard pretrained weights'}): {NOT_COMPARABLE}")
        else:
            metrics, metric_settings = toy_suite(samples, ref["points"], ref["mixture"], self.cfg)
            extractor_desc = {"name": "data-space (2-D)", "comparable": True}
            comparable = True
        metrics_s = time.perf_counter() - t1
        entry = {
            "sampler": {"name": name or getattr(sampler, "name", type(sampler).__name__), "settings": settings},
            "num_samples": n,
            "metrics": metrics,
            "protocol": {"reference": ref_desc, "features": extractor_desc, "metric_settings": metric_settings,
                         "seed": self.seed, "num_samples": n, "batch_size": bs,
                         "processes": distributed.info().world_size},
            "comparable": comparable,
            "warnings": warns,
            "timings": {"sample_s": round(t_sample, 4), "sample_images_per_s": round(n / max(t_sample, 1e-9), 3),
                        "features_s": round(features_s, 4), "metrics_s": round(metrics_s, 4)},
        }
        if out_dir is not None and distributed.info().is_main:
            entry.update(self._write_samples(samples, Path(out_dir), settings_tag(settings)))
        return entry

    def _features(self, batches):
        with strict_fp32():
            return self.extractor.extract(batches)

    def _image_metrics(self, feats, ref) -> tuple[dict[str, float], dict[str, Any]]:
        metrics: dict[str, float] = {}
        used: dict[str, Any] = {}
        for name in self.cfg.metrics:
            if name not in IMAGE_METRICS:
                raise InputError(f"unknown metric {name!r} in eval.metrics; choose from {sorted(IMAGE_METRICS)}")
            values, settings = IMAGE_METRICS[name](feats, ref, self.cfg, self.seed)
            metrics.update(values)
            used[name] = settings
        return metrics, used

    def _write_samples(self, samples: torch.Tensor, out_dir: Path, tag: str) -> dict[str, str]:
        files = {}
        if self.cfg.get("save_samples", True):
            path = out_dir / "samples" / f"{tag}.npz"
            save_samples_npz(samples, path)
            files["samples_file"] = str(path.relative_to(out_dir))
        if self.is_image and int(self.cfg.get("grid_size", 0)) > 0:
            path = out_dir / "samples" / f"{tag}_grid.png"
            save_grid(samples[: int(self.cfg.grid_size)], path)
            files["grid_file"] = str(path.relative_to(out_dir))
        return files
