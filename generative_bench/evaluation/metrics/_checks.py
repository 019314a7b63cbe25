"""Input checks shared by every metric: 2-D, finite, enough samples, same feature dimension."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from generative_bench.errors import InputError


class MetricWarning(UserWarning):
    """A metric was computed, but under conditions that make it less reliable."""


class MeanStd(NamedTuple):
    """A metric averaged over splits/subsets: mean and (population, ddof=0) standard deviation."""

    mean: float
    std: float


def as_features(x: Any, name: str, *, min_samples: int = 1, what: str = "this metric") -> np.ndarray:
    """Return ``x`` as a 2-D floating numpy array ``(N, D)`` or raise :class:`InputError`.

    Accepts numpy arrays and torch tensors. Integer arrays are promoted to float64; float
    arrays keep their dtype (the metric decides its own compute precision).
    """
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch tensor without importing torch
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except Exception as e:  # pragma: no cover - exotic inputs
        raise InputError(f"{name}: cannot convert {type(x).__name__} to a numpy array ({e})") from e
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InputError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise InputError(
            f"{name}: expected a 2-D array of features (N, D), got shape {arr.shape}; "
            "flatten per-sample features first (e.g. x.reshape(len(x), -1))"
        )
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    n = arr.shape[0]
    if n < min_samples:
        raise InputError(
            f"{name}: {what} needs at least {min_samples} samples, got {n}; "
            f"provide more samples (at least {min_samples})"
        )
    if arr.shape[1] < 1:
        raise InputError(f"{name}: features have zero dimensions, shape {arr.shape}")
    finite = np.isfinite(arr)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        raise InputError(
            f"{name}: {len(bad_rows)} of {n} feature rows contain NaN or Inf "
            f"(first at row {int(bad_rows[0])}); the extractor or the samples are broken "
            "(check the images for NaN before conversion to uint8)"
        )
    return arr


def check_same_dim(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """Raise :class:`InputError` naming both shapes when the feature dimensions differ."""
    if a.shape[1:] != b.shape[1:]:
        raise InputError(
            f"feature dimensions differ: {name_a} has shape {tuple(a.shape)}, "
            f"{name_b} has shape {tuple(b.shape)}; both must come from the same extractor layer"
        )


def check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
