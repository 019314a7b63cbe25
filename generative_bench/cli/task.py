"""The Hydra task function: one job = one run folder with its resolved config and results record.

A failing job writes its error into results.json (status "failed", the stage and the message)
before anything else happens; in a sweep the other jobs go on and the failure is listed in the
report, in a single run the exception propagates (exit code 1).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from generative_bench import distributed
from generative_bench.cli import stages
from generative_bench.errors import InputError
from generative_bench.io import atomic_write_text
from generative_bench.records import RunRecord, environment_info

log = logging.getLogger("gbench")

#: run folders of jobs that failed in this process (main() exits 1 when non-empty)
FAILED_JOBS: list[str] = []


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={name} asked for but CUDA is not available; use device=cpu or device=auto")
    return dev


def apply_per_model(cfg: DictConfig) -> DictConfig:
    """Merge ``per_model[<model.name>]`` (a preset's settings for one model of a sweep) into ``cfg``.

    An experiment preset sweeps several models but some settings only make sense for one (the
    sampler steps of a diffusion model, say): ``per_model: {ddpm: {model: {sampling: {steps: 25}}}}``.
    Keys are merged in struct mode, so a key the model's config does not have is an error.
    """
    table = cfg.get("per_model") or {}
    name = str(cfg.model.name)
    not_mappings = [k for k in table if not isinstance(table[k], (dict, DictConfig))]
    if not_mappings:
        k = not_mappings[0]
        raise InputError(f"per_model.{k} must be a mapping of config overrides, got {table[k]!r}")
    if name not in table:
        return cfg
    try:
        return OmegaConf.merge(cfg, table[name])
    except Exception as e:  # omegaconf's ConfigKeyError and friends
        raise InputError(f"per_model.{name}: {e}; fix the key in the experiment preset") from None


def run_job(cfg: DictConfig) -> str:
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    OmegaConf.resolve(cfg)
    cfg = apply_per_model(cfg)
    device = resolve_device(str(cfg.device))
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
        stages.check_stage(str(cfg.stage))
        stages.STAGES[str(cfg.stage)](cfg, run_dir, record, device, current)
        wall = dict(record.data.get("wall_times", {}))
        wall["total_s"] = round(time.perf_counter() - t0, 3)
        record.update(wall_times=wall)
        record.complete()
        log.info("run finished: %s", run_dir)
    except BaseException as e:  # record every way a job can end, then decide whether to go on
        record.fail(e, current["stage"])
        if multirun and isinstance(e, Exception):
            FAILED_JOBS.append(str(run_dir))
            log.error("job failed in stage %s: %s: %s (recorded in %s)", current["stage"], type(e).__name__, e,
                      record.path)
            return str(run_dir)
        raise
    return str(run_dir)
