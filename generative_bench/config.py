"""Config to objects: Hydra instantiation with the project's errors unwrapped.

Hydra wraps every exception raised while building an object in an ``InstantiationException``
whose message is a paragraph; errors the project raises on purpose (``GBenchError``) come out
here as themselves, and any other failure to build an object from the config becomes one
``InputError`` naming the config key.
"""

from __future__ import annotations

from typing import Any

from generative_bench.errors import GBenchError, InputError


def project_error(exc: BaseException) -> GBenchError | None:
    """The first ``GBenchError`` in ``exc``'s cause/context chain (``exc`` itself included)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, GBenchError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def instantiate(cfg: Any, *args: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` that raises the project's own error, or one InputError."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate

    try:
        return hydra_instantiate(cfg, *args, **kwargs)
    except InstantiationException as e:
        inner = project_error(e)
        if inner is not None:
            raise inner from None
        text = " ".join(str(e).split())
        raise InputError(f"cannot build an object from the config: {text}") from e


__all__ = ["instantiate", "project_error"]


# ------------------------------------------------------------------------------------ run identity
#: train settings that do not change what a run computes (budgets may grow on resume)
NON_IDENTITY_TRAIN_KEYS = ("max_steps", "max_images", "max_minutes", "resume", "allow_config_change", "log_every",
                           "checkpoint_every", "keep_every", "num_workers", "tensorboard", "compile")
#: data settings that say where the data is, not what it is
NON_IDENTITY_DATA_KEYS = ("root", "path", "test_path", "download")


def _drop(obj: Any, keys: tuple[str, ...]) -> Any:
    if isinstance(obj, dict):
        return {k: _drop(v, keys) for k, v in obj.items() if k not in keys}
    if isinstance(obj, list):
        return [_drop(v, keys) for v in obj]
    return obj


def run_identity(cfg: Any) -> dict[str, Any]:
    """What defines a training run: model, data (not where it lives), training settings other than
    budgets and bookkeeping, the seed and the extractor being trained. Its hash names the
    run folder, and a resume checks it against the checkpoint's."""
    from omegaconf import DictConfig, OmegaConf

    def plain(node: Any) -> Any:
        return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node

    model = plain(cfg.get("model")) or {}
    identity = {
        "model": {"name": model.get("name"), "backend": model.get("backend")},
        "data": _drop(plain(cfg.get("data")) or {}, NON_IDENTITY_DATA_KEYS),
        "train": {k: v for k, v in (plain(cfg.get("train")) or {}).items() if k not in NON_IDENTITY_TRAIN_KEYS},
        "seed": cfg.get("seed"),
        "extractor": plain(cfg.get("extractor")),
    }
    if cfg.get("sampler") is not None:  # external samples: two files of one name are two runs
        identity["sampler"] = plain(cfg.get("sampler"))
    return identity


def config_key(obj: Any, length: int = 10) -> str:
    """A short, stable hash of a JSON-able object (sorted keys)."""
    import hashlib
    import json

    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def config_differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """``key: old -> new`` lines for every leaf that differs between two nested dicts."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new), key=str):
            key = f"{prefix}.{k}" if prefix else str(k)
            if k not in old:
                out.append(f"{key}: (absent) -> {new[k]!r}")
            elif k not in new:
                out.append(f"{key}: {old[k]!r} -> (absent)")
            else:
                out += config_differences(old[k], new[k], key)
        return out
    return [] if old == new else [f"{prefix}: {old!r} -> {new!r}"]


def _safe_name(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "samples"


def run_name_for(default: str, root: Any) -> str:
    """The run folder's name: ``default`` (model-data-seed) for a trained model; for external samples
    (``sampler=npz`` / ``sampler=folder``) the sample set's name -- ``sampler.name``, else the file's
    stem or the folder's name -- with the data; ``reference-<data>`` for ``gbench reference``."""
    from pathlib import Path

    from omegaconf import OmegaConf

    sampler = root.get("sampler") if root is not None else None
    data = OmegaConf.select(root, "data.name", default="data")
    if sampler is not None:
        name = sampler.get("name")
        if not name:
            path = OmegaConf.select(sampler, "path", default=None, throw_on_missing=False)
            if path in (None, "???"):
                return default
            p = Path(str(path))
            name = p.stem if p.suffix.lower() == ".npz" else p.name
        return f"{_safe_name(str(name))}-{data}"
    if str(root.get("stage", "")) == "reference":
        return f"reference-{data}"
    return default


def register_resolvers() -> None:
    """``${gbench_run_key:}`` (hash of the run identity) for Hydra's run folder names and
    ``${gbench_cores:}`` (CPU cores available to this process)."""
    from omegaconf import OmegaConf

    import os

    if not OmegaConf.has_resolver("gbench_run_key"):
        OmegaConf.register_new_resolver("gbench_run_key", lambda *, _root_: config_key(run_identity(_root_)))
    if not OmegaConf.has_resolver("gbench_run_name"):
        OmegaConf.register_new_resolver("gbench_run_name", lambda default, *, _root_: run_name_for(str(default), _root_))
    if not OmegaConf.has_resolver("gbench_cores"):
        OmegaConf.register_new_resolver("gbench_cores", lambda: max(1, len(os.sched_getaffinity(0))
                                                                 if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


register_resolvers()
