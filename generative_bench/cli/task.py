"""The Hydra task function: one job = one run folder with its resolved config and results record.

The config is validated first (milliseconds, :mod:`generative_bench.validation`). A failing job
writes its error into results.json (status "failed", the stage and the message); in a sweep the
other jobs go on and the failure is listed in the report; a single run prints one or two lines
naming the problem and the fix and exits with the error's code (2 bad input, 3 non-finite
training, 4 weights unavailable, 5 cannot write, 130 interrupted, 1 anything else), with the
traceback only under ``--debug`` / ``HYDRA_FULL_ERROR=1``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from generative_bench import distributed
from generative_bench import pipeline
from generative_bench.config import project_error
from generative_bench.errors import GBenchError, InputError
from generative_bench.io import atomic_write_text, read_json, remove_stale_temp_files
from generative_bench.plugins import load_plugins
from generative_bench.records import RESULTS_FILE, RunRecord, environment_info
from generative_bench.validation import validate

log = logging.getLogger("gbench")

#: run folders of jobs that failed in this process (main() exits 1 when non-empty)
FAILED_JOBS: list[str] = []


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device={name} asked for but CUDA is not available; use device=cpu or device=auto")
    return dev


def debug_mode() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR", "") == "1"


def explain(exc: BaseException) -> tuple[str, int]:
    """(the message printed for ``exc``, the exit code)."""
    from generative_bench.training.trainer import TrainingInterrupted

    if isinstance(exc, (TrainingInterrupted, KeyboardInterrupt)):
        return f"interrupted: {exc or 'by the user'}", 130
    err = project_error(exc)
    if err is not None:
        return str(err), err.exit_code
    return (f"{type(exc).__name__}: {exc} (an unexpected error: rerun with --debug for the traceback and "
            "report it)"), 1


def one_line_warnings() -> None:
    """The project's own warnings (NotComparableWarning, MetricWarning) as one ``gbench: warning:``
    line each on stderr, without the source line Python's default format adds; others unchanged."""
    import warnings

    from generative_bench.errors import NotComparableWarning
    from generative_bench.evaluation.metrics._checks import MetricWarning

    default = warnings.showwarning
    if getattr(default, "__gbench__", False):
        return

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, (NotComparableWarning, MetricWarning)):
            print(f"gbench: warning: {' '.join(str(message).split())}", file=file or sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    show.__gbench__ = True  # type: ignore[attr-defined]
    warnings.showwarning = show


def set_threads(cfg: DictConfig, multirun: bool) -> int:
    """``threads: auto``: all cores, or cores / n_jobs when the sweep's jobs run in parallel
    (joblib launcher), so parallel jobs do not oversubscribe the CPU; an int sets it."""
    want = cfg.get("threads", "auto")
    if want != "auto":
        if isinstance(want, bool) or not isinstance(want, int) or want < 1:
            raise InputError(f"threads={want!r}: must be auto or an integer >= 1")
        n = int(want)
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        jobs = 1
        if multirun:
            launcher = HydraConfig.get().launcher
            if "joblib" in str(launcher.get("_target_", "")).lower():
                jobs = max(1, int(launcher.get("n_jobs") or 1))
        n = max(1, cores // jobs)
    torch.set_num_threads(n)
    return n


def check_resume(cfg: DictConfig, run_dir: Path) -> None:
    """A training stage that would resume a checkpoint made with other settings fails before
    anything is written (the trainer checks again against the checkpoint itself)."""
    from generative_bench.config import run_identity
    from generative_bench.training.trainer import changed_identity, config_changed_error

    train = cfg.get("train") or {}
    if str(cfg.stage) not in ("train", "pipeline") or not train.get("resume", True) \
            or train.get("allow_config_change", False):
        return
    diffs = changed_identity(run_dir / "checkpoints", run_identity(cfg))
    if diffs:
        raise config_changed_error(run_dir, run_dir / "checkpoints" / "last.pt", diffs)


_JOB_DONE = threading.Event()  # set when this process's current job has ended
_WATCHING = threading.Event()  # set once this worker process watches its parent


def stop_with_parent(poll_s: float = 1.0) -> bool:
    """In a parallel sweep's worker process: when the ``gbench`` process that launched it dies
    (killed, or interrupted), send this worker SIGTERM, so its training checkpoints and stops
    like an interrupted run instead of running on unsupervised (and racing the rerun that
    resumes it). Returns whether a watcher was started (only in a worker of the joblib launcher)."""
    if multiprocessing.current_process().name == "MainProcess" or _WATCHING.is_set():
        return False
    if "joblib" not in str(HydraConfig.get().launcher.get("_target_", "")).lower():
        return False
    parent = os.getppid()
    _WATCHING.set()

    def watch():
        while os.getppid() == parent:
            time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGTERM)
        _JOB_DONE.wait(timeout=600)  # the job checkpoints and writes its record, then the worker leaves:
        os._exit(1)                  # nobody is left to send it another job

    threading.Thread(target=watch, name="gbench-parent-watch", daemon=True).start()
    return True


def run_job(cfg: DictConfig) -> str:
    """One job of a single run or a sweep: checks, then the stage(s), then its record."""
    _JOB_DONE.clear()
    try:
        return _run_job(cfg)
    finally:
        _JOB_DONE.set()


def _run_job(cfg: DictConfig) -> str:
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    if multirun:
        stop_with_parent()
    one_line_warnings()
    try:
        load_plugins()  # a sweep worker is a fresh process: the plugins' declarations first
        OmegaConf.resolve(cfg)
        pipeline.check_stage(str(cfg.stage))
        validate(cfg)
        set_threads(cfg, multirun)
        device = resolve_device(str(cfg.device))
        check_resume(cfg, run_dir)
        if (run_dir / RESULTS_FILE).is_file():  # a record this run would update must be readable
            read_json(run_dir / RESULTS_FILE)
    except Exception as e:  # nothing was written yet: report and stop (a sweep goes on with the next job)
        return _fail_early(e, run_dir, multirun, cfg)
    remove_stale_temp_files(run_dir)
    dist_info = distributed.init_from_env(device)
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
    if dist_info.is_main:
        atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg))
    record = RunRecord.create(
        run_dir, run_name=cfg.run_name, stage=cfg.stage, seed=int(cfg.seed),
        overrides=list(hc.overrides.task), command="gbench " + " ".join(hc.overrides.task),
        protocol=OmegaConf.to_container(cfg.protocol), environment=environment_info(device),
        config=OmegaConf.to_container(cfg), distributed={"world_size": dist_info.world_size},
    )
    current = {"stage": str(cfg.stage)}
    t0 = time.perf_counter()
    try:
        pipeline.STAGES[str(cfg.stage)](cfg, run_dir, record, device, current)
        wall = dict(record.data.get("wall_times", {}))
        wall["total_s"] = round(time.perf_counter() - t0, 3)
        record.update(wall_times=wall)
        record.complete()
        log.info("run finished: %s", run_dir)
    except BaseException as e:  # record every way a job can end, then decide whether to go on
        inner = project_error(e)
        record.fail(inner or e, current["stage"])
        if multirun and isinstance(e, Exception):
            FAILED_JOBS.append(str(run_dir))
            log.error("job failed in stage %s: %s: %s (recorded in %s)", current["stage"], type(inner or e).__name__,
                      inner or e, record.path)
            return str(run_dir)
        _exit(e, f" (stage {current['stage']}; recorded in {record.path})")
    return str(run_dir)


def _fail_early(e: Exception, run_dir: Path, multirun: bool, cfg: DictConfig) -> str:
    if multirun:
        FAILED_JOBS.append(str(run_dir))
        message, _ = explain(e)
        log.error("job not started: %s", message)
        try:  # leave a record so the report lists the job
            RunRecord.create(run_dir, run_name=str(cfg.get("run_name", run_dir.name)), stage=str(cfg.get("stage")),
                             seed=cfg.get("seed"), overrides=list(HydraConfig.get().overrides.task),
                             command="gbench " + " ".join(HydraConfig.get().overrides.task)).fail(
                project_error(e) or e, "config")
        except GBenchError:
            pass
        return str(run_dir)
    _exit(e, "")


def _exit(e: BaseException, where: str):
    """Print ``e`` as one or two lines and exit with its code (the traceback under --debug)."""
    import sys

    if debug_mode():
        raise e
    message, code = explain(e)
    print(f"gbench: error: {message}{where if code != 130 else ''}", file=sys.stderr)
    raise SystemExit(code)
