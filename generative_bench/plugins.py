"""Plugins: a user's own metrics, feature extractors and backends, registered from outside the package.

A plugin is an importable Python module of the user's (trusted like their own config and code,
see the README's threat model). Importing it registers what it declares - a metric with
:func:`generative_bench.evaluation.schema.register`, a backend or extractor class that configs
name by ``_target_`` - and it may give ``CONFIG_DIR``: a folder of config groups (``model/``,
``data/``, ``eval/features/``, ``experiment/`` ...) added to Hydra's search path, so
``model=<its preset>`` composes like a built-in one. Plugins are named in the ``GBENCH_PLUGINS``
environment variable (module names, comma separated) or declared by an installed package under the
``generative_bench.plugins`` entry-point group; every ``gbench`` process (sweep workers and
``gbench report`` / ``compare`` included) loads them before anything reads the declarations.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

from generative_bench.errors import InputError

ENV_VAR = "GBENCH_PLUGINS"
ENTRY_POINT_GROUP = "generative_bench.plugins"

_loaded: dict[str, ModuleType] = {}


def plugin_names() -> list[str]:
    """Module names from ``GBENCH_PLUGINS`` and the entry points, in that order, each once."""
    names = [n.strip() for n in os.environ.get(ENV_VAR, "").split(",") if n.strip()]
    try:
        from importlib.metadata import entry_points

        names += [ep.value.split(":", 1)[0] for ep in entry_points(group=ENTRY_POINT_GROUP)]
    except Exception:  # pragma: no cover - a broken installation's metadata: the variable still works
        pass
    return list(dict.fromkeys(names))


def load_plugins() -> list[ModuleType]:
    """Import every plugin once (later calls return the same modules), after the suite's own
    declarations, so a plugin's metrics come after the built-in ones in every table."""
    names = plugin_names()
    if names:
        import generative_bench.evaluation.suite  # noqa: F401  (the built-in metric declarations)
    for name in names:
        if name in _loaded:
            continue
        try:
            _loaded[name] = importlib.import_module(name)
        except ImportError as e:
            raise InputError(f"plugin {name!r} (from {ENV_VAR} or the {ENTRY_POINT_GROUP!r} entry points) cannot be "
                             f"imported: {e}; install it or put its folder on PYTHONPATH") from None
    return list(_loaded.values())


def config_dirs() -> list[Path]:
    """The config folders the loaded plugins give (``CONFIG_DIR``), each checked to exist."""
    out = []
    for name, module in _loaded.items():
        where = getattr(module, "CONFIG_DIR", None)
        if where is None:
            continue
        path = Path(where).resolve()
        if not path.is_dir():
            raise InputError(f"plugin {name!r}: CONFIG_DIR {str(path)!r} is not a folder; point it at the folder "
                             "holding the plugin's config groups")
        out.append(path)
    return out


def searchpath_override(args: list[str]) -> list[str]:
    """``args`` plus ``hydra.searchpath=[...]`` with the plugins' config folders (none if the user
    gave a search path: theirs stands)."""
    dirs = config_dirs()
    if not dirs or any(a.split("=", 1)[0].lstrip("+") == "hydra.searchpath" for a in args):
        return args
    quoted = ",".join("'file://" + str(d).replace("\\", "\\\\").replace("'", "\\'") + "'" for d in dirs)
    return [*args, f"hydra.searchpath=[{quoted}]"]


__all__ = ["ENTRY_POINT_GROUP", "ENV_VAR", "config_dirs", "load_plugins", "plugin_names", "searchpath_override"]
