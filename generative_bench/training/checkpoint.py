"""Checkpoints: atomic save, safe load (``weights_only=True``), clear errors for bad files."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from generative_bench.errors import InputError
from generative_bench.io import atomic_write

LAST = "last.pt"


def save_checkpoint(state: dict[str, Any], directory: str | os.PathLike, keep_step: int | None = None) -> Path:
    """Write ``directory/last.pt`` atomically (and ``step_<n>.pt`` when ``keep_step`` is given)."""
    directory = Path(directory)
    path = atomic_write(directory / LAST, lambda f: torch.save(state, f))
    if keep_step is not None:
        atomic_write(directory / f"step_{keep_step:08d}.pt", lambda f: torch.save(state, f))
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no code execution from untrusted files)."""
    path = Path(path)
    if path.is_dir():
        path = path / LAST
    if not path.is_file():
        raise InputError(f"checkpoint {str(path)!r} does not exist; train first or fix the path")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, OSError) as e:
        raise InputError(
            f"checkpoint {str(path)!r} is corrupt or not a generative-bench checkpoint ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); delete it to retrain or restore a backup"
        ) from e


def find_checkpoint(directory: str | os.PathLike) -> Path | None:
    path = Path(directory) / LAST
    return path if path.is_file() else None
