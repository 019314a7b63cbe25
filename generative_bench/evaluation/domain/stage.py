"""``gbench train-extractor``: train a domain classifier and write its weights + manifest.

    gbench train-extractor data=cifar10_jpeg extractor=cifar10_resnet

trains ``extractor.net`` on the ``train`` split of ``data`` with the project's generic trainer
(exact resume: rerun the same command), measures top-1 accuracy on the ``test`` split (with the
flip test-time augmentation the extractor itself uses), and writes into the run folder:

* ``<extractor.file_stem>.pt``   the classifier's state dict (``torch.load(weights_only=True)``),
* ``<extractor.file_stem>.json`` the manifest (data, accuracy, sha256, architecture, command).

Ship them by copying both files side by side, e.g.
``cp RUN/cifar10_resnet.{pt,json} generative_bench/assets/``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from generative_bench.config import instantiate
from omegaconf import DictConfig, OmegaConf

from generative_bench.data.codec import to_model_space
from generative_bench.data.loading import BatchStream, load_split
from generative_bench.errors import InputError
from generative_bench.evaluation.domain.classifier import Classifier
from generative_bench.evaluation.domain.manifest import FORMAT, architecture_of, save_weights, write_manifest
from generative_bench.evaluation.domain.nets import DomainNet, predict
from generative_bench.records import RunRecord, environment_info
from generative_bench.training.trainer import Trainer

log = logging.getLogger("gbench")


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def trainer_config(ext: DictConfig, train_examples: int) -> DictConfig:
    """``extractor.train`` with ``extractor.epochs`` / ``warmup_epochs`` turned into steps."""
    cfg = OmegaConf.create(_plain(ext.train))
    bs = int(cfg.batch_size)
    if bs > train_examples:
        raise InputError(f"extractor.train.batch_size={bs} exceeds the {train_examples} training images; lower it")
    steps_per_epoch = train_examples // bs
    if ext.get("epochs") is not None:
        cfg.max_steps = max(1, int(round(float(ext.epochs) * steps_per_epoch)))
    if ext.get("warmup_epochs") is not None:
        cfg.warmup_steps = int(round(float(ext.warmup_epochs) * steps_per_epoch))
    return cfg


def accuracy(net: DomainNet, x: torch.Tensor, labels: np.ndarray, batch_size: int, tta_flip: bool,
             device: torch.device) -> float:
    _, logits = predict(net, x, batch_size=batch_size, tta_flip=tta_flip, device=device)
    return float((logits.argmax(1).numpy() == np.asarray(labels)).mean())


def class_names(split) -> list[str]:
    names = getattr(split.source, "classes", None)
    k = int(np.max(split.labels)) + 1
    return [str(c) for c in names] if names is not None and len(names) == k else [str(i) for i in range(k)]


def train_classifier(cfg: DictConfig, run_dir: Path, device: torch.device, progress: bool | None = None):
    """Train ``cfg.extractor`` on ``cfg.data``'s train split; returns (net, train split, summary, train cfg)."""
    ext = cfg.extractor
    split = load_split(cfg.data, "train", num_workers=int(ext.get("num_workers", 0)), progress=bool(progress))
    if not split.is_image:
        raise InputError(f"train-extractor needs image data; data={cfg.data.name} holds vectors")
    k = int(np.max(split.labels)) + 1
    if k < 2:
        raise InputError(f"data={cfg.data.name} has a single class: a classifier needs labelled images of 2+ classes")
    torch.manual_seed(int(cfg.seed))
    net = instantiate(ext.net, num_classes=k)
    if not isinstance(net, DomainNet):
        raise InputError(f"extractor.net built a {type(net).__name__}, not a DomainNet of generative_bench.evaluation.domain.nets")
    if ext.get("prepare", True):
        n = min(len(split.x), int(ext.get("prepare_examples", 5000)))
        g = torch.Generator().manual_seed(int(cfg.seed))
        net.prepare(to_model_space(split.x[torch.randperm(len(split.x), generator=g)[:n]]))
    model = Classifier(net, **(_plain(ext.get("classifier")) or {}))
    train_cfg = trainer_config(ext, len(split.x))
    stream = BatchStream(split.x, int(train_cfg.batch_size), seed=int(cfg.seed), hflip=bool(cfg.data.get("hflip", True)),
                         device=device, labels=split.labels)
    trainer = Trainer(model, stream, train_cfg, run_dir, device)
    summary = trainer.fit(progress=progress)
    final = trainer.ema.shadow if ext.get("use_ema", False) else trainer.backend
    return final.net.eval(), split, summary, train_cfg


def train_extractor(cfg: DictConfig, run_dir: Path, record: RunRecord, device: torch.device, current: dict) -> dict:
    """The stage: train, measure test accuracy, write ``<stem>.pt`` + ``<stem>.json``; returns the manifest."""
    if cfg.get("extractor") is None:
        raise InputError("train-extractor needs an extractor config: add extractor=cifar10_resnet (conf/extractor/)")
    current["stage"] = "train_extractor"
    ext = cfg.extractor
    t0 = time.perf_counter()
    net, split, summary, train_cfg = train_classifier(cfg, run_dir, device)
    train_s = time.perf_counter() - t0
    record.update(data=split.info, train={**summary.as_dict(), "batch_size": int(train_cfg.batch_size)})

    current["stage"] = "test_accuracy"
    test_data = OmegaConf.merge(cfg.data, {"subset": ext.get("test_subset")})
    test = load_split(test_data, str(ext.get("test_split", "test")))
    bs, tta = int(ext.get("eval_batch_size", 500)), bool(ext.get("tta_flip", True))
    acc = accuracy(net, test.x, test.labels, bs, tta, device)
    acc_plain = accuracy(net, test.x, test.labels, bs, False, device) if tta else acc
    log.info("%s: test accuracy %.4f (flip TTA=%s), %.4f without TTA", ext.name, acc, tta, acc_plain)

    stem = str(ext.get("file_stem") or str(ext.name).replace("-", "_"))
    weights_path = run_dir / f"{stem}.pt"
    sha = save_weights(net, weights_path, str(ext.get("weights_dtype", "float16")))
    manifest = {
        "format": FORMAT,
        "name": str(ext.name),
        "description": str(ext.get("description", "")),
        "weights_file": weights_path.name,
        "weights_sha256": sha,
        "weights_bytes": weights_path.stat().st_size,
        "weights_dtype": str(ext.get("weights_dtype", "float16")),
        "architecture": architecture_of(net),
        "feature_dim": int(net.feature_dim),
        "num_classes": int(net.num_classes),
        "class_names": class_names(split),
        "input": {"shape": list(split.x.shape[1:]), "dtype": "uint8", "preprocessing": "x / 127.5 - 1 (model space)",
                  "tta_flip": tta},
        "training": {**{k: v for k, v in split.info.items() if k != "root"}, "seed": int(cfg.seed),
                     "epochs": ext.get("epochs"), "steps": summary.steps, "images_seen": summary.images_seen,
                     "stopped_by": summary.stopped_by, "train_wall_s": round(summary.wall_s, 1),
                     "stage_wall_s": round(train_s, 1), "recipe": {"train": _plain(train_cfg),
                     "classifier": _plain(ext.get("classifier")), "prepare": bool(ext.get("prepare", True)),
                     "use_ema": bool(ext.get("use_ema", False))}},
        "evaluation": {**{k: v for k, v in test.info.items() if k != "root"}, "accuracy": acc,
                       "accuracy_no_tta": acc_plain, "tta_flip": tta, "precision": "float32"},
        "command": _command(record),
        "environment": {**environment_info(device), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")},
    }
    manifest_path = write_manifest(run_dir / f"{stem}.json", manifest)
    record.update(extractor={"name": manifest["name"], "weights": weights_path.name, "manifest": manifest_path.name,
                             "weights_sha256": sha, "test_accuracy": acc, "test_accuracy_no_tta": acc_plain,
                             "feature_dim": manifest["feature_dim"], "parameters": manifest["architecture"]["parameters"]},
                  wall_times={**record.data.get("wall_times", {}), "train_s": round(summary.wall_s, 3)})
    if not math.isfinite(acc):
        raise InputError("test accuracy is not finite")
    return manifest


def _command(record: RunRecord) -> str:
    """The reproducing command line: the verb form of the run's overrides."""
    overrides = [o for o in record.data.get("overrides", []) if not o.startswith(("stage=", "hydra.mode="))]
    env = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if os.environ.get("OMP_NUM_THREADS") else ""
    return (env + "gbench train-extractor " + " ".join(overrides)).strip()


__all__ = ["accuracy", "train_classifier", "train_extractor", "trainer_config"]
