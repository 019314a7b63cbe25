"""The results record: one JSON per run folder, the only input of the leaderboard.

Schema ``generative-bench/results-1`` (every number carries its protocol fingerprint)::

    {
      "schema": "generative-bench/results-1",
      "status": "running" | "completed" | "failed" | "interrupted",
      "error": null | {"type": str, "message": str, "stage": str},
      "run_dir": str, "run_name": str, "stage": str, "seed": int,
      "overrides": [str],                      # Hydra overrides of this job
      "command": str,                          # "gbench <overrides>"
      "protocol": {"name": str, "description": str},   # what the configuration measures
      "backend": {"name", "family", "class", "parameters", "data_shape", "nll_defined"},
      "data": {"dataset", "variant", "split", "subset", "subset_seed", "examples", ...},
      "train": {"steps", "images_seen", "wall_s", "stopped_by", "budget": {...}, "resumed_from_step"},
      "nll": {"defined": bool, "bpd": float, "bpd_sem": float, "bound": str, "split": str,
              "examples": int, "terms": {name: float}, "wall_s": float}  |  {"defined": false, "reason": str},
      "evaluations": [{
          "sampler": {"name": str, "settings": {...}},
          "num_samples": int,
          "metrics": {"fid": float, "sfid": ..., "is_mean", "is_std", "kid_mean", "kid_std",
                      "precision", "recall", "density", "coverage", toy metrics ...},
          "protocol": {"reference": {...}, "features": {...extractor description...},
                       "metric_settings": {...}, "seed": int},
          "comparable": bool,            # False when e.g. random-init Inception weights were used
          "warnings": [str],
          "timings": {"sample_s", "sample_images_per_s", "features_s", "metrics_s"},
      }],
      "environment": {"python", "torch", "torchvision", "numpy", "generative_bench", "git_commit",
                      "git_dirty", "device", "cuda", "platform", "cpu", "blas"},
      "wall_times": {"train_s", "nll_s", "evaluate_s", "total_s"},
      "created": iso8601, "updated": iso8601,
      "config": {...resolved Hydra config...}
    }
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from generative_bench import blas
from generative_bench.io import atomic_write_json, read_json

SCHEMA = "generative-bench/results-1"
RESULTS_FILE = "results.json"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def git_commit(path: str | os.PathLike | None = None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the repository holding the package, or (None, None) outside git."""
    here = Path(path or Path(__file__).resolve().parent)
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip() != ""
        return commit, dirty
    except (OSError, subprocess.SubprocessError):
        return None, None


def cpu_model_name(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), with its family, model and widest
    vector instruction set (e.g. ``AMD EPYC (family 23, model 49, AVX2)``): a cloud host's name
    alone ("AMD EPYC") does not tell the generations apart, and benchmark figures differ between
    them. Else what ``platform`` knows."""
    try:
        info: dict[str, str] = {}
        for line in Path(cpuinfo).read_text().splitlines():
            key, sep, value = line.partition(":")
            if not sep:
                if info:
                    break  # the first processor's block is enough
                continue
            info.setdefault(key.strip(), value.strip())
        if "model name" in info:
            flags = set(info.get("flags", "").split())
            isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else None
            detail = [f"family {info['cpu family']}" if "cpu family" in info else None,
                      f"model {info['model']}" if "model" in info else None, isa]
            detail = [d for d in detail if d]
            return info["model name"] + (f" ({', '.join(detail)})" if detail else "")
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment_info(device: Any = None) -> dict[str, Any]:
    import numpy
    import torch
    import torchvision

    import generative_bench

    commit, dirty = git_commit()
    dev = str(device) if device is not None else "cpu"
    if dev.startswith("cuda") and torch.cuda.is_available():
        dev_name = torch.cuda.get_device_name(torch.device(dev))
    else:
        dev_name = f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "generative_bench": generative_bench.__version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "device": dev,
        "device_name": dev_name,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "platform": platform.platform(),
        "cpu": cpu_model_name(),
        "blas": blas.describe(),  # the kernels numpy's products ran (their last bits depend on them)
    }


class RunRecord:
    """The results.json of one run folder; every change is written atomically at once."""

    def __init__(self, run_dir: str | os.PathLike, data: dict[str, Any]):
        self.run_dir = Path(run_dir)
        self.data = data

    @property
    def path(self) -> Path:
        return self.run_dir / RESULTS_FILE

    @classmethod
    def create(cls, run_dir: str | os.PathLike, **fields: Any) -> "RunRecord":
        """Open the run's record, keeping what an earlier (interrupted) attempt wrote."""
        run_dir = Path(run_dir)
        path = run_dir / RESULTS_FILE
        data = read_json(path) if path.is_file() and path.stat().st_size else {"schema": SCHEMA, "created": _now(), "evaluations": []}
        data.update(fields)
        data.update(status="running", error=None, run_dir=str(run_dir))
        rec = cls(run_dir, data)
        rec.save()
        return rec

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> "RunRecord":
        return cls(Path(run_dir), read_json(Path(run_dir) / RESULTS_FILE))

    def save(self) -> None:
        """Atomic write; under torch.distributed only rank 0 writes (one record per job)."""
        from generative_bench.distributed import info

        self.data["updated"] = _now()
        if info().is_main:
            atomic_write_json(self.path, self.data)

    def update(self, **fields: Any) -> None:
        self.data.update(fields)
        self.save()

    def add_evaluation(self, entry: dict[str, Any]) -> None:
        """Add one evaluation entry; it replaces an earlier one only when both have the same sampler
        settings and the same protocol (reference, feature space, sample count, metric settings).
        Scoring the same samples under another protocol (another reference file, say) adds an entry
        beside the earlier one, which is never lost."""
        def same(e: dict[str, Any]) -> bool:
            return all(e.get(k) == entry.get(k) for k in ("sampler", "protocol", "num_samples"))

        evals = [e for e in self.data.get("evaluations", []) if not same(e)]
        evals.append(entry)
        self.data["evaluations"] = evals
        self.save()

    def fail(self, exc: BaseException, stage: str) -> None:
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        self.update(status=status, error={"type": type(exc).__name__, "message": str(exc), "stage": stage})

    def complete(self) -> None:
        self.update(status="completed")
