"""Checkpoints: atomic save, safe load (``weights_only=True``), clear errors for bad files."""

from __future__ import annotations

import os
import pickle
import warnings
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


#: what every checkpoint the trainer writes holds (see ``Trainer.state_dict``)
REQUIRED_KEYS = ("step", "model", "ema")


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no code execution from untrusted files).

    A missing, truncated or foreign file (a pickle of other objects, a torch file that is not a
    training checkpoint) is an InputError naming the file and the fix.
    """
    path = Path(path)
    if path.is_dir():
        path = path / LAST
    if not path.is_file():
        raise InputError(f"checkpoint {str(path)!r} does not exist; train first or fix the path")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols before refusing them
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's refusal is a paragraph that suggests weights_only=False (unsafe on a file of unknown
        # origin); keep only the unpickler's own reason
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        reason = next((ln for ln in lines if ln.startswith("Unsupported")), lines[0] if lines else "")
        raise InputError(
            f"checkpoint {str(path)!r} is corrupt or not a generative-bench checkpoint: a safe load refused it "
            f"({reason[:200]}); pass the checkpoints/last.pt that `gbench train` wrote, delete it to retrain or "
            "restore a backup"
        ) from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        first = str(e).splitlines()[0] if str(e) else ""
        raise InputError(
            f"checkpoint {str(path)!r} is corrupt or not a generative-bench checkpoint ({type(e).__name__}: "
            f"{first[:200]}); delete it to retrain or restore a backup"
        ) from e
    missing = [k for k in REQUIRED_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        what = f"a {type(state).__name__} without {missing}" if isinstance(state, dict) else f"a {type(state).__name__}"
        raise InputError(
            f"checkpoint {str(path)!r} is not a generative-bench checkpoint (it holds {what}); pass the "
            "checkpoints/last.pt that `gbench train` wrote, or delete the file to retrain"
        )
    return state


def find_checkpoint(directory: str | os.PathLike) -> Path | None:
    path = Path(directory) / LAST
    return path if path.is_file() else None
