"""The run pipeline: the stages a job runs (train, NLL, sample, evaluate) and the chain of them.

Each stage reads the composed config, writes into the run folder and updates the results record.
The CLI (:mod:`generative_bench.cli.task`) only picks the stage. Work already recorded in the run
folder under the same content key - a hash of the trained weights, the data, the evaluation
settings, the seed, the resolved sampler settings and the package's code - is reused instead of
done again: the NLL and each evaluation carry their ``content_key`` in the record, so a rerun of a
finished run (or sweep) samples and scores nothing and goes straight to its report.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch
from omegaconf import DictConfig, OmegaConf

from generative_bench import distributed
from generative_bench.backends.base import Backend
from generative_bench.config import config_key, instantiate, run_identity
from generative_bench.content import code_digest, weights_digest
from generative_bench.data.codec import to_model_space
from generative_bench.data.loading import BatchStream, load_split
from generative_bench.errors import InputError
from generative_bench.evaluation.harness import NOT_COMPARABLE, Evaluator, knob_record, samples_tag, save_grid, save_samples_npz, settings_tag
from generative_bench.sampler import DEFAULT_CHUNK, SampleBatch
from generative_bench.progress import Progress
from generative_bench.records import RunRecord
from generative_bench.training.checkpoint import load_checkpoint
from generative_bench.training.trainer import Trainer

log = logging.getLogger("gbench")

#: evaluation settings that do not change a number (samples are bit-identical for any batch size)
NON_RESULT_EVAL_KEYS = ("batch_size",)


def content_key(kind: str, cfg: DictConfig, weights: str | None, **parts: Any) -> str:
    """The key under which a stage's result is recorded: what it measured, on which weights, with
    which code (:func:`generative_bench.content.code_digest`)."""
    data = _plain(cfg.data) or {}
    ev = {k: v for k, v in (_plain(cfg.eval) or {}).items() if k not in NON_RESULT_EVAL_KEYS}
    return config_key({"kind": kind, "weights": weights, "data": data, "eval": ev, "seed": int(cfg.seed),
                       "code": code_digest(), **parts}, length=20)


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def build_backend(cfg: DictConfig, device: torch.device) -> Backend:
    """Seeded instantiation of ``model.backend``; checks it is a Backend for ``data.shape``."""
    torch.manual_seed(int(cfg.seed))
    backend = instantiate(cfg.model.backend)
    if not isinstance(backend, Backend):
        raise InputError(f"model.backend._target_ built a {type(backend).__name__}, not a generative_bench Backend")
    if tuple(backend.data_shape) != tuple(cfg.data.shape):
        raise InputError(f"model built for data shape {list(backend.data_shape)} but data.shape is {list(cfg.data.shape)}")
    return backend.to(device)


def describe_backend(cfg: DictConfig, backend: Backend) -> dict[str, Any]:
    """The record's backend entry: the preset's name and display name (else the family's) and what
    the backend says of itself."""
    display = cfg.model.get("display_name") or backend.display_name or str(cfg.model.name)
    return {"name": str(cfg.model.name), "display_name": str(display), **backend.describe()}


def _check_shape(cfg: DictConfig, x: torch.Tensor) -> None:
    if tuple(x.shape[1:]) != tuple(cfg.data.shape):
        raise InputError(f"data {cfg.data.name!r} has examples of shape {list(x.shape[1:])} but data.shape is "
                         f"{list(cfg.data.shape)}; set data.shape={list(x.shape[1:])}")


# ---------------------------------------------------------------------------- train
def train(cfg: DictConfig, run_dir: Path, record: RunRecord, device: torch.device, current: dict) -> Backend:
    """Train ``model`` on ``data`` (train split); returns the EMA backend."""
    current["stage"] = "train"
    split = load_split(cfg.data, "train", num_workers=int(cfg.train.get("num_workers", 0)), progress=True)
    _check_shape(cfg, split.x)
    backend = build_backend(cfg, device)
    dist_info = distributed.info()
    if dist_info.enabled:  # identical initial weights on every rank, different noise per rank
        torch.manual_seed(int(cfg.seed) * 7919 + dist_info.rank + 1)
    if backend.conditional and len(split.labels) and int(split.labels.max()) >= backend.num_classes:
        raise InputError(f"data {cfg.data.name!r} has labels up to {int(split.labels.max())} but the model has "
                         f"num_classes={backend.num_classes}; set model.backend.num_classes=${{data.num_classes}} "
                         "(and data.num_classes to the number of classes)")
    record.update(backend=describe_backend(cfg, backend), data=split.info)
    stream = BatchStream(split.x, int(cfg.train.batch_size), seed=int(cfg.seed), hflip=bool(cfg.data.hflip),
                         device=device, labels=split.labels if backend.conditional else None)
    trainer = Trainer(backend, stream, cfg.train, run_dir, device, identity=run_identity(cfg))
    summary = trainer.fit()
    budget = {k: cfg.train.get(k) for k in ("max_steps", "max_images", "max_minutes")}
    record.update(train={**summary.as_dict(), "budget": budget, "batch_size": int(cfg.train.batch_size)},
                  wall_times={**record.data.get("wall_times", {}), "train_s": round(summary.wall_s, 3)},
                  backend=describe_backend(cfg, trainer.ema.shadow))  # what training set (e.g. a latent scale)
    return trainer.ema.shadow


def load_trained(cfg: DictConfig, run_dir: Path, device: torch.device) -> Backend:
    """The EMA weights of ``checkpoint`` (a run folder or .pt file), or of this run's folder."""
    where = Path(cfg.checkpoint) if cfg.get("checkpoint") else run_dir
    if where.is_dir() and (where / "checkpoints").is_dir():
        where = where / "checkpoints"
    state = load_checkpoint(where, map_location=device)
    diffs = architecture_differences(where if where.is_dir() else where.parent, cfg)
    backend = None
    try:
        backend = build_backend(cfg, device)
        backend.load_state_dict(state["ema"]["shadow"])
    except (KeyError, RuntimeError, InputError) as e:
        if not diffs and isinstance(e, InputError):
            raise
        raise InputError(f"checkpoint {str(where)!r} does not match model={cfg.model.name} "
                         f"({differences_text(diffs) if diffs else str(e).splitlines()[0]}); pass the same model/data "
                         "overrides the run was trained with (its config.yaml holds them)") from e
    if diffs:
        raise InputError(f"checkpoint {str(where)!r} was trained with other model settings than this command's "
                         f"({differences_text(diffs)}); pass the same model/data overrides the run was trained with "
                         "(its config.yaml holds them); sampler settings (model.sampling.*) may differ")
    return backend.eval()


def differences_text(diffs: list[str], shown: int = 4) -> str:
    """The settings a checkpoint was trained with that differ, on one line: another model is
    named as such; otherwise the first few differences (``a: 1 -> 2; ...``) and how many more."""
    other = next((d for key in ("model.name:", "model.backend._target_:") for d in diffs if d.startswith(key)), None)
    if other is not None:
        return f"it was trained as another model: {other}"
    text = "; ".join(diffs[:shown])
    return text + (f"; and {len(diffs) - shown} more" if len(diffs) > shown else "")


def architecture_differences(ckpt_dir: Path, cfg: DictConfig) -> list[str]:
    """The model and data-shape settings stored beside a checkpoint that this config changes
    (``model.backend.image_net.ch: 32 -> 64``), as a resume lists them; [] when none are stored."""
    from generative_bench.training.trainer import changed_identity

    return [d for d in changed_identity(ckpt_dir, run_identity(cfg))
            if d.startswith(("model.", "data.shape", "data.kind", "data.num_classes"))]


# ---------------------------------------------------------------------------- NLL
def nll(cfg: DictConfig, backend: Backend, record: RunRecord, device: torch.device, current: dict,
        weights: str | None = None) -> None:
    """Per-example NLL (bits/dim) on ``eval.nll.split``; '—' for families without likelihood.

    With ``weights`` (the digest of ``backend``), a recorded NLL of the same content key is kept."""
    current["stage"] = "nll"
    opts = cfg.eval.nll
    if not opts.get("enabled", True):
        return
    if not backend.nll_defined:
        record.update(nll={"defined": False, "reason": f"{backend.family}: {backend.nll_note}"})
        return
    key = content_key("nll", cfg, weights, model_nll=_plain(cfg.model.get("nll", {}))) if weights else None
    if key is not None and (record.data.get("nll") or {}).get("content_key") == key:
        log.info("%s: NLL already recorded for these weights and settings (content key %s): kept", cfg.model.name, key)
        return
    t0 = time.perf_counter()
    split = load_split(cfg.data, str(opts.split), subset=opts.get("examples"), progress=True)
    g = torch.Generator(device=device).manual_seed(int(cfg.seed))
    bpd, terms, bound = [], {}, None
    bs = int(opts.batch_size)
    model_opts = _plain(cfg.model.get("nll", {})) or {}
    labels = torch.as_tensor(split.labels).long() if backend.conditional else None
    with Progress(len(split.x), f"nll {cfg.model.name}", unit="examples") as bar:
        for i in range(0, len(split.x), bs):
            x = to_model_space(split.x[i:i + bs].to(device))
            y = None if labels is None else labels[i:i + bs].to(device)
            res = backend.nll(x, generator=g, labels=y, **model_opts)
            bpd.append(res.bpd.double().cpu())
            bound = res.bound
            for k, v in res.terms.items():
                terms.setdefault(k, []).append(v.double().cpu())
            bar.update(len(x))
    bpd_all = torch.cat(bpd)
    entry = {"defined": True, "bpd": float(bpd_all.mean()),
             "bpd_sem": float(bpd_all.std() / math.sqrt(len(bpd_all))) if len(bpd_all) > 1 else None,
             "bound": bound, "split": str(opts.split), "examples": int(len(bpd_all)),
             "terms": {k: float(torch.cat(v).mean()) for k, v in terms.items()}, "options": model_opts,
             "wall_s": round(time.perf_counter() - t0, 3)}
    if key is not None:
        entry["content_key"] = key
    if hasattr(split.source, "nll_bits_per_dim"):  # toy mixtures: the exact NLL of the same points
        entry["data_floor_bpd"] = float(split.source.nll_bits_per_dim(split.x).mean())
    record.update(nll=entry, wall_times={**record.data.get("wall_times", {}), "nll_s": entry["wall_s"]})


# ---------------------------------------------------------------------------- sample / evaluate
def sampling_settings(cfg: DictConfig, sweep: bool) -> list[dict[str, Any]]:
    base = _plain(cfg.model.get("sampling", {})) or {}
    settings = [base]
    if sweep:
        for extra in _plain(cfg.model.get("sampling_sweep", [])) or []:
            s = {**base, **extra}
            if s not in settings:
                settings.append(s)
    return settings


def _sampler(cfg: DictConfig, run_dir: Path, device: torch.device, backend: Backend | None):
    if cfg.get("sampler") is not None:
        return instantiate(cfg.sampler), False
    return (backend if backend is not None else load_trained(cfg, run_dir, device)), True


def evaluate(cfg: DictConfig, run_dir: Path, record: RunRecord, device: torch.device, current: dict,
             backend: Backend | None = None) -> None:
    """Score the trained backend (or ``sampler``) for each sampler setting; one record entry each.

    A trained backend's evaluations are keyed by content (module doc): one already recorded under
    the same key is kept, and the evaluator (reference features included) is only built when some
    setting is new."""
    current["stage"] = "evaluate"
    sampler, is_backend = _sampler(cfg, run_dir, device, backend)
    if not is_backend:
        record.update(backend={"name": sampler.name, **sampler.describe()},
                      nll={"defined": False, "reason": "external samples: no model to score"})
    elif "backend" not in record.data:
        record.update(backend=describe_backend(cfg, sampler))
    evaluator = None
    t0 = time.perf_counter()
    settings_list = sampling_settings(cfg, bool(cfg.eval.sweep_sampling)) if is_backend else [{}]
    name = str(cfg.model.name) if is_backend else sampler.name
    weights = weights_digest(sampler) if is_backend else None
    recorded = {e.get("content_key"): e for e in record.data.get("evaluations", []) if e.get("content_key")}
    reused = 0
    for i, settings in enumerate(settings_list):
        n = int(cfg.eval.num_samples if i == 0 else (cfg.eval.get("sweep_num_samples") or cfg.eval.num_samples))
        key = None
        if is_backend:
            key = content_key("evaluation", cfg, weights, settings=sampler.resolve_settings(**settings), n=n)
            if key in recorded:
                reused += 1
                continue
        if evaluator is None:
            evaluator = Evaluator(cfg.data, cfg.eval, device=device, cache_dir=cfg.paths.cache_dir,
                                  seed=int(cfg.seed), progress=None)
        entry = evaluator.evaluate(sampler, settings, n, out_dir=run_dir, name=name)
        if key is not None:
            entry["content_key"] = key
        record.add_evaluation(entry)
        log.info("%s", console_line(name, entry))
    if reused:
        log.info("%s: %d evaluation(s) already recorded for these weights and settings: kept", name, reused)
    if is_backend and (evaluator is not None or "reconstruction" not in record.data):
        if evaluator is None and getattr(sampler, "first_stage_report", None) is not None:
            evaluator = Evaluator(cfg.data, cfg.eval, device=device, cache_dir=cfg.paths.cache_dir,
                                  seed=int(cfg.seed), progress=None)
        if evaluator is not None:
            reconstruction(cfg, sampler, record, evaluator)
    if evaluator is not None:  # kept evaluations keep the time they took
        record.update(wall_times={**record.data.get("wall_times", {}),
                                  "evaluate_s": round(time.perf_counter() - t0, 3)})


def console_line(name: str, entry: dict[str, Any]) -> str:
    """One evaluation as the console shows it: the metrics under the names the report gives them
    (``FD_cifar10-resnet``, not ``fid``, in a domain feature space) and a NOT-comparable flag where
    the record has one."""
    from generative_bench.evaluation.domain.naming import metric_label
    from generative_bench.evaluation.schema import output

    def report_name(key: str) -> str:  # the report's column name: FD_<extractor> in a domain space, else the label
        label = metric_label(features, key)
        declared = output(key)
        return declared.label if label == key and declared is not None and declared.shown else label

    features = (entry.get("protocol") or {}).get("features") or {}
    shown = {report_name(k): round(v, 4) if isinstance(v, float) else v
             for k, v in entry["metrics"].items() if not isinstance(v, (list, dict))}
    flag = "" if entry.get("comparable", True) else f" [{NOT_COMPARABLE}]"
    return f"{name} {settings_tag(entry['sampler']['settings'])}: {shown}{flag}"


def reconstruction(cfg: DictConfig, backend: Backend, record: RunRecord, evaluator: Evaluator) -> None:
    """First-stage quality of a backend with an autoencoder (latent diffusion): PSNR and rFD of
    ``model.reconstruction.examples`` held-out images in the evaluation's feature space."""
    opts = _plain(cfg.model.get("reconstruction")) or {}
    report = getattr(backend, "first_stage_report", None)
    if report is None or not opts.get("enabled", True):
        return
    t0 = time.perf_counter()
    split = load_split(cfg.data, str(opts.get("split", "test")), subset=opts.get("examples"), progress=False)
    from generative_bench.evaluation.metrics.fid import feature_frechet

    entry = report(split.x, batch_size=int(opts.get("batch_size", 100)),
                   distance=feature_frechet(evaluator.extractor) if evaluator.is_image and opts.get("rfd", True)
                   else None)
    entry.update(split=str(opts.get("split", "test")), wall_s=round(time.perf_counter() - t0, 3))
    record.update(reconstruction=entry)
    log.info("%s first stage: %s", cfg.model.name, {k: round(v, 4) if isinstance(v, float) else v
                                                    for k, v in entry.items() if not isinstance(v, (list, dict))})


def sample(cfg: DictConfig, run_dir: Path, record: RunRecord, device: torch.device, current: dict) -> None:
    """Draw ``eval.num_samples`` with the model's default sampling: samples/<tag>.npz + grid.

    The images are the ones ``gbench evaluate`` draws for the same seed and settings (per-image
    seeds, fixed network chunks), written under the same file name."""
    current["stage"] = "sample"
    backend = load_trained(cfg, run_dir, device)
    record.update(backend=describe_backend(cfg, backend))
    settings = backend.resolve_settings(**sampling_settings(cfg, False)[0])
    n, bs, seed = int(cfg.eval.num_samples), int(cfg.eval.batch_size), int(cfg.seed)
    chunk = int(cfg.eval.get("chunk", DEFAULT_CHUNK))
    t0 = time.perf_counter()
    parts = []
    with Progress(n, f"sample {cfg.model.name}", unit="samples") as bar:
        for s in range(0, n, bs):
            parts.append(backend.draw(s, min(n, s + bs), seed, settings, chunk=chunk))
            bar.update(len(parts[-1].images))
    batch = SampleBatch.concat(parts)
    dt = time.perf_counter() - t0
    tag = samples_tag(settings, n, seed)
    save_samples_npz(batch, run_dir / "samples" / f"{tag}.npz")
    if batch.images.dtype == torch.uint8:
        save_grid(batch.images[: int(cfg.eval.grid_size)], run_dir / "samples" / f"{tag}_grid.png")
    record.update(samples={"file": f"samples/{tag}.npz", "settings": settings, "n": n,
                           "nfe": backend.network_evaluations(settings), "knobs": knob_record(backend, settings),
                           "images_per_s": round(n / dt, 3), "seed": seed, "network_chunk": chunk})


def reference(cfg: DictConfig, run_dir: Path, record: RunRecord, device: torch.device, current: dict) -> None:
    """Write the reference set (``eval.reference_split`` / ``eval.reference_subset`` of ``data``) as a
    reference file: ``eval.reference.format`` pytorch-fid (mu, sigma) or guided-diffusion (arr_0 images +
    mu, sigma, mu_s, sigma_s), at ``eval.reference.out``; the record names the file and its sha256."""
    from generative_bench.evaluation.reference import _file_sha256
    from generative_bench.evaluation.reference_file import write_reference_file

    current["stage"] = "reference"
    t0 = time.perf_counter()
    evaluator = Evaluator(cfg.data, cfg.eval, device=device, cache_dir=cfg.paths.cache_dir, seed=int(cfg.seed),
                          progress=None)
    if not evaluator.is_image:
        raise InputError(f"data={cfg.data.name} is 2-D data: reference files hold image features; use image data")
    split_name, subset = str(cfg.eval.reference_split), cfg.eval.get("reference_subset")
    desc, arrays = evaluator.split_reference(split_name, subset)
    fmt, out = str(cfg.eval.reference.format), Path(str(cfg.eval.reference.out)).expanduser()
    images = labels = None
    if fmt == "guided-diffusion":
        split = load_split(cfg.data, split_name, subset=subset, num_workers=0)
        images, labels = split.x.permute(0, 2, 3, 1).numpy(), split.labels
    ext = evaluator.extractor.describe()
    meta = {"dataset": desc.get("dataset"), "variant": desc.get("variant"), "split": desc.get("split"),
            "subset": desc.get("subset"), "examples": desc.get("examples"), "extractor": ext}
    if distributed.info().is_main:
        write_reference_file(out, fmt, {k: v for k, v in arrays.items() if k != "labels"}, images=images, meta=meta,
                             labels=labels)
        entry = {"file": str(out), "sha256": _file_sha256(out), "format": fmt, "reference": desc,
                 "features": ext, "comparable": bool(ext.get("comparable", False)),
                 "wall_s": round(time.perf_counter() - t0, 3)}
        record.update(reference_file=entry)
        log.info("wrote %s reference %s (sha256 %s)", fmt, out, entry["sha256"])


def pipeline(cfg: DictConfig, run_dir: Path, record: RunRecord, device: torch.device, current: dict) -> None:
    """train -> NLL (held-out split) -> sample + evaluate (default and swept sampler settings)."""
    backend = train(cfg, run_dir, record, device, current)
    nll(cfg, backend, record, device, current, weights=weights_digest(backend))
    evaluate(cfg, run_dir, record, device, current, backend=backend)


def _train_only(cfg: DictConfig, run_dir: Path, record: RunRecord, device: torch.device, current: dict) -> None:
    train(cfg, run_dir, record, device, current)


def _nll_only(cfg: DictConfig, run_dir: Path, record: RunRecord, device: torch.device, current: dict) -> None:
    backend = load_trained(cfg, run_dir, device)
    record.update(backend=describe_backend(cfg, backend))
    nll(cfg, backend, record, device, current)


def _train_extractor(cfg: DictConfig, run_dir: Path, record: RunRecord, device: torch.device, current: dict) -> None:
    from generative_bench.evaluation.domain.stage import train_extractor

    train_extractor(cfg, run_dir, record, device, current)


STAGES: dict[str, Callable[..., Any]] = {
    "train": _train_only,
    "nll": _nll_only,
    "sample": sample,
    "evaluate": evaluate,
    "pipeline": pipeline,
    "train_extractor": _train_extractor,
    "reference": reference,
}


def check_stage(name: str) -> None:
    if name not in STAGES:
        raise InputError(f"unknown stage={name!r}; choose one of {sorted(STAGES)}")


__all__ = ["STAGES", "build_backend", "check_stage", "load_trained"]
