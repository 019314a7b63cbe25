"""The canonical order of a sample set, so that figures built on splits or random subsets (Inception
Score's splits, KID's subsets) do not depend on the order the set was read in.

A folder read in path order (class subfolders), a class-sorted npz and the same images shuffled are
one set; scored in the order given, split-based figures differ between them (IS of a class-sorted
set is the IS of single-class splits: far too low). Sorting the rows by their content (bytes of the
float64 values; ties are identical rows, whose order cannot matter) before the seeded split gives
every ordering of one set the same splits, hence bitwise the same figure.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from generative_bench.errors import InputError


def canonical_order(x: np.ndarray) -> np.ndarray:
    """The permutation that sorts the rows of the 2-D array ``x`` by content (stable)."""
    rows = np.ascontiguousarray(np.asarray(x, dtype=np.float64))
    return np.argsort(rows.view(np.dtype((np.void, rows.itemsize * rows.shape[1]))).ravel(), kind="stable")


def sample_order(images: Any) -> np.ndarray:
    """The permutation that sorts a sample set by its samples' bytes (uint8 images or float points,
    one sample a row after flattening). Unlike :func:`canonical_order` on features, it does not
    move when the features' last bits do (another batch size or number of ranks at extraction)."""
    arr = np.ascontiguousarray(np.asarray(images.cpu() if hasattr(images, "cpu") else images).reshape(len(images), -1))
    return np.argsort(arr.view(np.dtype((np.void, arr.itemsize * arr.shape[1]))).ravel(), kind="stable")


def inverse(order: np.ndarray) -> np.ndarray:
    """The inverse permutation: ``inverse(p)[p[i]] == i``."""
    out = np.empty(len(order), dtype=np.int64)
    out[np.asarray(order)] = np.arange(len(order))
    return out


def check_order(order: str, allowed: tuple[str, ...], name: str) -> str:
    if order not in allowed:
        raise InputError(f"{name} must be one of {list(allowed)}, got {order!r}")
    return order
