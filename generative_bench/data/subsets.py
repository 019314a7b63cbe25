"""Deterministic class-balanced subsets (``data.subset=N``)."""

from __future__ import annotations

import numpy as np

from generative_bench.errors import InputError


def class_balanced_indices(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``n`` examples, as equal per class as possible, chosen by a seeded RNG.

    Class k gets ``n // K`` examples, plus one for the first ``n % K`` classes. The same
    (labels, n, seed) always gives the same indices, so subsets are comparable across runs.
    """
    labels = np.asarray(labels)
    if n <= 0:
        raise InputError(f"data.subset must be a positive number of examples, got {n}")
    if n > len(labels):
        raise InputError(f"data.subset={n} is larger than the split ({len(labels)} examples); lower it or use null")
    classes = np.unique(labels)
    rng = np.random.default_rng(seed)
    per_class = [np.flatnonzero(labels == c) for c in classes]
    quota = [n // len(classes) + (1 if i < n % len(classes) else 0) for i in range(len(classes))]
    short = [(c, len(ix), q) for c, ix, q in zip(classes, per_class, quota) if len(ix) < q]
    if short:
        raise InputError(f"class-balanced subset of {n} impossible: class/available/needed {short}")
    chosen = [rng.permutation(ix)[:q] for ix, q in zip(per_class, quota)]
    return np.sort(np.concatenate(chosen))
