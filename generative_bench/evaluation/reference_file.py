"""Reference files as first-class references: ``eval.reference.file=PATH``.

Three kinds of file are understood (read with ``allow_pickle=False``):

* ``pytorch-fid`` statistics: ``mu`` (D,), ``sigma`` (D, D) -- what ``pytorch_fid --save-stats``
  writes (and TTUR's precomputed statistics). Only FID can be scored against it.
* ``guided-diffusion`` reference batches (``openai/guided-diffusion`` ``evaluations/evaluator.py``):
  ``arr_0`` uint8 NHWC images plus ``mu``, ``sigma``, ``mu_s``, ``sigma_s``. FID and sFID use the
  stored statistics, as that evaluator does; KID, precision/recall, density/coverage use the
  features of the stored images, extracted once by this suite's extractor (and cached by the
  file's sha256 and the extractor fingerprint).
* the suite's own cache: an entry folder of :class:`~generative_bench.evaluation.reference.ReferenceCache`
  (``manifest.json``, ``features.npz``, ``stats.npz``; checksums checked) or any .npz with ``pool``
  [/ ``spatial`` / ``logits``] features. Everything can be scored against it.

Files this suite writes (``gbench reference ... --format pytorch-fid|guided-diffusion --out FILE``)
carry one extra array, ``gbench_meta``: a JSON string naming the dataset, split and the feature
extractor with its weights' sha256 and resize mode. pytorch-fid and guided-diffusion ignore it;
here it lets a feature-space mismatch (other weights, other preprocessing) be an error instead of
a silently wrong number. A foreign file without it can only be checked by its dimension, and the
record says so.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from generative_bench.errors import InputError
from generative_bench.evaluation.reference import (CorruptReferenceError, ReferenceCache, _check_zip_magic,
                                                   _file_sha256, load_reference_npz, with_stats)
from generative_bench.io import atomic_write

META_KEY = "gbench_meta"
FORMATS = ("pytorch-fid", "guided-diffusion")
READ_FORMATS = ("pytorch-fid", "guided-diffusion", "gbench-cache", "gbench-features")
#: what each reference array lets the metrics do
PROVIDES = {"mu": "pool statistics (FID)", "mu_s": "spatial statistics (sFID)", "pool": "pool features",
            "labels": "class labels"}
#: the extractor fields that must agree between a file's fingerprint and this evaluation
FINGERPRINT_FIELDS = ("name", "weights_sha256", "resize")
WRITE_HINT = ("write one in this feature space with `gbench reference data=<data> [eval/features=...] "
              "--format guided-diffusion --out FILE`")


@dataclass
class ReferenceFile:
    """The arrays of a reference file, where they came from, and what they can score."""

    path: Path
    sha256: str
    format: str
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def images(self) -> np.ndarray | None:
        return self.arrays.get("images")

    def has(self, key: str) -> bool:
        return key in self.arrays

    def fix_for(self, missing: str) -> str:
        """How to get a file that holds ``missing`` (an array key of the reference)."""
        if missing in ("pool", "labels"):
            what = "reference features" if missing == "pool" else "class labels for its images"
            return (f"{self.path.name} ({self.format} format) holds no {what}; score against a guided-diffusion "
                    "reference batch (its images give the features) or the suite's own cache, or leave the split "
                    f"reference (unset eval.reference.file); {WRITE_HINT}")
        return (f"{self.path.name} ({self.format} format) holds no {PROVIDES.get(missing, missing)}; {WRITE_HINT}")

    def describe(self) -> dict[str, Any]:
        """The reference entry of the results record (the file, its sha256, what it holds)."""
        out: dict[str, Any] = {
            "file": str(self.path), "file_sha256": self.sha256, "format": self.format,
            "provides": sorted(PROVIDES[k] for k in PROVIDES if k in self.arrays or (k == "pool" and self.images is not None)),
            "dims": {k: int(self.arrays[k].shape[0]) for k in ("mu", "mu_s") if k in self.arrays},
        }
        if self.images is not None:
            out["images"] = int(len(self.images))
            out["examples"] = int(len(self.images))
        elif "pool" in self.arrays:
            out["examples"] = int(len(self.arrays["pool"]))
        for k in ("dataset", "split", "subset", "variant"):
            if self.meta.get(k) is not None:
                out[k] = self.meta[k]
        out["made_with"] = self.meta.get("extractor")
        out["feature_space_check"] = "fingerprint" if self.meta.get("extractor") else "dimension only"
        return out


def _read_meta(path: Path) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as z:
        if META_KEY not in z.files:
            return {}
        try:
            value = z[META_KEY]
        except ValueError:  # an object array: never unpickled
            raise CorruptReferenceError(f"{path}: {META_KEY} is an object array (pickled Python objects), which is "
                                        "never loaded; it must be a JSON string: recompute the file") from None
        if value.dtype.kind not in "US":
            raise CorruptReferenceError(f"{path}: {META_KEY} holds {value.dtype} values, not a JSON string; "
                                        "recompute the file")
        text = str(value)
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise CorruptReferenceError(f"{path}: {META_KEY} is not valid JSON ({e}); recompute the file") from e
    if not isinstance(meta, dict):
        raise CorruptReferenceError(f"{path}: {META_KEY} must hold a JSON object; recompute the file")
    return meta


def _read_cache_folder(folder: Path) -> ReferenceFile:
    from generative_bench.io import read_json

    manifest = read_json(folder / "manifest.json")
    key = manifest.get("key") if isinstance(manifest, dict) else None
    if not isinstance(key, dict):
        raise CorruptReferenceError(f"{folder}/manifest.json has no key; delete {folder} and recompute it")
    arrays = ReferenceCache(folder.parent).get(key)
    if arrays is None or ReferenceCache(folder.parent).path_for(key) != folder:
        raise CorruptReferenceError(f"{folder} is not a complete reference cache entry (its manifest does not match "
                                    "its folder); point eval.reference.file at the entry folder itself")
    digest = _file_sha256(folder / "manifest.json")
    meta = {k: key.get(k) for k in ("dataset", "split", "subset", "variant")}
    meta["extractor"] = key.get("extractor")
    return ReferenceFile(folder, digest, "gbench-cache", dict(arrays), meta)


def read_reference_file(path: str | os.PathLike) -> ReferenceFile:
    """Read any of the three kinds of reference (see the module doc); npz never unpickles."""
    path = Path(path).expanduser()
    if path.is_dir():
        if not (path / "manifest.json").is_file():
            raise InputError(f"eval.reference.file={str(path)!r} is a folder without manifest.json; pass a reference "
                             ".npz or a reference cache entry folder")
        return _read_cache_folder(path)
    if not path.is_file():
        raise InputError(f"reference file not found: eval.reference.file={str(path)!r}; fix the path or "
                         f"{WRITE_HINT}")
    _check_zip_magic(path)
    arrays = load_reference_npz(path, include_images=True)
    meta = _read_meta(path)
    with np.load(path, allow_pickle=False) as z:
        if "arr_1" in z.files and "images" in arrays:  # guided-diffusion's class labels: checked, never dropped
            from generative_bench.data.arrays import check_labels

            arrays["labels"] = check_labels(z["arr_1"], len(arrays["images"]), f"{path.name}:arr_1")
    if "images" in arrays:
        fmt = "guided-diffusion"
    elif "pool" in arrays:
        fmt = "gbench-features"
    else:
        fmt = "pytorch-fid"
    return ReferenceFile(path, _file_sha256(path), fmt, arrays, meta)


#: the resize of a fingerprint that names none: files written before resize modes were recorded
#: were all made with the TF-1 bilinear resize of the FID Inception network
LEGACY_RESIZE = "tf1_bilinear"


def fingerprint_value(fingerprint: Mapping[str, Any], key: str) -> Any:
    """A fingerprint field as compared: an unrecorded resize is the one such files were made with."""
    value = fingerprint.get(key)
    return (value or LEGACY_RESIZE) if key == "resize" else value


def check_feature_space(ref: ReferenceFile, extractor: Mapping[str, Any]) -> None:
    """A reference made in another feature space is an error naming the fix.

    The pool dimension must be the extractor's; when the file carries a fingerprint (files this
    suite writes, cache entries) the extractor name, weights sha256 and resize mode must match, a
    file that records no resize counting as :data:`LEGACY_RESIZE` (so it is refused for a
    clean_bicubic evaluation)."""
    dims = dict(extractor.get("dims") or {})
    name = extractor.get("name")
    for key, feat in (("mu", "pool"), ("mu_s", "spatial")):
        if key in ref.arrays and feat in dims and ref.arrays[key].shape[0] != int(dims[feat]):
            raise InputError(
                f"feature-space mismatch: {ref.path.name} holds {ref.arrays[key].shape[0]}-d {feat} statistics but "
                f"eval.features ({name}) makes {dims[feat]}-d {feat} features; choose the feature space the file was "
                f"made in (e.g. eval/features=inception), or {WRITE_HINT}")
    made = ref.meta.get("extractor")
    if isinstance(made, Mapping):
        diffs = [f"{k}: file {fingerprint_value(made, k)!r} vs now {fingerprint_value(extractor, k)!r}"
                 for k in FINGERPRINT_FIELDS if fingerprint_value(made, k) != fingerprint_value(extractor, k)]
        if diffs:
            raise InputError(
                f"feature-space mismatch: {ref.path.name} was made with another feature extractor ({'; '.join(diffs)}); "
                f"evaluate with the extractor it was made with, or {WRITE_HINT}")


def peek_keys(path: Path) -> set[str] | None:
    """The reference arrays a file will provide, from its zip directory only (None: unknown)."""
    import zipfile

    if path.is_dir():
        return None  # a cache entry holds features: everything
    try:
        with zipfile.ZipFile(path) as z:
            names = {n[:-4] for n in z.namelist() if n.endswith(".npy")}
    except (OSError, zipfile.BadZipFile):
        return None  # reported when it is read
    keys = names & {"mu", "sigma", "mu_s", "sigma_s", "pool"}
    if "arr_0" in names or "pool" in names:
        keys.add("pool")
    if "arr_1" in names and "arr_0" in names:
        keys.add("labels")
    return keys


def config_problems(problems: Any, cfg: Any) -> set[str] | None:
    """Checks of ``eval.reference`` that need no data (added to ``problems``); returns the arrays
    a configured reference file provides (None when the reference is a data split or unknown)."""
    ref = (cfg.eval.get("reference") or {})
    stage = str(cfg.get("stage", "pipeline"))
    if stage == "reference":
        if str(ref.get("format")) not in FORMATS:
            problems.add(f"eval.reference.format={ref.get('format')!r}: must be one of {list(FORMATS)} "
                         "(--format pytorch-fid or --format guided-diffusion)")
        if not ref.get("out"):
            problems.add("gbench reference needs the file to write: pass --out FILE (eval.reference.out=FILE)")
        elif Path(str(ref.out)).expanduser().is_dir():
            problems.add(f"--out {ref.out}: is a folder; pass the path of the .npz file to write")
        return None
    file = ref.get("file")
    if not file:
        return None
    path = Path(str(file)).expanduser()
    if not path.exists():
        problems.add(f"eval.reference.file={str(path)!r} does not exist; fix the path or {WRITE_HINT}")
        return None
    return peek_keys(path)


# ---------------------------------------------------------------------------------- writing
def _meta_array(meta: Mapping[str, Any]) -> np.ndarray:
    return np.array(json.dumps(dict(meta), sort_keys=True, default=str))


def write_reference_file(path: str | os.PathLike, fmt: str, arrays: Mapping[str, np.ndarray],
                         images: np.ndarray | None = None, meta: Mapping[str, Any] | None = None,
                         labels: np.ndarray | None = None) -> Path:
    """Write ``arrays`` (features and/or mu/sigma[/mu_s/sigma_s]) as a reference file (atomic).

    ``pytorch-fid``: ``mu``, ``sigma`` (float64); ``guided-diffusion``: ``arr_0`` (uint8 NHWC
    ``images``), ``mu``, ``sigma``, ``mu_s``, ``sigma_s`` and, given ``labels``, ``arr_1`` (int64 class
    labels, as in sample files). Both get ``gbench_meta``."""
    if fmt not in FORMATS:
        raise InputError(f"reference format {fmt!r} is not one of {list(FORMATS)}; pass --format pytorch-fid or "
                         "--format guided-diffusion")
    stats = with_stats({k: np.asarray(v) for k, v in arrays.items()}, "reference features")
    out: dict[str, np.ndarray] = {"mu": np.asarray(stats["mu"], np.float64), "sigma": np.asarray(stats["sigma"], np.float64)}
    if fmt == "guided-diffusion":
        if images is None:
            raise InputError("a guided-diffusion reference batch needs the images (arr_0, uint8 NHWC)")
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise InputError(f"reference images must be uint8 NHWC, got {images.dtype} {images.shape}")
        if "mu_s" not in stats:
            raise InputError("a guided-diffusion reference batch needs spatial statistics (mu_s, sigma_s), which this "
                             "feature extractor does not make; use --format pytorch-fid or eval/features=inception")
        out = {"arr_0": images, **out, "mu_s": np.asarray(stats["mu_s"], np.float64),
               "sigma_s": np.asarray(stats["sigma_s"], np.float64)}
        if labels is not None:
            out["arr_1"] = np.asarray(labels, np.int64)
    out[META_KEY] = _meta_array({"format": fmt, **dict(meta or {})})
    path = Path(path)
    atomic_write(path, lambda f: np.savez(f, **out))
    return path


__all__ = ["FORMATS", "META_KEY", "ReferenceFile", "check_feature_space", "read_reference_file",
           "write_reference_file"]
