"""The evaluator as a library: :func:`evaluate` scores samples from Python with the harness that
``gbench evaluate`` runs, and returns the numbers with the protocol they were made under.

    from generative_bench import evaluate
    result = evaluate("samples.npz", reference="cifar10_jpeg", metrics=["fid", "kid"])
    result.metrics["fid"], result.comparable, result.protocol

Samples: an ``.npz`` path (``arr_0`` uint8 NHWC, optional ``arr_1`` labels), a folder of images, a
uint8 tensor or array (NCHW or NHWC; floats with ``value_range=(-1, 1)`` or ``(0, 1)``), a
function ``fn(n, seed) -> images``, or anything that implements the sampler contract (a trained
backend). Reference: the name of a data config (``"cifar10_jpeg"``, ``conf/data/``), a folder of
images (``<root>/<split>/<class>/*`` or ``<root>/<class>/*``), an npz of images (``arr_0``), a
reference file (pytorch-fid statistics, a guided-diffusion reference batch, a reference cache
entry folder) or images in memory (written once to a content-named npz in the cache). Everything else is an ``eval.*`` or
``data.*`` override of the same config the CLI composes (``overrides=["eval.kid_subset_size=100"]``),
checked by the same validation.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from generative_bench.errors import InputError


@dataclass
class EvaluationResult:
    """What one evaluation measured: ``metrics`` (record keys: ``fid``, ``kid_mean``, ``precision``,
    ...), ``protocol`` (reference, feature extractor and its weights digest, metric settings, sample
    count, seed: the fingerprint ``gbench`` records carry), whether the numbers are comparable to
    published figures, and the record entry itself."""

    metrics: dict[str, Any]
    protocol: dict[str, Any]
    comparable: bool
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    entry: dict[str, Any] = field(default_factory=dict, repr=False)

    def __getitem__(self, key: str) -> Any:
        return self.metrics[key]


def _config(overrides: Sequence[str]):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from generative_bench.cli.main import config_dir
    from generative_bench.config import register_resolvers

    register_resolvers()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose("config", overrides=list(overrides))
    except Exception as e:  # a typo in an override or an unknown choice
        raise InputError(f"cannot compose the evaluation config: {' '.join(str(e).split())}") from None
    finally:
        GlobalHydra.instance().clear()
    OmegaConf.resolve(cfg)
    return cfg


def _sampler(samples: Any, value_range: tuple[float, float] | None, labels: Any):
    from generative_bench.evaluation.sample_sets import ArraySampleSet, FolderSampleSet, FunctionSampler, NpzSampleSet
    from generative_bench.sampler import Sampler

    if isinstance(samples, (str, Path)):
        path = Path(samples).expanduser()
        if path.is_dir():
            return FolderSampleSet(str(path))
        if path.is_file():
            return NpzSampleSet(str(path))
        raise InputError(f"samples {str(path)!r} do not exist; pass an .npz file, a folder of images, an array or a "
                         "function fn(n, seed)")
    if isinstance(samples, (torch.Tensor, np.ndarray)):
        return ArraySampleSet(samples, labels=labels, value_range=value_range)
    if isinstance(samples, Sampler):
        return samples
    if callable(samples):
        return FunctionSampler(samples, value_range=value_range)
    raise InputError(f"samples of type {type(samples).__name__} are not understood; pass an .npz path, a folder, a "
                     "uint8 tensor/array, a function fn(n, seed) -> images or a sampler")


def _images_file(images: Any, cache: Path) -> Path:
    """In-memory reference images as a content-named npz in the cache (written once)."""
    from generative_bench.evaluation.sample_sets import images_as_uint8_nchw
    from generative_bench.io import atomic_write

    x = images_as_uint8_nchw(images, where="the reference images").permute(0, 2, 3, 1).contiguous().numpy()
    digest = hashlib.sha256(x.tobytes() + str(x.shape).encode()).hexdigest()[:16]
    path = cache / "api" / f"reference-{digest}.npz"
    if not path.is_file():
        atomic_write(path, lambda f: np.savez(f, arr_0=x))
    return path


def _holds_images_only(path: Path) -> bool:
    """True for an npz whose arrays are only ``arr_0`` (images) and ``arr_1`` (labels)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            names = {n[:-4] for n in z.namelist() if n.endswith(".npy")}
    except (OSError, zipfile.BadZipFile):
        return False
    return bool(names) and names <= {"arr_0", "arr_1"}


def _reference_overrides(reference: Any, shape: Sequence[int], cache: Path) -> list[str]:
    from generative_bench.cli.main import config_dir

    size = f"data.shape=[{','.join(str(int(v)) for v in shape)}]"
    if isinstance(reference, (torch.Tensor, np.ndarray)):
        return ["data=npz", f"data.source.path={_images_file(reference, cache)}", size, "data.name=images"]
    text = str(reference)
    if isinstance(reference, str) and (Path(config_dir()) / "data" / f"{text}.yaml").is_file():
        return [f"data={text}"]
    path = Path(text).expanduser()
    if path.is_dir() and not (path / "manifest.json").is_file():
        return ["data=folder", f"data.source.root={path}", size, f"data.name={path.name}"]
    if path.is_file() and _holds_images_only(path):  # an npz of images (arr_0, arr_1): a data set
        return ["data=npz", f"data.source.path={path}", size, f"data.name={path.stem}"]
    if path.exists():  # a reference file: statistics, a reference batch or a cache entry
        return ["data=npz", f"data.source.path={path}", size, f"data.name={path.stem}", f"eval.reference.file={path}"]
    names = sorted(p.stem for p in (Path(config_dir()) / "data").glob("*.yaml"))
    raise InputError(f"reference {text!r} is neither a data config ({', '.join(names)}) nor an existing folder or "
                     "reference file; pass one of them, or the reference images as an array")


def evaluate(samples: Any, reference: Any = "cifar10_jpeg", *, metrics: Sequence[str] | None = None,
             features: str | None = None, num_samples: int | None = None, seed: int = 0,
             reference_subset: int | None = None, value_range: tuple[float, float] | None = None,
             labels: Any = None, overrides: Sequence[str] = (), cache_dir: str | Path | None = None,
             device: str = "auto", progress: bool | None = None) -> EvaluationResult:
    """Score ``samples`` against ``reference`` (see the module doc for what each may be).

    ``metrics``: names from ``eval.metrics`` (default: the feature space's default list);
    ``features``: an ``eval/features`` choice (``inception``, ``cifar10_resnet``, ``dinov2_vitl14``,
    ``clip_vitb32``); ``num_samples``: how many to score (default: all of a fixed set, else
    ``eval.num_samples``); ``reference_subset``: a class-balanced subset of a data split.
    Reference features are cached under ``cache_dir`` (default ``$GBENCH_CACHE``) like the CLI's."""
    from generative_bench.cli.task import resolve_device
    from generative_bench.evaluation.harness import Evaluator
    from generative_bench.validation import validate

    sampler = _sampler(samples, value_range, labels)
    shape = getattr(sampler, "image_shape", None)
    if shape is None:
        raise InputError(f"{getattr(sampler, 'name', 'the sampler')} does not say its image shape; give it an "
                         "image_shape attribute")
    base = _config([])
    cache = Path(cache_dir).expanduser() if cache_dir is not None else Path(str(base.paths.cache_dir))
    over = _reference_overrides(reference, shape, cache)
    if features:
        over.append(f"eval/features={features}")
    if metrics is not None:
        over.append(f"eval.metrics=[{','.join(str(m) for m in metrics)}]")
    if reference_subset is not None:
        over.append(f"eval.reference_subset={int(reference_subset)}")
    n = num_samples if num_samples is not None else (len(sampler) if hasattr(sampler, "__len__") else None)
    if n is not None:
        over.append(f"eval.num_samples={int(n)}")
    over += [f"seed={int(seed)}", "stage=evaluate", f"paths.cache_dir={cache}", *overrides]
    cfg = _config(over)
    validate(cfg)
    evaluator = Evaluator(cfg.data, cfg.eval, device=resolve_device(device), cache_dir=Path(str(cfg.paths.cache_dir)),
                          seed=int(seed),
                          progress=progress)
    entry = evaluator.evaluate(sampler, {}, int(cfg.eval.num_samples), out_dir=None,
                               name=getattr(sampler, "name", None))
    return EvaluationResult(metrics=dict(entry["metrics"]), protocol=dict(entry["protocol"]),
                            comparable=bool(entry.get("comparable", False)), warnings=list(entry.get("warnings", [])),
                            notes=list(entry.get("notes", [])), entry=entry)


__all__ = ["EvaluationResult", "evaluate"]
