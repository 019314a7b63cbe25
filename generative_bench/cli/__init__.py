"""The ``gbench`` command line: Hydra stages, sweeps and the report builder."""
