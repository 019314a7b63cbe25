"""``gbench``: the console entry point.

    gbench                          the side-by-side benchmark (multirun over the four backends
                                    on the embedded ring mixture) and its report
    gbench -m model=gan,vae seed=0,1,2 ...   any Hydra sweep; its report is built at the end
    gbench run|train|sample|evaluate [overrides]   one stage (or the whole pipeline) in one run folder
    gbench report DIR... [--out OUT]           leaderboard + HTML report over run/sweep folders
    gbench reference data=... --format pytorch-fid|guided-diffusion --out FILE
                                    write the reference set as a reference file (eval.reference.*)
    --debug (anywhere)                         full tracebacks instead of one-line error messages
    gbench compare NEW BASELINE [--tolerance ...]   regression gate: exit 1 on regressions, 3 on a
                                    protocol change (generative_bench.reporting.compare)
    gbench score SAMPLES REFERENCE [--metrics ...]   score samples in one line, no run folder
                                    (generative_bench.cli.score; the numbers of gbench evaluate)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

VERBS = {"run": "pipeline", "train": "train", "sample": "sample", "evaluate": "evaluate",
         "train-extractor": "train_extractor", "reference": "reference"}
#: ``gbench reference`` options and the overrides they stand for
REFERENCE_OPTIONS = {"--format": "eval.reference.format", "--out": "eval.reference.out"}


def reference_options(argv: list[str]) -> list[str]:
    """``gbench reference ... --format F --out FILE`` -> the Hydra overrides ``eval.reference.format=F
    eval.reference.out=FILE`` (``--format=F`` works too); other verbs are left as they are."""
    if argv[:1] != ["reference"]:
        return argv
    out, i = [argv[0]], 1
    while i < len(argv):
        a = argv[i]
        name, eq, value = a.partition("=")
        if name in REFERENCE_OPTIONS:
            if not eq:
                if i + 1 >= len(argv):
                    sys.exit(f"gbench: error: {name} needs a value, e.g. {name} "
                             f"{'guided-diffusion' if name == '--format' else 'ref.npz'}")
                value, i = argv[i + 1], i + 1
            out.append(f"{REFERENCE_OPTIONS[name]}={value}")
        else:
            out.append(a)
        i += 1
    return out


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
        flags = [a for a in rest if a in ("-m", "--multirun")]  # Hydra takes its flags before the overrides
        rest = [a for a in rest if a not in flags]
        extra = [f"stage={VERBS[verb]}"]
        if not flags:
            extra.append("hydra.mode=RUN")
        return flags + extra + rest
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


def _first_of_sweeps(args: list[str]) -> list[str]:
    """The overrides with every sweep (``a=1,2``, ``range(...)``) at its first value."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType

    prefix = {OverrideType.ADD: "+", OverrideType.FORCE_ADD: "++", OverrideType.DEL: "~", OverrideType.CHANGE: ""}
    out = []
    for o in OverridesParser.create().parse_overrides(args):
        if o.is_sweep_override():
            first = next(iter(o.sweep_string_iterator()))
            out.append(f"{prefix[o.type]}{o.get_key_element()}={first}")
        else:
            out.append(o.input_line)
    return out


def precheck(args: list[str]) -> None:
    """Compose the config once before Hydra starts (sweeps at their first value): a typo in an
    override, an unknown choice or a run folder that cannot be made is one line naming the problem
    and the fix, exit 2 (5 for the folder), instead of Hydra's own report."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    overrides = [a for a in args if a not in ("-m", "--multirun")]
    try:
        overrides = _first_of_sweeps(overrides)
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose("config", overrides=overrides, return_hydra_config=True)
    except Exception as e:  # hydra / omegaconf composition and override-grammar errors
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and not ln.startswith("Set the environment")]
        options = [ln for ln in lines[1:] if not ln.endswith(":") and not ln.startswith(("full_key", "object_type"))]
        head = lines[0] if lines else type(e).__name__
        if "Could not find" in head and options:
            head += "; available: " + ", ".join(ln.strip() for ln in options if " " not in ln.strip())
        elif len(lines) > 1 and lines[1].startswith("To append"):
            head = typo_message(head, lines[1], overrides)
        print(f"gbench: error: {head}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        GlobalHydra.instance().clear()
    multirun = any(a in ("-m", "--multirun") for a in args) or str(OmegaConf.select(cfg, "hydra.mode")).endswith("MULTIRUN")
    if multirun:
        params = OmegaConf.to_container(cfg.hydra.sweeper.get("params") or {}, resolve=False)
        validate_sweep([f"{k}={v}" for k, v in params.items()], [a for a in args if a not in ("-m", "--multirun")])
    runs = OmegaConf.select(cfg, "paths.runs_dir", default=None)
    if runs is not None and Path(str(runs)).exists() and not Path(str(runs)).is_dir():
        print(f"gbench: error: paths.runs_dir={runs!r} is a file, not a folder: remove it or choose another folder "
              "(paths.runs_dir=DIR or GBENCH_HOME=DIR)", file=sys.stderr)
        raise SystemExit(5)


def config_keys(overrides: list[str]) -> list[str]:
    """Every dotted key of the config composed with ``overrides`` (leaves and mappings)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import DictConfig

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose("config", overrides=overrides)
    except Exception:
        return []
    finally:
        GlobalHydra.instance().clear()
    keys: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        for k in node.keys():
            name = f"{prefix}.{k}" if prefix else str(k)
            keys.append(name)
            try:  # a leaf's interpolation is never resolved here: only mappings are walked into
                child = node._get_node(k)
            except Exception:
                child = None
            if isinstance(child, DictConfig):
                walk(child, name)

    walk(cfg, "")
    return keys


def typo_message(head: str, append_advice: str, overrides: list[str]) -> str:
    """``Could not override 'trian.max_steps'`` as the closest valid keys; Hydra's advice to append
    (``+key=value``) only when no existing key is close, i.e. when a new key is what was meant."""
    import difflib
    import re

    found = re.search(r"Could not override '([^']+)'", head)
    if not found:
        return f"{head} {append_advice}"
    key = found.group(1)
    rest = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != key]
    close = difflib.get_close_matches(key, config_keys(rest), n=3, cutoff=0.75)
    if not close:
        return f"{key} is not a key of the config. {append_advice}"
    return (f"{key} is not a key of the config; did you mean {close[0]}?"
            + (f" (other close keys: {', '.join(close[1:])})" if close[1:] else "")
            + f" To add {key} as a new key instead, prefix it with +")


def sweep_jobs(params: list[str], overrides: list[str]) -> list[list[str]]:
    """Every job of a sweep as its list of overrides (Hydra's basic sweeper: the sweeper's params,
    then the command line's overrides, which win for a key both give; the cartesian product)."""
    import itertools

    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    by_key: dict[str, list[str]] = {}
    for o in parser.parse_overrides(params) + parser.parse_overrides(overrides):
        key = o.get_key_element()
        if o.is_sweep_override():
            by_key[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
        else:
            by_key[key] = [o.input_line]
    return [list(combo) for combo in itertools.product(*by_key.values())]


def validate_sweep(params: list[str], overrides: list[str]) -> None:
    """Compose and validate every job of a sweep before any is launched (no folder is written): a
    problem of every job is printed once, others with the job they belong to; exit 2."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf, open_dict

    from generative_bench.config import project_error
    from generative_bench.validation import validate

    jobs = sweep_jobs(params, overrides)
    problems: list[tuple[str, list[str]]] = []
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            for job in jobs:
                try:
                    cfg = compose("config", overrides=job, return_hydra_config=True)
                    with open_dict(cfg):
                        cfg.pop("hydra")
                    OmegaConf.resolve(cfg)
                    validate(cfg)
                except Exception as e:  # the job's problems, as its own run would state them
                    err = project_error(e)
                    text = str(err if err is not None else e).removeprefix("invalid configuration")
                    lines = [ln.strip(" -:") for ln in text.splitlines() if ln.strip(" -:")]
                    lines = lines[1:] if len(lines) > 1 and lines[0].endswith("problems)") else lines
                    swept = [o for o in job if o not in overrides or "," in o]
                    problems.append((" ".join(swept) or "the job", [ln.removeprefix(": ") for ln in lines]))
    finally:
        GlobalHydra.instance().clear()
    if not problems:
        return
    common = [ln for ln in problems[0][1] if len(problems) == len(jobs) and all(ln in p for _, p in problems)]
    lines = [f"{ln} (every job of the sweep)" for ln in common]
    lines += [f"{job}: {ln}" for job, p in problems for ln in p if ln not in common]
    head = "invalid sweep configuration, no job launched"
    print(f"gbench: error: {head}: {lines[0]}" if len(lines) == 1 else
          f"gbench: error: {head} ({len(lines)} problems):\n  - " + "\n  - ".join(lines), file=sys.stderr)
    raise SystemExit(2)


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
    from generative_bench.errors import InputError
    from generative_bench.plugins import load_plugins, searchpath_override

    try:
        load_plugins()  # before anything reads the metric / backend declarations
    except InputError as e:
        print(f"gbench: error: {e}", file=sys.stderr)
        sys.exit(2)
    if argv[:1] == ["report"]:
        from generative_bench.cli.report import report_main

        sys.exit(report_main(argv[1:]))
    if argv[:1] == ["compare"]:
        from generative_bench.cli.compare import compare_main

        sys.exit(compare_main(argv[1:]))
    if argv[:1] == ["score"]:
        from generative_bench.cli.score import score_main

        sys.exit(score_main(argv[1:]))
    import hydra

    from generative_bench.cli import task
    from generative_bench.config import register_resolvers

    register_resolvers()
    argv = reference_options(argv)
    os.environ["GBENCH_COMMAND_KEY"] = command_key(argv)
    args = searchpath_override(torchrun_args(hydra_args(argv)))
    precheck(args)
    prog = sys.argv[0]
    sys.argv = [prog] + args
    hydra.main(config_path=config_dir(), config_name="config", version_base="1.3")(task.run_job)()
    if task.FAILED_JOBS:
        print(f"gbench: {len(task.FAILED_JOBS)} job(s) failed: " + ", ".join(task.FAILED_JOBS), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
