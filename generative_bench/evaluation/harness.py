"""The evaluation harness: any sampler in, one results entry out.

One pass over the samples: draw a batch -> keep it (npz + grid) -> extract all features
(pool_3, spatial, logits) in the same pass -> metrics as pure functions of the features against
cached reference features. For 2-D toy data the metrics are computed in data space against the
exact mixture. The harness only sees the sampler contract of :mod:`generative_bench.sampler`
(``resolve_settings`` / ``draw`` / ``network_evaluations`` / ``describe``), so a trained
backend, an npz of samples and an image folder are scored the same way; which metrics run and
how they are named comes from :mod:`generative_bench.evaluation.schema`.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from generative_bench import distributed
from generative_bench.data.codec import UINT8_RULE
from generative_bench.data.loading import load_split
from generative_bench.errors import InputError
from generative_bench.evaluation import suite  # noqa: F401  (registers the metric declarations)
from generative_bench.evaluation.sample_sets import as_sampler
from generative_bench.evaluation.metrics.order import sample_order
from generative_bench.evaluation.schema import MetricInputs, metric
from generative_bench.io import atomic_write
from generative_bench.sampler import DEFAULT_CHUNK, IMAGE_SEED_RULE, SampleBatch

log = logging.getLogger(__name__)

NOT_COMPARABLE = "NOT comparable to published figures"


def settings_tag(settings: dict[str, Any]) -> str:
    """A file-name-safe tag for sampler settings, e.g. ``method-ddim_steps-50``."""
    if not settings:
        return "default"
    parts = [f"{k}-{v}" for k, v in sorted(settings.items())]
    tag = "_".join(parts)
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in tag)


def samples_tag(settings: dict[str, Any], n: int, seed: int) -> str:
    """File stem of a sample set: its settings, size and seed (``gbench sample`` and ``evaluate`` agree)."""
    return f"{settings_tag(settings)}_n{int(n)}_seed{int(seed)}"


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
    """Instantiate the feature extractor (``pretrained: auto`` falls back to a flagged random-init
    Inception inside :class:`~generative_bench.evaluation.features.InceptionFeatures`); errors the
    project raises on purpose come out unwrapped, not inside Hydra's InstantiationException."""
    from generative_bench.config import instantiate

    cfg = OmegaConf.to_container(features_cfg, resolve=True)
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


def save_samples_npz(samples: torch.Tensor | SampleBatch, path: Path) -> None:
    """uint8 NCHW -> ``arr_0`` uint8 NHWC (the guided-diffusion format; points stay float32), and
    the class labels of conditional samples as ``arr_1`` (int64)."""
    batch = samples if isinstance(samples, SampleBatch) else SampleBatch(samples)
    x = batch.images
    arrays = {"arr_0": x.permute(0, 2, 3, 1).numpy() if x.dtype == torch.uint8 else x.numpy().astype(np.float32)}
    if batch.labels is not None:
        arrays["arr_1"] = batch.labels.numpy().astype(np.int64)
    atomic_write(path, lambda f: np.savez(f, **arrays))


def knob_record(sampler, settings: dict[str, Any]) -> dict[str, Any]:
    """``{option: {"value": v, "neutral": v0, "symbol": sym}}`` of the sampler's fidelity–diversity
    knobs (the symbol as the sampler declares it in ``KNOB_SYMBOLS``, else the option's name)."""
    symbols = getattr(sampler, "KNOB_SYMBOLS", {}) or {}
    return {k: {"value": settings.get(k, v0), "neutral": v0, "symbol": symbols.get(k, k)}
            for k, v0 in sampler.knobs().items()}


#: the largest share of held-out images that may be exact copies of training images (in features)
HELD_OUT_OVERLAP = 0.01


def check_held_out(train: np.ndarray, heldout: np.ndarray, split: str, data: Any = None) -> None:
    """The memorization baseline needs images the model never saw: refuse a held-out split whose
    features repeat training rows exactly (a data source without that split, which serves the
    training files for it, or a split that overlaps training), beyond :data:`HELD_OUT_OVERLAP`."""
    train_rows = {np.ascontiguousarray(r).tobytes() for r in np.asarray(train)}
    held = np.asarray(heldout)
    shared = sum(np.ascontiguousarray(r).tobytes() in train_rows for r in held)
    if len(held) and shared > HELD_OUT_OVERLAP * len(held):
        raise InputError(f"the held-out '{split}' images of data={data} are training images ({shared} of {len(held)} "
                         f"repeat a training image exactly): this data has no separate '{split}' split, so "
                         "memorization cannot be measured; give it one (data.source.test_path=FILE.npz, or a "
                         f"<root>/{split}/ folder) or remove memorization from eval.metrics")


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
        self.chunk = int(eval_cfg.get("chunk", DEFAULT_CHUNK))
        self._extractor = None
        self._reference = None
        self._reference_file = None

    # ------------------------------------------------------------------ references
    @property
    def extractor(self):
        if self._extractor is None:
            self._extractor = build_extractor(self.cfg.features, self.device)
        return self._extractor

    def reference_description(self, split) -> dict[str, Any]:
        return {k: v for k, v in split.info.items() if k != "root"}

    def reference(self):
        """(description, features or held-out points + mixture) of the reference set, cached.

        The arrays also hold the reference images' class ``labels`` (for per-class metrics). With
        ``eval.reference.file`` set the reference is that file (:mod:`.reference_file`)."""
        if self._reference is not None:
            return self._reference
        ref_file = (self.cfg.get("reference") or {}).get("file")
        if ref_file and self.is_image:
            self._reference = self._file_reference(str(ref_file))
            return self._reference
        self._reference = self.split_reference(str(self.cfg.reference_split), self.cfg.get("reference_subset"))
        return self._reference

    def split_reference(self, split_name: str, subset: int | None):
        """(description, arrays) of one data split: features (cached on disk) or 2-D points."""
        split = load_split(self.data_cfg, split_name, subset=subset, num_workers=0, progress=bool(self.progress))
        desc = self.reference_description(split)
        if not self.is_image:
            return desc, {"points": split.x, "mixture": split.source, "labels": split.labels}
        from generative_bench.evaluation.reference import ReferenceCache

        key = {**desc, "extractor": self.extractor.describe()}
        feats = ReferenceCache(self._cache_root()).get_or_compute(
            key, lambda: self._features_of(split.x, f"reference {desc.get('name', '')} {split_name}".replace("  ", " ")))
        arrays = {k: feats[k] for k in feats.keys()}
        arrays["labels"] = np.asarray(split.labels)
        return {**desc, "cache_key": ReferenceCache.key_hash(key)}, arrays

    def _cache_root(self) -> Path | None:
        return (self.cache_dir / "reference") if self.cache_dir else None

    def _features_of(self, x: torch.Tensor, what: str = "reference") -> dict[str, np.ndarray]:
        """Features of in-memory uint8 NCHW images, in batches of eval.features.batch_size (sharded),
        with progress (a bar on a terminal, a log line every few seconds otherwise, and how long it
        will take when that is minutes: :mod:`generative_bench.progress`)."""
        from generative_bench.progress import Progress

        bs = int(self.cfg.features.get("batch_size", 100))
        nb = -(-len(x) // bs)
        mine = list(distributed.my_batches(nb))
        local = {}
        label = f"{what} features ({getattr(self.extractor, 'name', 'extractor')})"
        with Progress(sum(min(bs, len(x) - b * bs) for b in mine), label, advice=self.faster_reference_advice(len(x)),
                      enabled=distributed.info().is_main and self.progress is not False) as bar:
            for b in mine:
                local[b] = self._features([x[b * bs:(b + 1) * bs]])
                bar.update(min(bs, len(x) - b * bs))
        return concat_features(distributed.gather_batches(local, nb))

    def faster_reference_advice(self, count: int) -> str:
        """What makes a long reference pass shorter (said once, when it will take minutes)."""
        tips = ["it is cached afterwards (one pass per reference, extractor and resize)"]
        if self.cfg.get("reference_subset") is None and count > 10_000:
            tips.append("eval.reference_subset=10000 scores against a class-balanced subset")
        if self.extractor.describe().get("kind") != "domain" and self.device.type == "cpu":
            tips.append("a GPU, or a domain feature space (eval/features=cifar10_resnet for CIFAR-10), is much faster")
        return "; ".join(tips)

    def _file_reference(self, path: str):
        """A reference file (pytorch-fid stats, guided-diffusion batch or the suite's cache):
        stored statistics for FID/sFID, features of its images (cached by the file's sha256) for the rest."""
        from generative_bench.evaluation.metrics import frechet_distance
        from generative_bench.evaluation.reference import ReferenceCache
        from generative_bench.evaluation.reference_file import check_feature_space, read_reference_file

        rf = read_reference_file(path)
        ext_desc = self.extractor.describe()
        check_feature_space(rf, ext_desc)
        self._reference_file = rf
        desc = rf.describe()
        arrays = {k: v for k, v in rf.arrays.items() if k != "images"}
        if rf.images is not None:
            images = torch.from_numpy(np.ascontiguousarray(rf.images)).permute(0, 3, 1, 2)
            if images.shape[1] == 1:
                images = images.repeat(1, 3, 1, 1)
            want = tuple(int(v) for v in self.data_cfg.shape)
            if tuple(images.shape[1:]) != want:
                raise InputError(f"the reference images in {rf.path.name} have shape {list(images.shape[1:])} but "
                                 f"data={self.data_cfg.get('name')} has shape {list(want)}; score samples of the "
                                 f"reference's size (data.shape={list(images.shape[1:])}) or use a reference of theirs")
            key = {"dataset": f"file-{rf.path.stem}", "split": "reference-file", "file_sha256": rf.sha256,
                   "count": int(len(images)), "extractor": ext_desc}
            feats = ReferenceCache(self._cache_root()).get_or_compute(
                key, lambda: self._features_of(images, f"reference file {rf.path.name}"))
            for k in feats.keys():
                if k not in ("mu", "sigma", "mu_s", "sigma_s"):
                    arrays[k] = feats[k]
            if "mu" in arrays:  # the stored statistics are used; how far they are from the images' own
                desc["stored_stats_vs_images_fd"] = float(frechet_distance(feats["mu"], feats["sigma"], arrays["mu"],
                                                                           arrays["sigma"]))
        desc["stats"] = "stored in the file"
        return desc, arrays

    # ------------------------------------------------------------------ evaluation
    def check_shape(self, sampler) -> None:
        """Samples must have the reference data's shape (e.g. no 64x64 samples against 32x32 data)."""
        want = tuple(int(v) for v in self.data_cfg.shape)
        got = None if sampler.image_shape is None else tuple(int(v) for v in sampler.image_shape)
        if got is not None and got != want:
            what = "images" if len(want) == 3 else "points"
            raise InputError(f"the samples of {getattr(sampler, 'name', 'the sampler')} have shape {list(got)} but the "
                             f"reference {what} of data={self.data_cfg.get('name')} have shape {list(want)}; score "
                             "them against data of the same shape (or resize the samples)")

    def evaluate(self, sampler, settings: dict[str, Any] | None = None, num_samples: int | None = None,
                 out_dir: str | Path | None = None, name: str | None = None) -> dict[str, Any]:
        """Draw ``num_samples`` from ``sampler`` with ``settings``, compute every configured metric.

        Images are per-image seeded and made in fixed network chunks (see
        :mod:`generative_bench.sampler`); they are drawn in global batches of ``eval.batch_size``
        (under torch.distributed rank r makes batches r, r+W, ...) and gathered in index order, so
        samples and metrics equal a single process's for the same seed whatever the batch size.
        """
        n = int(num_samples or self.cfg.num_samples)
        bs = int(self.cfg.batch_size)
        if n < 1 or bs < 1:
            raise InputError(f"eval.num_samples and eval.batch_size must be >= 1, got {n} and {bs}")
        sampler = as_sampler(sampler, bs)
        settings = sampler.resolve_settings(**(settings or {}))
        sampler.check_count(n)
        self.check_shape(sampler)
        self.check_labels(sampler, name)
        num_batches = -(-n // bs)
        ref_desc, ref = self.reference()
        chosen, notes = self._select_metrics(ref) if self.is_image else ([], [])
        from generative_bench.progress import Progress

        local: dict[int, tuple] = {}
        t_sample = features_s = 0.0
        mine = list(distributed.my_batches(num_batches))
        with Progress(sum(min(bs, n - b * bs) for b in mine), f"sample+features {name or ''}".strip(),
                      unit="samples", enabled=distributed.info().is_main and self.progress is not False) as bar:
            for b in mine:
                t0 = time.perf_counter()
                batch = sampler.draw(b * bs, min(n, (b + 1) * bs), self.seed, settings, chunk=self.chunk)
                t1 = time.perf_counter()
                feats = self._features([batch.images]) if self.is_image else None
                features_s += time.perf_counter() - t1
                t_sample += t1 - t0
                local[b] = (batch, feats)
                bar.update(len(batch.images))
        parts = distributed.gather_batches(local, num_batches)
        samples = SampleBatch.concat(p[0] for p in parts)
        times = distributed.gather_objects((t_sample, features_s))
        t_sample, features_s = max(t for t, _ in times), max(f for _, f in times)
        warns: list[str] = []
        t1 = time.perf_counter()
        if self.is_image:
            feats = concat_features([p[1] for p in parts])
            extractor_desc = self.extractor.describe()
            inputs = MetricInputs(cfg=self.cfg, seed=self.seed, features=feats, reference=ref, labels=samples.labels,
                                  extractor=extractor_desc, order=sample_order(samples.images),
                                  memorization=self.memorization_sets() if any(m.name == "memorization" for m in chosen)
                                  else None)
            metrics, metric_settings, skipped = self._metrics(chosen, "features", inputs, set(feats.keys()))
            replicates = int(self.cfg.get("bootstrap", 0) or 0)
            if replicates > 0:
                from generative_bench.evaluation.bootstrap import intervals

                ran = [m for m in chosen if m.name in metric_settings]
                bounds, boot_protocol = intervals(ran, inputs, metrics, replicates,
                                                  level=float(self.cfg.get("bootstrap_level", 0.95)), seed=self.seed)
            comparable = bool(extractor_desc.get("comparable", False))
            if not comparable:
                warns.append(f"features from {extractor_desc.get('name')} "
                             f"({extractor_desc.get('warning') or 'not the standard pretrained weights'}): {NOT_COMPARABLE}")
        else:
            inputs = MetricInputs(cfg=self.cfg, seed=self.seed, labels=samples.labels, samples=samples.images,
                                  reference_points=ref["points"], mixture=ref["mixture"],
                                  order=sample_order(samples.images))
            metrics, metric_settings, skipped = self._metrics(list(self.cfg.get("toy_metrics", ["modes", "data_pr"])),
                                                              "toy", inputs, None)
            extractor_desc = {"name": "data-space (2-D)", "comparable": True}
            comparable = True
        metrics_s = time.perf_counter() - t1
        sampler_desc = {"name": name or getattr(sampler, "name", type(sampler).__name__), "settings": settings,
                        "nfe": sampler.network_evaluations(settings), "knobs": knob_record(sampler, settings),
                        "conditional": samples.labels is not None}
        entry = {
            "sampler": sampler_desc,
            "num_samples": n,
            "metrics": metrics,
            "protocol": {"reference": ref_desc, "features": extractor_desc, "metric_settings": metric_settings,
                         "seed": self.seed, "num_samples": n, "batch_size": bs,
                         "processes": distributed.info().world_size, "network_chunk": self.chunk,
                         "seeding": IMAGE_SEED_RULE, "uint8": UINT8_RULE},
            "comparable": comparable,
            "warnings": warns,
            "notes": notes,
            "skipped_metrics": skipped,
            "timings": {"sample_s": round(t_sample, 4), "sample_images_per_s": round(n / max(t_sample, 1e-9), 3),
                        "features_s": round(features_s, 4), "metrics_s": round(metrics_s, 4)},
        }
        if self.is_image and int(self.cfg.get("bootstrap", 0) or 0) > 0:
            entry["intervals"] = bounds
            entry["protocol"]["bootstrap"] = boot_protocol
        if out_dir is not None and distributed.info().is_main:
            entry.update(self._write_samples(samples, Path(out_dir), samples_tag(settings, n, self.seed)))
        return entry

    def _features(self, batches):
        with strict_fp32():
            return self.extractor.extract(batches)

    def _select_metrics(self, ref: dict[str, Any]):
        """The feature-space metrics to run (default list filtered, or the user's list checked)."""
        from generative_bench.evaluation import metric_selection

        ext = self.extractor
        provided = set(getattr(ext, "dims", {}) or {}) or None
        fix = self._reference_file.fix_for if self._reference_file is not None else None
        return metric_selection.select(self.cfg, provided, set(ref.keys()), ext.describe(), reference_fix=fix)

    def check_labels(self, sampler, name: str | None = None) -> None:
        """The class labels a fixed sample set carries (an npz's ``arr_1``) lie in [0, data.num_classes)
        when the data declares its classes: checked before any sampling or feature work."""
        labels = getattr(sampler, "labels", None)
        if labels is None:
            return
        from generative_bench.data.arrays import check_labels

        where = f"the labels of {name or getattr(sampler, 'name', 'the samples')} (arr_1)"
        check_labels(labels, len(labels), where, self.data_cfg.get("num_classes"))

    def memorization_sets(self) -> dict[str, Any]:
        """Training-set and held-out features for the memorization checks (both cached on disk):
        the training split (the reference when it is the training split) and ``eval.memorization_split``."""
        held = str(self.cfg.get("memorization_split", "test"))
        if held == "train":
            raise InputError("eval.memorization_split=train: the held-out images must not be training images; use test")
        if self._reference_file is None and str(self.cfg.reference_split) == "train":
            train_desc, train = self.reference()
        else:
            train_desc, train = self.split_reference("train", self.cfg.get("memorization_train_subset"))
        held_desc, heldout = self.split_reference(held, self.cfg.get("memorization_heldout_subset"))
        check_held_out(train["pool"], heldout["pool"], held, self.data_cfg.get("name"))
        return {"train": train["pool"], "heldout": heldout["pool"],
                "train_set": {k: v for k, v in train_desc.items() if k != "cache_key"},
                "heldout_set": {k: v for k, v in held_desc.items() if k != "cache_key"}}

    def _metrics(self, names: list, space: str, inputs: MetricInputs,
                 available: set[str] | None) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
        values: dict[str, Any] = {}
        used: dict[str, Any] = {}
        skipped: list[str] = []
        for name in names:
            m = name if not isinstance(name, str) else metric(str(name), space)
            m.check_features(available)
            if m.conditional and inputs.labels is None:
                skipped.append(f"{m.name}: the samples have no class labels")
                continue
            out, settings = m.compute(inputs)
            values.update(out)
            used[m.name] = settings
        return values, used, skipped

    def _write_samples(self, samples: SampleBatch, out_dir: Path, tag: str) -> dict[str, str]:
        files = {}
        if self.cfg.get("save_samples", True):
            path = out_dir / "samples" / f"{tag}.npz"
            save_samples_npz(samples, path)
            files["samples_file"] = str(path.relative_to(out_dir))
        if self.is_image and int(self.cfg.get("grid_size", 0)) > 0:
            path = out_dir / "samples" / f"{tag}_grid.png"
            save_grid(samples.images[: int(self.cfg.grid_size)], path)
            files["grid_file"] = str(path.relative_to(out_dir))
        return files
