"""``gbench``: the console entry point.

    gbench                          the side-by-side benchmark (multirun over the four backends
                                    on the embedded ring mixture) and its report
    gbench -m model=gan,vae seed=0,1,2 ...   any Hydra sweep; its report is built at the end
    gbench run|train|sample|evaluate [overrides]   one stage (or the whole pipeline) in one run folder
    gbench report DIR... [--out OUT]           leaderboard + HTML report over run/sweep folders
    --debug (anywhere)                         full tracebacks instead of one-line error messages
    gbench compare NEW BASELINE [--tolerance ...]   regression gate: exit 1 on regressions, 3 on a
                                    protocol change (generative_bench.reporting.compare)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

VERBS = {"run": "pipeline", "train": "train", "sample": "sample", "evaluate": "evaluate",
         "train-extractor": "train_extractor"}


def config_dir() -> str:
    """``GBENCH_CONFIG_DIR`` or the ``conf/`` folder of the source checkout."""
    env = os.environ.get("GBENCH_CONFIG_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "conf"
    if not (path / "config.yaml").is_file():
        sys.exit(f"gbench: no Hydra config at {path}; install the project from its source checkout "
                 "(pip install -e .) or set GBENCH_CONFIG_DIR to its conf/ folder")
    return str(path)


def hydra_args(argv: list[str]) -> list[str]:
    """Map a leading verb to ``stage=...`` in a single run folder (unless -m/--multirun is given)."""
    if argv and argv[0] in VERBS:
        verb, rest = argv[0], argv[1:]
        extra = [f"stage={VERBS[verb]}"]
        if not any(a in ("-m", "--multirun") for a in rest):
            extra.append("hydra.mode=RUN")
        return extra + rest
    return argv


def torchrun_args(args: list[str]) -> list[str]:
    """Under torchrun every rank runs the same single job; the content-keyed run folder is the same
    on every rank, so they share it (one folder per job)."""
    from generative_bench.distributed import launched_by_torchrun

    if not launched_by_torchrun():
        return args
    if any(a in ("-m", "--multirun") for a in args):
        sys.exit("gbench: error: sweeps cannot run inside torchrun; launch one torchrun per job (e.g. with a "
                 "cluster launcher)")
    return args if "hydra.mode=RUN" in args else args + ["hydra.mode=RUN"]


def command_key(args: list[str]) -> str:
    """A stable name for the sweep folder of a command: the hash of its overrides, in any order."""
    from generative_bench.config import config_key

    kept = sorted(a for a in args if a not in ("-m", "--multirun", "--debug")
                  and not a.split("=", 1)[0].lstrip("+~").startswith(("hydra.", "paths.")))
    return config_key(kept, 8)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in argv:  # tracebacks instead of the one-line messages
        argv = [a for a in argv if a != "--debug"]
        os.environ["HYDRA_FULL_ERROR"] = "1"
    if argv[:1] == ["report"]:
        from generative_bench.cli.report import report_main

        sys.exit(report_main(argv[1:]))
    if argv[:1] == ["compare"]:
        from generative_bench.cli.compare import compare_main

        sys.exit(compare_main(argv[1:]))
    import hydra

    from generative_bench.cli import task
    from generative_bench.config import register_resolvers

    register_resolvers()
    os.environ["GBENCH_COMMAND_KEY"] = command_key(argv)
    prog = sys.argv[0]
    sys.argv = [prog] + torchrun_args(hydra_args(argv))
    hydra.main(config_path=config_dir(), config_name="config", version_base="1.3")(task.run_job)()
    if task.FAILED_JOBS:
        print(f"gbench: {len(task.FAILED_JOBS)} job(s) failed: " + ", ".join(task.FAILED_JOBS), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
