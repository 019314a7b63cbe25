"""One generic trainer for every backend.

Budgets: ``max_steps``, ``max_images`` or ``max_minutes`` (wall clock, cumulative across
resumes), whichever ends first, so backends can be compared at equal compute. Adam/AdamW (any
``torch.optim`` class by ``_target_``), linear LR warmup and optional linear decay, gradient
clipping, EMA, AMP on CUDA, a progress bar with loss and images/s, a CSV log (TensorBoard
optional), atomic checkpoints every N steps and on SIGINT/SIGTERM, exact resume (model,
optimizers, EMA, scaler, RNG states, data order, step), and a NaN/Inf guard that stops with a
clear error and keeps the last good checkpoint.

A checkpoint stores the run's ``identity`` (the settings that define what it computes, see
:func:`generative_bench.config.run_identity`); resuming with a different one is a
``ConfigChangedError`` listing the differences, unless ``train.allow_config_change`` is true:
then the new optimizer hyper-parameters replace the stored ones and the changes are recorded.
"""

from __future__ import annotations

import csv
import logging
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from generative_bench.config import instantiate
from omegaconf import DictConfig, OmegaConf

from generative_bench.backends.base import Trainable
from generative_bench import distributed
from generative_bench.config import config_differences
from generative_bench.errors import ConfigChangedError, InputError
from generative_bench.io import atomic_write_json, remove_stale_temp_files
from generative_bench.data.loading import BatchStream
from generative_bench.training.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from generative_bench.training.ema import EMA
from generative_bench.training.step import TrainerStepContext

log = logging.getLogger(__name__)


#: the run identity of the last checkpoint, beside it, so a changed command is caught before any write
IDENTITY_FILE = "run_identity.json"


def changed_identity(ckpt_dir: Path, identity: dict[str, Any]) -> list[str]:
    """Differences between ``identity`` and the one stored beside ``ckpt_dir``'s last checkpoint."""
    from generative_bench.io import read_json

    path = Path(ckpt_dir) / IDENTITY_FILE
    if not path.is_file() or find_checkpoint(ckpt_dir) is None:
        return []
    return config_differences(read_json(path), json_roundtrip(identity))


def json_roundtrip(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples become lists, keys strings)."""
    import json

    return json.loads(json.dumps(obj, default=str))


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM arrived; a checkpoint was written before this was raised."""


@dataclass
class TrainSummary:
    steps: int
    images_seen: int
    wall_s: float
    stopped_by: str
    resumed_from_step: int | None
    last_losses: dict[str, float]
    config_changes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def resolve_amp(amp: str | bool | None, device: torch.device) -> torch.dtype | None:
    """'auto' -> bf16 on CUDA with bf16 support, else fp16 on CUDA, else off (CPU)."""
    amp = "off" if amp in (None, False, "false", "off") else ("auto" if amp is True else str(amp))
    if amp == "off" or device.type != "cuda":
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def lr_factor(step: int, warmup_steps: int, decay: str, max_steps: int | None) -> float:
    """Linear warmup to 1 over ``warmup_steps``, then constant or linear decay to 0 at max_steps."""
    f = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    if decay == "linear" and max_steps:
        f *= max(0.0, 1.0 - step / max_steps)
    elif decay not in ("constant", "linear"):
        raise ValueError(f"train.lr_decay must be 'constant' or 'linear', got {decay!r}")
    return f


def config_changed_error(run_dir: Path | str, where: Path | str, diffs: list[str]) -> ConfigChangedError:
    shown = "\n  ".join(diffs[:20]) + ("\n  ..." if len(diffs) > 20 else "")
    return ConfigChangedError(
        f"the run in {str(run_dir)!r} was started with other settings than this command's (checkpoint "
        f"{str(where)!r}):\n  {shown}\nRerun with the original settings, pass train.allow_config_change=true to "
        "continue with the new ones, or choose another run folder (hydra.run.dir=...)")


class Trainer:
    def __init__(self, backend: Trainable, stream: BatchStream, cfg: DictConfig | dict, run_dir: str | Path,
                 device: torch.device | str = "cpu", identity: dict[str, Any] | None = None):
        self.cfg = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(cfg)
        budgets = {k: self.cfg.get(k) for k in ("max_steps", "max_images", "max_minutes")}
        if not any(budgets.values()):
            raise InputError("set a training budget: train.max_steps, train.max_images or train.max_minutes")
        bad = {k: v for k, v in budgets.items() if v is not None and not float(v) > 0}
        if bad:
            raise InputError(f"training budgets must be positive or null, got {bad}")
        self.device = torch.device(device)
        self.dist = distributed.info()
        self.backend = backend.to(self.device)
        self.stream = stream
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.log_path = self.run_dir / "train_log.csv"
        self.amp_dtype = resolve_amp(self.cfg.get("amp", "auto"), self.device)
        if self.cfg.get("channels_last", False) and self.device.type == "cuda":
            self.backend.to(memory_format=torch.channels_last)
        if self.cfg.get("compile", False):
            for child in self.backend.children():  # compile the networks; the step logic stays eager
                child.compile()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.optimizers = self._build_optimizers()
        self.ema = EMA(self.backend, decay=float(self.cfg.ema_decay), warmup=bool(self.cfg.get("ema_warmup", True)),
                       exclude=backend.ema_exclude)
        self.step = 0
        self.images_seen = 0
        self.wall_s = 0.0
        self._stop_signal: int | None = None
        self.resumed_from_step: int | None = None
        self.identity = identity
        #: ``key: old -> new`` lines of an allowed resume with changed settings
        self.config_changes: list[str] = []

    # ---------------------------------------------------------------- setup
    def _build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        opts = {}
        for name, group in self.backend.optimizer_groups().items():
            kwargs = {k: (tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in group.overrides.items()}
            if "betas" in self.cfg.optim and "betas" not in kwargs:
                kwargs["betas"] = tuple(self.cfg.optim.betas)
            opts[name] = instantiate(self.cfg.optim, params=group.params, **kwargs)
        for opt in opts.values():
            for g in opt.param_groups:
                g.setdefault("initial_lr", g["lr"])
        return opts

    def _apply_lr(self) -> float:
        f = lr_factor(self.step, int(self.cfg.get("warmup_steps", 0)), str(self.cfg.get("lr_decay", "constant")),
                      self.cfg.get("max_steps"))
        for opt in self.optimizers.values():
            for g in opt.param_groups:
                g["lr"] = g["initial_lr"] * f
        return next(iter(self.optimizers.values())).param_groups[0]["lr"]

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything exact resume needs; ``rng`` holds one entry per rank (a collective call)."""
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "format": "generative-bench/checkpoint-1",
            "step": self.step,
            "images_seen": self.images_seen,
            "wall_s": self.wall_s,
            "model": self.backend.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "scaler": self.scaler.state_dict(),
            "stream": self.stream.state_dict(),
            "rng": distributed.gather_objects(rng),
            "world_size": self.dist.world_size,
            "identity": self.identity,
        }

    def check_identity(self, state: dict[str, Any], where: Path | str) -> None:
        """Refuse (or, when allowed, record) a resume whose settings differ from the checkpoint's."""
        stored = state.get("identity")
        if self.identity is None or stored is None:
            return
        diffs = config_differences(json_roundtrip(stored), json_roundtrip(self.identity))
        if not diffs:
            return
        if not self.cfg.get("allow_config_change", False):
            raise config_changed_error(self.run_dir, where, diffs)
        self.config_changes = diffs
        log.warning("resuming %s with changed settings: %s", self.run_dir, "; ".join(diffs))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.backend.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        missing = set(self.optimizers) ^ set(state["optimizers"])
        if missing:
            raise ValueError(f"checkpoint optimizers {sorted(state['optimizers'])} do not match backend {sorted(self.optimizers)}")
        for k, o in self.optimizers.items():
            fresh = [{h: v for h, v in g.items() if h != "params"} for g in o.param_groups]
            o.load_state_dict(state["optimizers"][k])
            if self.config_changes:  # an allowed change: the new hyper-parameters win over the stored ones
                for g, new in zip(o.param_groups, fresh):
                    g.update(new)
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.stream.load_state_dict(state["stream"])
        rngs = state["rng"]
        if len(rngs) != self.dist.world_size:
            log.warning("checkpoint was written by %d process(es), resuming with %d: training continues but "
                        "is not bit-identical to an uninterrupted run", len(rngs), self.dist.world_size)
        rng = rngs[self.dist.rank % len(rngs)]
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.step = int(state["step"])
        self.images_seen = int(state["images_seen"])
        self.wall_s = float(state["wall_s"])

    def save(self, keep: bool = False) -> Path:
        """Checkpoint (collective: every rank contributes its RNG state; rank 0 writes)."""
        state = self.state_dict()
        path = self.ckpt_dir / "last.pt"
        if self.dist.is_main:
            path = save_checkpoint(state, self.ckpt_dir, keep_step=self.step if keep else None)
            if self.identity is not None:
                atomic_write_json(self.ckpt_dir / IDENTITY_FILE, self.identity)
        distributed.barrier()
        return path

    def maybe_resume(self) -> bool:
        if self.dist.is_main:  # a write killed half-way leaves its temp file behind
            remove_stale_temp_files(self.ckpt_dir)
        path = find_checkpoint(self.ckpt_dir)
        if path is None or not self.cfg.get("resume", True):
            return False
        state = load_checkpoint(path, map_location=self.device)
        self.check_identity(state, path)
        self.load_state_dict(state)
        self.resumed_from_step = self.step
        log.info("resumed from %s at step %d", path, self.step)
        return True

    # ---------------------------------------------------------------- loop
    def _budget_done(self) -> str | None:
        c = self.cfg
        if c.get("max_steps") and self.step >= int(c.max_steps):
            return "max_steps"
        if c.get("max_images") and self.images_seen >= int(c.max_images):
            return "max_images"
        if c.get("max_minutes") and self.wall_s >= 60.0 * float(c.max_minutes):
            return "max_minutes"
        return None

    @contextmanager
    def _signals(self):
        def handler(signum, frame):
            self._stop_signal = signum

        previous = {}
        try:
            for s in (signal.SIGINT, signal.SIGTERM):
                previous[s] = signal.signal(s, handler)
        except ValueError:  # not the main thread: no handlers, budgets still apply
            previous = {}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def _open_log(self):
        """CSV log; on resume, rows after the checkpoint's step are dropped so the log matches."""
        rows: list[dict[str, str]] = []
        if self.log_path.exists() and self.resumed_from_step is not None:
            with open(self.log_path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= self.step]
        self._log_rows = rows
        self._log_fields: list[str] | None = list(rows[0].keys()) if rows else None

    def _write_log(self, row: dict[str, Any]) -> None:
        from generative_bench.io import atomic_write_text

        if self._log_fields is None:
            self._log_fields = list(row.keys())
        self._log_rows.append({k: row.get(k, "") for k in self._log_fields})
        import io

        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self._log_fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(self._log_rows)
        atomic_write_text(self.log_path, buf.getvalue())

    def fit(self, progress: bool | None = None) -> TrainSummary:
        from tqdm.auto import tqdm

        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.maybe_resume()
        self._open_log()
        main = self.dist.is_main
        tb = self._tensorboard()
        ctx = TrainerStepContext(self.optimizers, self.scaler, self.cfg.get("grad_clip"), self.amp_dtype,
                                 self.device.type, next_batch=self._counted_batch)
        log_every = int(self.cfg.get("log_every", 50))
        ckpt_every = int(self.cfg.get("checkpoint_every", 1000))
        keep_every = self.cfg.get("keep_every")
        total = int(self.cfg.max_steps) if self.cfg.get("max_steps") else None
        bar = tqdm(total=total, initial=self.step, desc=f"train {self.backend.family}", unit="step",
                   disable=(not progress or not main) if progress is not None else (None if main else True),
                   dynamic_ncols=True)
        self.backend.train()
        stopped_by = self._budget_done()
        last: dict[str, float] = {}
        window_t, window_imgs = time.perf_counter(), 0
        with self._signals():
            while stopped_by is None:
                t0 = time.perf_counter()
                ctx.step = self.step
                lr = self._apply_lr()
                x = self._counted_batch()
                last = self.backend.training_step(x, ctx)
                self.scaler.update()
                self.ema.update(self.backend)
                self.step += 1
                self.wall_s += time.perf_counter() - t0
                window_imgs += self._batch_images
                self._batch_images = 0
                if main and (self.step % log_every == 0 or self.step == 1):
                    elapsed = max(time.perf_counter() - window_t, 1e-9)
                    row = {"step": self.step, "images_seen": self.images_seen, "wall_s": round(self.wall_s, 3),
                           "lr": lr, "images_per_s": round(window_imgs / elapsed, 2), **last,
                           **{f"grad_norm/{k}": v for k, v in ctx.grad_norms.items()}}
                    self._write_log(row)
                    if tb is not None:
                        for k, v in row.items():
                            if k != "step":
                                tb.add_scalar(k, v, self.step)
                    bar.set_postfix({k: f"{v:.4g}" for k, v in list(last.items())[:3]} | {"img/s": f"{row['images_per_s']:.0f}"})
                    window_t, window_imgs = time.perf_counter(), 0
                bar.update(1)
                stopped_by = self._budget_done()
                if self._stop_signal is not None:
                    stopped_by = "signal"
                stopped_by = self._agree(stopped_by)
                if stopped_by or self.step % ckpt_every == 0:
                    self.save(keep=bool(keep_every) and self.step % int(keep_every) == 0)
        bar.close()
        if tb is not None:
            tb.close()
        if stopped_by == "signal":
            raise TrainingInterrupted(f"training interrupted by signal {self._stop_signal} at step {self.step}; "
                                      f"checkpoint saved in {self.ckpt_dir}, rerun the same command to resume")
        return TrainSummary(self.step, self.images_seen, self.wall_s, stopped_by, self.resumed_from_step, last,
                            list(self.config_changes))

    _batch_images = 0
    _STOP_REASONS = (None, "max_steps", "max_images", "max_minutes", "signal")

    def _agree(self, stopped_by: str | None) -> str | None:
        """Under torch.distributed every rank stops at the same step (the most urgent reason wins)."""
        if not self.dist.enabled:
            return stopped_by
        code = torch.tensor([self._STOP_REASONS.index(stopped_by)], device=self.device)
        torch.distributed.all_reduce(code, op=torch.distributed.ReduceOp.MAX)
        return self._STOP_REASONS[int(code)]

    def _counted_batch(self):
        batch = next(self.stream)
        n = (len(batch[0]) if isinstance(batch, tuple) else len(batch)) * self.dist.world_size
        self.images_seen += n
        self._batch_images += n
        return batch

    def _tensorboard(self):
        if not self.cfg.get("tensorboard", False) or not self.dist.is_main:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ImportError("train.tensorboard=true needs the tensorboard package: pip install tensorboard") from e
        return SummaryWriter(str(self.run_dir / "tensorboard"))
