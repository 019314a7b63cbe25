"""Every ``gbench`` command the README gives composes and validates as written (no typo, no
unknown preset or option, no invalid value), on a clean clone without data or network; `.ci/run`
executes the README's CI block verbatim (tests/readme_commands.py)."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf, open_dict

from generative_bench.cli.main import _first_of_sweeps, config_dir, hydra_args, reference_options, sweep_jobs
from tests.readme_commands import block, commands

#: overrides that name files a user brings (checked when the command runs, not here)
USER_FILES = ("sampler.path=", "checkpoint=", "eval.reference.file=")


def _is_cli_verb(argv: list[str]) -> bool:
    return bool(argv) and argv[0] in ("report", "compare", "score")


def test_the_readme_lists_its_commands():
    found = commands()
    assert [] in found  # the install line's bare `gbench`
    assert any(a[:1] == ["reference"] and "--format" in a for a in found)
    assert any(a[:1] == ["compare"] and len(a) > 2 for a in found)
    assert "gbench experiment=cifar_smoke" in block("CI smoke runs")


@pytest.mark.parametrize("argv", [a for a in commands() if not _is_cli_verb(a)], ids=lambda a: " ".join(a) or "gbench")
def test_each_hydra_command_composes_and_validates(argv):
    from generative_bench.cli.main import main  # noqa: F401  (registers the resolvers)
    from generative_bench.config import register_resolvers
    from generative_bench.validation import validate

    register_resolvers()
    args = [a for a in hydra_args(reference_options(argv)) if a not in ("-m", "--multirun")]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose("config", overrides=_first_of_sweeps(args), return_hydra_config=True)
            params = OmegaConf.to_container(cfg.hydra.sweeper.get("params") or {}, resolve=False)
            sweep = "-m" in argv or str(cfg.hydra.mode).endswith("MULTIRUN")
            jobs = sweep_jobs([f"{k}={v}" for k, v in params.items()], args) if sweep else [args]
            for job in jobs:
                job_cfg = compose("config", overrides=job, return_hydra_config=True)
                with open_dict(job_cfg):
                    job_cfg.pop("hydra")
                OmegaConf.resolve(job_cfg)
                if not any(o.startswith(USER_FILES) for o in job):
                    validate(job_cfg)
    finally:
        GlobalHydra.instance().clear()


@pytest.mark.parametrize("argv", [a for a in commands() if _is_cli_verb(a) and len(a) > 1], ids=" ".join)
def test_report_compare_and_score_commands_parse(argv):
    if argv[0] in ("compare", "score"):
        from generative_bench.cli import compare, score

        (compare if argv[0] == "compare" else score)._parser().parse_intermixed_args(argv[1:])
    else:
        flags = [a for a in argv[1:] if a.startswith("--")]
        assert set(flags) <= {"--out", "--formats", "--title"}, flags
