"""Atomic file writes: a crash or kill never leaves a half-written record or checkpoint.

Every file is written to ``.<name>.<random>.tmp`` beside its target, flushed, fsynced and then
renamed over the target, so readers see the old or the new file, never a part. Files get the
user's normal permissions (``0o666`` minus the umask, like ``open``), not ``mkstemp``'s 0600, so a
published run folder or report can be read by others. A temp file left by a killed process is
removed by :func:`remove_stale_temp_files` when the folder is next used. A failed write (disk
full, read-only folder) raises :class:`~generative_bench.errors.OutputError` naming the file and
the fix, and leaves the previous file untouched.
"""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from generative_bench.errors import OutputError

TEMP_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: permission bits of every file the project writes
FILE_MODE = 0o666 & ~_umask()

_FIXES = {
    errno.ENOSPC: "the disk is full: free space or write elsewhere (paths.runs_dir=..., --out ...)",
    errno.EDQUOT: "the disk quota is exceeded: free space or write elsewhere (paths.runs_dir=..., --out ...)",
    errno.EROFS: "the file system is read-only: write elsewhere (paths.runs_dir=..., --out ...)",
    errno.EACCES: "permission denied: write to a folder you own (paths.runs_dir=..., --out ...)",
    errno.EPERM: "permission denied: write to a folder you own (paths.runs_dir=..., --out ...)",
    errno.ENOTDIR: "a parent of the path is a file, not a folder: choose another path",
    errno.EISDIR: "the path is a folder: choose a file name",
}


def _file_in_the_way(path: Path) -> Path | None:
    """The first folder of ``path``'s parents (nearest the root first) that exists but is not a folder."""
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return None


def output_error(path: str | os.PathLike, exc: OSError) -> OutputError:
    """An OutputError naming the file, the reason and the fix of a failed write."""
    blocker = _file_in_the_way(Path(path)) if exc.errno in (errno.EEXIST, errno.ENOTDIR) else None
    if blocker is not None:  # mkdir of a parent found a file where a folder must be
        fix = f"{str(blocker)!r} is a file where a folder is expected: move it away or write elsewhere"
    else:
        fix = _FIXES.get(exc.errno, exc.strerror or str(exc))
    return OutputError(f"cannot write {str(path)!r}: {fix} [{exc.strerror or type(exc).__name__}]")


def _slow_write_for_tests(path: Path) -> None:
    """``GBENCH_TEST_SLOW_WRITE=<name>:<seconds>`` pauses writes of files called <name> after the data
    and before the rename, so tests can kill a process in the middle of a write."""
    spec = os.environ.get("GBENCH_TEST_SLOW_WRITE")
    if spec:
        name, _, seconds = spec.rpartition(":")
        if name == path.name:
            time.sleep(float(seconds))


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Write via ``write(fileobj)`` to a temp file in the same folder, fsync, then ``os.replace``."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        _slow_write_for_tests(path)
        os.replace(tmp, path)
    except OSError as e:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)
        raise output_error(path, e) from e
    except BaseException:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete ``.<name>.*.tmp`` files that an interrupted :func:`atomic_write` left in ``folder``."""
    folder = Path(folder)
    removed = []
    if folder.is_dir():
        for p in folder.glob(f".*{TEMP_SUFFIX}"):
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed


def _json_default(o: Any):
    import numpy as np
    import torch

    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _finite_or_none(o: Any) -> Any:
    """JSON has no NaN/Inf: store them as null so every reader can parse the record."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _finite_or_none(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite_or_none(v) for v in o]
    return o


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    text = json.dumps(_finite_or_none(obj), indent=2, sort_keys=False, default=_json_default)
    return atomic_write(path, lambda f: f.write(text + "\n"), mode="w")


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text), mode="w")


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file; a truncated or corrupt one is an InputError naming the file and the fix."""
    from generative_bench.errors import InputError

    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise InputError(f"{str(path)!r} is not valid JSON ({e.msg} at line {e.lineno}); it was cut short or edited "
                         "by hand: restore it, or move it away to start a fresh record") from None
    except UnicodeDecodeError:
        raise InputError(f"{str(path)!r} is not a text JSON file; restore it or move it away") from None
