"""An example plugin of a user's own: one metric and one family, outside generative_bench.

Loaded with ``GBENCH_PLUGINS=gbench_plugin_example`` (its parent folder on PYTHONPATH); importing
it registers the metric, and ``CONFIG_DIR`` gives Hydra the family's model preset."""

from pathlib import Path

from . import radius  # noqa: F401  (registers the metric)

CONFIG_DIR = Path(__file__).parent / "conf"
