"""torch.distributed helpers: one code path for 1 process, torchrun on CPUs (Gloo) or GPUs (NCCL).

Semantics:
* ``train.batch_size`` is the GLOBAL batch: each of W ranks takes every W-th example of the
  same global batch, so the data order (and its resume point) does not depend on W.
* Gradients are averaged over ranks inside ``ctx.optimize`` before clipping, so every backend
  (including the GAN with its two optimizers) trains data-parallel with no change.
* Only rank 0 writes checkpoints, logs and records; the RNG states of all ranks are saved.
* Samples and features are produced in global batches seeded by their index; rank r makes
  batches r, r+W, ...; gathering in index order gives the same samples as one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def info() -> DistInfo:
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return DistInfo()


def _export_slurm_env() -> None:
    """Jobs started by Hydra's submitit launcher (one task per GPU): derive RANK/WORLD_SIZE/MASTER_*."""
    if "WORLD_SIZE" in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) <= 1:
        return
    try:
        from submitit.helpers import TorchDistributedEnvironment
    except ImportError:
        return
    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def launched_by_torchrun() -> bool:
    """True under torchrun, or a multi-task SLURM job (submitit), i.e. several processes per job."""
    _export_slurm_env()
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: torch.device | None = None) -> DistInfo:
    """Join the process group described by torchrun's environment (no-op for one process)."""
    if not launched_by_torchrun() or (dist.is_available() and dist.is_initialized()):
        return info()
    cuda = device is not None and device.type == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return info()


def barrier() -> None:
    if info().enabled:
        dist.barrier()


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """All-reduce (mean) of the gradients of ``params`` in one flat buffer per dtype/device."""
    world = info().world_size
    if world == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    buckets: dict[tuple, list[torch.Tensor]] = {}
    for g in grads:
        buckets.setdefault((g.dtype, g.device), []).append(g)
    for group in buckets.values():
        flat = torch.cat([g.reshape(-1) for g in group])
        dist.all_reduce(flat)
        flat /= world
        offset = 0
        for g in group:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()


def gather_objects(obj):
    """List of ``obj`` from every rank (rank order); ``[obj]`` in one process."""
    if not info().enabled:
        return [obj]
    out = [None] * info().world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj):
    """Rank 0's ``obj`` on every rank."""
    if not info().enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def my_batches(num_batches: int) -> range:
    """Indices of the global batches this rank produces: r, r + W, r + 2W, ..."""
    d = info()
    return range(d.rank, num_batches, d.world_size)


def gather_batches(local: dict[int, object], num_batches: int) -> list:
    """Every rank's {batch index: value} gathered and ordered by batch index (on every rank)."""
    if not info().enabled:
        return [local[i] for i in range(num_batches)]
    merged: dict[int, object] = {}
    for part in gather_objects(local):
        merged.update(part)
    return [merged[i] for i in range(num_batches)]
