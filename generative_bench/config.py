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
