"""The canonical order of a sample set, so that figures built on splits or random subsets (Inception
Score's splits, KID's subsets) do not depend on the order the set was read in.

A folder read in path order (class subfolders), a class-sorted npz and the same images shuffled are
one set; scored in the order given, split-based figures differ between them (IS of a class-sorted
set is the IS of single-class splits: far too low). Sorting the rows by their content (bytes of the
float64 values; ties are identical rows, whose order cannot matter) before the seeded split gives
every ordering of one set the same splits, hence bitwise the same figure.
"""

from __future__ import annotations

import numpy as np

from generative_bench.errors import InputError


def canonical_order(x: np.ndarray) -> np.ndarray:
    """The permutation that sorts the rows of the 2-D array ``x`` by content (stable)."""
    rows = np.ascontiguousarray(np.asarray(x, dtype=np.float64))
    return np.argsort(rows.view(np.dtype((np.void, rows.itemsize * rows.shape[1]))).ravel(), kind="stable")


def check_order(order: str, allowed: tuple[str, ...], name: str) -> str:
    if order not in allowed:
        raise InputError(f"{name} must be one of {list(allowed)}, got {order!r}")
    return order
