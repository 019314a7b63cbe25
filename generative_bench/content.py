"""Content digests: what identifies a result, so that work already done is found again.

* :func:`weights_digest`: a module's state dict;
* :func:`code_digest`: the package's own source files and the versions of the libraries its
  numbers depend on, so a result recorded by other code is never taken for this code's;
* :func:`records_digest`: what a report shows of a set of run records (their results, not the
  times a rerun rewrites).
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:  # torch is imported where a digest of weights is made, not by `gbench report`
    import torch

#: the parts of a run record that a rerun rewrites without changing any result
VOLATILE_RECORD_KEYS = ("updated", "wall_times", "run_dir")


def weights_digest(module: "torch.nn.Module") -> str:
    """sha256 over a module's state dict (names, dtypes, shapes and bytes, in order)."""
    import torch

    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-dim too
    return h.hexdigest()


@functools.cache
def code_digest() -> str:
    """sha256 of the package's source files and of the torch, numpy and scipy versions."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "absent"

    root = Path(__file__).resolve().parent
    h = hashlib.sha256(";".join(f"{n} {installed(n)}" for n in ("torch", "numpy", "scipy")).encode())
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def records_digest(records: Iterable[tuple[str, dict[str, Any]]], **extra: Any) -> str:
    """sha256 of ``(name, record)`` pairs without their volatile keys, plus ``extra`` and the code."""
    h = hashlib.sha256(code_digest().encode())
    for name, data in sorted(records, key=lambda item: item[0]):
        kept = {k: v for k, v in data.items() if k not in VOLATILE_RECORD_KEYS}
        h.update(json.dumps([name, kept], sort_keys=True, default=str).encode())
    h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()


__all__ = ["code_digest", "records_digest", "weights_digest"]
