"""Reference statistics and features, cached on disk and read from foreign .npz files.

A cache entry is a folder named by the sha256 of the canonical JSON of its key (dataset,
variant, split, subset, subset_seed, count, extractor name and weights sha256, ...)::

    <root>/<dataset>-<split>-<digest[:20]>/
        features.npz    every feature array (pool (N, 2048), spatial (N, 2023), logits (N, 1008))
        stats.npz       mu, sigma (pool) and mu_s, sigma_s (spatial), float64: readable by
                        pytorch-fid (``np.load(p)['mu']``) and shaped like guided-diffusion's
                        reference batches
        manifest.json   the key, the digest, array shapes/dtypes and the files' sha256

Files are written atomically and the manifest last, so a folder without a manifest is
unfinished. The root is ``$GBENCH_CACHE/reference`` or ``~/.cache/generative_bench/reference``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import numpy as np

from generative_bench.errors import InputError
from generative_bench.io import atomic_write, atomic_write_json, read_json

FORMAT = "generative_bench.reference/1"
STAT_KEYS = ("mu", "sigma", "mu_s", "sigma_s")
STAT_SOURCES = {"pool": ("mu", "sigma"), "spatial": ("mu_s", "sigma_s")}
REQUIRED_KEY_FIELDS = ("dataset", "split", "extractor")
COUNT_FIELDS = ("count", "examples")


class CorruptReferenceError(InputError):
    """A reference file or cache entry cannot be read or fails its checks."""


def default_cache_root() -> Path:
    base = os.environ.get("GBENCH_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "generative_bench") / "reference"


# ---------------------------------------------------------------------------------- keys
def _canonical(value: Any, where: str) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _canonical(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"reference key {where} is {value}; keys must be finite")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise InputError(f"reference key {where} has a {type(value).__name__}; use JSON values (str, int, dict, ...)")


def _has_weights_hash(value: Any) -> bool:
    """True when some (nested) entry named ``*sha256`` has a non-empty value."""
    if not isinstance(value, Mapping):
        return False
    return any((str(k).endswith("sha256") and bool(v)) or _has_weights_hash(v) for k, v in value.items())


def canonical_key(key: Mapping) -> dict:
    """Validate a cache key and return it as plain JSON values."""
    if not isinstance(key, Mapping):
        raise InputError(f"reference key must be a mapping, got {type(key).__name__}")
    key = _canonical(key, "key")
    missing = [f for f in REQUIRED_KEY_FIELDS if key.get(f) in (None, "", {})]
    if missing:
        raise InputError(f"reference key lacks {missing}; it must name the dataset, split and extractor, got {key}")
    if not _has_weights_hash(key):
        raise InputError(
            "reference key must identify the extractor weights by their sha256 (an entry such as "
            f"'weights_sha256', at the top level or inside 'extractor'), got {key}"
        )
    return key


def key_digest(key: Mapping) -> str:
    text = json.dumps(canonical_key(key), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _slug(value: Any) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "-", str(value)).strip("-")[:40] or "x"


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------------- arrays
def as_array_dict(obj: Any) -> dict[str, np.ndarray]:
    """Arrays of a Features-like object: a mapping, a dataclass, or pool/spatial/logits attributes."""
    if isinstance(obj, Mapping):
        items = dict(obj)
    elif hasattr(obj, "as_dict") and callable(obj.as_dict):
        items = dict(obj.as_dict())
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        items = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    else:
        items = {k: getattr(obj, k) for k in ("pool", "spatial", "logits") if getattr(obj, k, None) is not None}
    out = {}
    for name, v in items.items():
        if hasattr(v, "detach") and hasattr(v, "cpu"):
            v = v.detach().cpu().numpy()
        if isinstance(v, np.ndarray) and v.dtype != object and v.ndim >= 1:
            out[str(name)] = v
    if not out:
        raise InputError(f"reference features: found no arrays in {type(obj).__name__}")
    return out


def _check_stats_pair(arrays: Mapping, mu_key: str, sigma_key: str, source: str) -> None:
    has_mu, has_sigma = mu_key in arrays, sigma_key in arrays
    if has_mu != has_sigma:
        raise CorruptReferenceError(f"{source}: has {mu_key if has_mu else sigma_key!r} without "
                                    f"{sigma_key if has_mu else mu_key!r}")
    if not has_mu:
        return
    mu, sigma = arrays[mu_key], arrays[sigma_key]
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise CorruptReferenceError(f"{source}: {mu_key} has shape {mu.shape} and {sigma_key} {sigma.shape}; "
                                    f"expected (D,) and (D, D)")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise CorruptReferenceError(f"{source}: {mu_key}/{sigma_key} contain NaN or Inf")


def _check_features(arrays: Mapping, source: str, count: int | None = None) -> None:
    feats = {k: v for k, v in arrays.items() if k not in STAT_KEYS}
    lengths = {k: v.shape[0] for k, v in feats.items()}
    if len(set(lengths.values())) > 1:
        raise CorruptReferenceError(f"{source}: feature arrays have different lengths {lengths}")
    if count is not None and lengths and next(iter(lengths.values())) != count:
        raise CorruptReferenceError(f"{source}: the key says {count} examples but the features have {lengths}")
    for k, v in feats.items():
        if np.issubdtype(v.dtype, np.floating) and not np.isfinite(v).all():
            raise CorruptReferenceError(f"{source}: feature array {k!r} contains NaN or Inf")


def with_stats(arrays: Mapping[str, np.ndarray], source: str = "reference") -> dict[str, np.ndarray]:
    """Add mu/sigma from 'pool' and mu_s/sigma_s from 'spatial' (float64) where not given."""
    from .metrics.fid import gaussian_stats

    out = dict(arrays)
    for feat, (mu_key, sigma_key) in STAT_SOURCES.items():
        if feat in out and mu_key not in out:
            out[mu_key], out[sigma_key] = gaussian_stats(out[feat], f"{source} {feat}")
    for mu_key, sigma_key in (("mu", "sigma"), ("mu_s", "sigma_s")):
        _check_stats_pair(out, mu_key, sigma_key, source)
    return out


def _save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    atomic_write(path, lambda f: np.savez(f, **arrays))


def _check_zip_magic(path: Path) -> None:
    """np.load treats a non-zip file as a pickle; say plainly that it is not an .npz instead."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise CorruptReferenceError(f"{path} is not an .npz (zip) file (starts with {head!r}); "
                                    "re-download or recompute it")


def _read_npz(path: Path, names: list[str] | None = None) -> dict[str, np.ndarray]:
    try:
        _check_zip_magic(path)
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in (z.files if names is None else names)}
    except FileNotFoundError:
        raise InputError(f"reference file not found: {path}") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise CorruptReferenceError(
            f"{path} is corrupt or not a plain .npz ({type(e).__name__}: {e}); re-download or recompute it"
        ) from e


# ------------------------------------------------------------------------------- cache
class ReferenceCache:
    """Content-addressed cache of reference features and statistics (see module doc)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_cache_root()

    @staticmethod
    def key_hash(key: Mapping) -> str:
        return key_digest(key)

    def path_for(self, key: Mapping) -> Path:
        k = canonical_key(key)
        return self.root / f"{_slug(k['dataset'])}-{_slug(k['split'])}-{key_digest(k)[:20]}"

    def get(self, key: Mapping) -> dict[str, np.ndarray] | None:
        """The cached arrays (features + mu/sigma[/mu_s/sigma_s]), or None when absent.

        Raises :class:`CorruptReferenceError` for an entry that fails its checks.
        """
        folder = self.path_for(key)
        manifest_path = folder / "manifest.json"
        if not manifest_path.exists():
            return None
        try:
            manifest = read_json(manifest_path)
        except (json.JSONDecodeError, OSError) as e:
            raise CorruptReferenceError(f"{manifest_path}: unreadable manifest ({e}); delete {folder}") from e
        if manifest.get("format") != FORMAT or manifest.get("key") != canonical_key(key):
            raise CorruptReferenceError(f"{manifest_path}: manifest does not match the requested key; delete {folder}")
        arrays: dict[str, np.ndarray] = {}
        for name, sha in manifest.get("files", {}).items():
            path = folder / name
            if not path.exists() or _file_sha256(path) != sha:
                raise CorruptReferenceError(f"{path}: missing or checksum mismatch; delete {folder} to recompute")
            arrays.update(_read_npz(path))
        expected = manifest.get("arrays", {})
        got = {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()}
        if got != expected:
            raise CorruptReferenceError(f"{folder}: arrays {got} differ from the manifest {expected}")
        return arrays

    def put(self, key: Mapping, features: Any) -> dict[str, np.ndarray]:
        """Validate, store and return the arrays of ``features`` (stats added) under ``key``."""
        k = canonical_key(key)
        count = next((int(k[f]) for f in COUNT_FIELDS if isinstance(k.get(f), int)), None)
        arrays = as_array_dict(features)
        _check_features(arrays, "reference features", count)
        arrays = with_stats(arrays, "reference")
        folder = self.path_for(k)
        (folder / "manifest.json").unlink(missing_ok=True)  # the entry is incomplete until rewritten
        parts = {
            "features.npz": {n: v for n, v in arrays.items() if n not in STAT_KEYS},
            "stats.npz": {n: v for n, v in arrays.items() if n in STAT_KEYS},
        }
        files = {}
        for name, part in parts.items():
            if part:
                _save_npz(folder / name, part)
                files[name] = _file_sha256(folder / name)
        manifest = {
            "format": FORMAT,
            "key": k,
            "digest": key_digest(k),
            "arrays": {n: {"shape": list(v.shape), "dtype": str(v.dtype)} for n, v in arrays.items()},
            "files": files,
            "numpy": np.__version__,
        }
        atomic_write_json(folder / "manifest.json", manifest)
        return arrays

    def get_or_compute(self, key: Mapping, compute: Callable[[], Any]) -> dict[str, np.ndarray]:
        """Cached arrays for ``key``; on a miss (or a corrupt entry, with a warning) call ``compute()``.

        ``compute`` returns a Features-like object (mapping or dataclass of arrays such as
        pool/spatial/logits). The result is a dict of those arrays plus mu/sigma (from pool)
        and mu_s/sigma_s (from spatial) in float64.
        """
        try:
            cached = self.get(key)
        except CorruptReferenceError as e:
            warnings.warn(f"reference cache entry unusable, recomputing: {e}", stacklevel=2)
            cached = None
        if cached is not None:
            return cached
        return self.put(key, compute())


# ------------------------------------------------------------------------ foreign files
def load_reference_npz(path: str | os.PathLike, include_images: bool = False,
                       expected_dim: int | None = None) -> dict[str, np.ndarray]:
    """Read a reference .npz: FID statistics and/or features, from us or from other tools.

    Understood layouts: pytorch-fid / TTUR statistics (``mu``, ``sigma``); guided-diffusion
    reference batches (``mu``, ``sigma``, ``mu_s``, ``sigma_s`` and ``arr_0``: uint8 NHWC
    images, returned as ``images`` only with ``include_images=True``; a 2-D float ``arr_0`` is
    read as pool features); our own cache files (``pool``/``spatial``/``logits`` features, stats
    computed when absent). ``expected_dim`` checks the pool dimension (e.g. 2048).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"reference file not found: {path}")
    _check_zip_magic(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise CorruptReferenceError(f"{path} is corrupt or not an .npz ({type(e).__name__}: {e}); "
                                    "re-download or recompute it") from e
    wanted = [n for n in names if n in STAT_KEYS or n in ("pool", "spatial", "logits")]
    arr0 = None
    if "arr_0" in names:
        arr0 = _read_npz(path, ["arr_0"])["arr_0"] if include_images or not wanted else None
    arrays = _read_npz(path, wanted)
    for key, value in arrays.items():  # statistics and features are numbers; text or records are refused
        if value.dtype.kind not in "fiu" or value.dtype.names is not None:
            raise CorruptReferenceError(f"{path}: '{key}' holds {value.dtype} values, not numbers; a reference file "
                                        "holds float statistics (mu, sigma) or features: recompute it")
    if arr0 is not None:
        if arr0.dtype == np.uint8 and arr0.ndim == 4:
            if include_images:
                arrays["images"] = arr0
        elif np.issubdtype(arr0.dtype, np.floating) and arr0.ndim == 2 and "pool" not in arrays:
            arrays["pool"] = arr0
        else:
            raise CorruptReferenceError(f"{path}: arr_0 has {arr0.dtype} {arr0.shape}; expected uint8 "
                                        "NHWC images or 2-D float features")
    if not any(k in arrays for k in ("mu", "pool")):
        raise CorruptReferenceError(
            f"{path}: no FID statistics ('mu', 'sigma') or features ('pool') found, only {names}"
            + ("; it holds images in arr_0: load them with include_images=True and extract their "
               "features first" if "arr_0" in names else "")
        )
    feats = {k: v for k, v in arrays.items() if k != "images"}
    _check_features(feats, str(path))
    out = with_stats(feats, str(path))
    if expected_dim is not None and out["mu"].shape != (expected_dim,):
        raise InputError(f"{path}: reference statistics have mu {out['mu'].shape} and sigma "
                         f"{out['sigma'].shape}, but the samples' features have dimension {expected_dim}")
    if "images" in arrays:
        out["images"] = arrays["images"]
    return out


def save_stats_npz(path: str | os.PathLike, mu: np.ndarray, sigma: np.ndarray, **extra: np.ndarray) -> Path:
    """Write FID statistics as an .npz readable by pytorch-fid (``mu``, ``sigma``; atomic)."""
    arrays = {"mu": np.asarray(mu, np.float64), "sigma": np.asarray(sigma, np.float64), **extra}
    _check_stats_pair(arrays, "mu", "sigma", str(path))
    _save_npz(Path(path), arrays)
    return Path(path)
