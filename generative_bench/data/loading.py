"""Build a data split from the ``data`` config and hold it in memory as one tensor.

Training and reference sets are materialised once (uint8 NCHW images or float32 points): the
whole CIFAR-10 train split is 150 MB, and in-memory indexing makes data order exactly resumable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Subset

from generative_bench.config import instantiate
from generative_bench.data.subsets import class_balanced_indices
from generative_bench.errors import InputError


@dataclass
class DataSplit:
    """A materialised split: ``x`` (uint8 NCHW or float32 (N, d)), ``labels`` and its description."""

    x: torch.Tensor
    labels: np.ndarray
    info: dict[str, Any]
    source: Any = field(repr=False, default=None)

    def __len__(self) -> int:
        return len(self.x)

    @property
    def is_image(self) -> bool:
        return self.x.dtype == torch.uint8


def _stack(dataset, num_workers: int = 0, progress: bool = False) -> tuple[torch.Tensor, np.ndarray]:
    if hasattr(dataset, "images"):
        return dataset.images, np.asarray(dataset.labels)
    if hasattr(dataset, "points"):
        return dataset.points, np.asarray(dataset.labels)
    loader = DataLoader(dataset, batch_size=512, num_workers=num_workers, shuffle=False)
    xs, ys = [], []
    it = loader
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(loader, desc=f"decoding {getattr(dataset, 'name', 'images')}", unit="batch", leave=False)
    try:
        for x, y in it:
            xs.append(x)
            ys.append(y)
    except RuntimeError as e:
        if "stack expects each tensor to be equal size" in str(e):
            raise _size_mismatch(dataset) from None
        raise
    return torch.cat(xs), torch.cat(ys).numpy()


def _size_mismatch(dataset) -> InputError:
    """The first image whose size differs from the first one's, as a clear error."""
    files = getattr(getattr(dataset, "dataset", dataset), "files", None)
    indices = getattr(dataset, "indices", None) or range(len(dataset))
    first = None
    for i in indices:
        img = (dataset.dataset if hasattr(dataset, "dataset") else dataset)[i][0]
        if first is None:
            first = (i, tuple(img.shape))
        elif tuple(img.shape) != first[1]:
            def name(j):
                return repr(str(files[j])) if files is not None else f"image {j}"
            return InputError(f"{name(i)} is {img.shape[2]}x{img.shape[1]} but {name(first[0])} is "
                              f"{first[1][2]}x{first[1][1]}: every image of a dataset must have one size; resize them "
                              "(or remove the odd ones) and set data.shape to match")
    return InputError("the dataset's images have different sizes; resize them to one size")


def load_split(data_cfg: DictConfig | dict, split: str = "train", subset: int | None = None,
               num_workers: int = 0, progress: bool = False) -> DataSplit:
    """Instantiate ``data_cfg.source`` for ``split``, take the class-balanced subset, materialise."""
    cfg = data_cfg if isinstance(data_cfg, DictConfig) else OmegaConf.create(data_cfg)
    source = instantiate(cfg.source, split=split)
    subset = cfg.get("subset") if subset is None else subset
    dataset = source
    indices = None
    if subset is not None:
        indices = class_balanced_indices(np.asarray(source.labels), int(subset), int(cfg.get("subset_seed", 0)))
        if hasattr(source, "images") or hasattr(source, "points"):
            x_all, y_all = _stack(source)
            x, labels = x_all[torch.from_numpy(indices)], y_all[indices]
        else:
            x, labels = _stack(Subset(source, indices.tolist()), num_workers, progress)
    else:
        x, labels = _stack(dataset, num_workers, progress)
    if len(x) == 0:
        raise InputError(f"data split {split!r} of {cfg.get('name')} is empty")
    info = {"dataset": cfg.get("name"), **source.describe(), "split": split,
            "subset": None if subset is None else int(subset),
            "subset_seed": None if subset is None else int(cfg.get("subset_seed", 0)),
            "examples": int(len(x))}
    return DataSplit(x=x, labels=np.asarray(labels), info=info, source=source)


class BatchStream:
    """Endless batches in a seeded per-epoch order with optional horizontal flips.

    Order and flips of epoch e are a function of (seed, e) only, so ``state_dict`` = (epoch,
    position) resumes the exact data order. Batches come out in model space on ``device``.
    ``batch_size`` is global: under torch.distributed each rank keeps every W-th example of
    the global batch (so the order does not depend on the number of ranks).
    """

    def __init__(self, x: torch.Tensor, batch_size: int, seed: int = 0, hflip: bool = False,
                 device: torch.device | str = "cpu", labels: torch.Tensor | np.ndarray | None = None):
        if batch_size > len(x):
            raise InputError(f"batch size {batch_size} is larger than the training set ({len(x)}); lower train.batch_size")
        self.x = x
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.hflip = bool(hflip) and x.dtype == torch.uint8 and x.ndim == 4
        self.device = torch.device(device)
        from generative_bench.distributed import info

        dist_info = info()
        if self.batch_size % dist_info.world_size:
            raise InputError(f"train.batch_size={batch_size} (global) must be divisible by the number of "
                             f"processes ({dist_info.world_size})")
        self.rank, self.world_size = dist_info.rank, dist_info.world_size
        #: when given, batches are (x, labels) pairs (for classifiers trained by the same trainer)
        self.labels = None if labels is None else torch.as_tensor(np.asarray(labels), dtype=torch.long)
        self.epoch = 0
        self.position = 0
        self._plan(self.epoch)

    def _plan(self, epoch: int) -> None:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        self._order = torch.randperm(len(self.x), generator=g)
        self._flips = torch.rand(len(self.x), generator=g) < 0.5 if self.hflip else None

    @property
    def batches_per_epoch(self) -> int:
        return len(self.x) // self.batch_size

    def next_raw(self) -> torch.Tensor:
        """Next batch at the boundary type (uint8 images / float points), on ``device``."""
        return self._next()[0]

    def _next(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.position + self.batch_size > len(self.x):  # drop the ragged tail
            self.epoch += 1
            self.position = 0
            self._plan(self.epoch)
        window = slice(self.position + self.rank, self.position + self.batch_size, self.world_size)
        idx = self._order[window]
        batch = self.x[idx]
        if self._flips is not None:
            flip = self._flips[window]
            batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
        self.position += self.batch_size
        y = None if self.labels is None else self.labels[idx].to(self.device, non_blocking=True)
        return batch.to(self.device, non_blocking=True), y

    def __next__(self):
        """Model-space batch, or ``(batch, labels)`` when the stream was given labels."""
        from generative_bench.data.codec import to_model_space

        x, y = self._next()
        return to_model_space(x) if y is None else (to_model_space(x), y)

    def __iter__(self):
        return self

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self._plan(self.epoch)
