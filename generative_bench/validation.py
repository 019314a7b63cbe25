"""Checks of a composed config that need no data and no network: run in milliseconds, before the
first expensive step, so a bad count, size or shape fails at once with one message listing
every problem and its fix, instead of after training.
"""

from __future__ import annotations

import math
from numbers import Number
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from generative_bench.errors import InputError

#: the splits every data source has
SPLITS = ("train", "test")

#: stages that train / sample or evaluate
TRAINING_STAGES = ("train", "pipeline", "train_extractor")
EVALUATING_STAGES = ("evaluate", "pipeline", "sample")


class Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, text: str) -> None:
        if text not in self.items:  # one problem once, however many rules meet it
            self.items.append(text)

    def raise_if_any(self) -> None:
        if len(self.items) == 1:
            raise InputError(f"invalid configuration: {self.items[0]}")
        if self.items:
            raise InputError(f"invalid configuration ({len(self.items)} problems):\n  - " + "\n  - ".join(self.items))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, Number) and not isinstance(v, bool) and math.isfinite(float(v))


def _positive_int(p: Problems, key: str, v: Any, allow_none: bool = False, minimum: int = 1) -> bool:
    if v is None and allow_none:
        return True
    if not _is_int(v) or v < minimum:
        what = f"an integer >= {minimum}" + (" or null" if allow_none else "")
        p.add(f"{key}={v!r}: must be {what}")
        return False
    return True


def _number(p: Problems, key: str, v: Any, lo: float | None = None, hi: float | None = None,
            lo_open: bool = False, hi_open: bool = False, allow_none: bool = False) -> bool:
    if v is None and allow_none:
        return True
    ok = _is_number(v)
    if ok and lo is not None:
        ok = v > lo if lo_open else v >= lo
    if ok and hi is not None:
        ok = v < hi if hi_open else v <= hi
    if not ok:
        rng = f"{'(' if lo_open else '['}{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}" \
              f"{')' if hi_open or hi is None else ']'}"
        p.add(f"{key}={v!r}: must be a number in {rng}" + (" or null" if allow_none else ""))
    return ok


def _train(p: Problems, cfg: DictConfig, max_examples: int | None) -> None:
    t = cfg.train
    budgets = {k: t.get(k) for k in ("max_steps", "max_images", "max_minutes")}
    for k in ("max_steps", "max_images"):
        _positive_int(p, f"train.{k}", budgets[k], allow_none=True)
    _number(p, "train.max_minutes", budgets["max_minutes"], lo=0, lo_open=True, allow_none=True)
    if all(v is None for v in budgets.values()):
        p.add("no training budget: set train.max_steps, train.max_images or train.max_minutes")
    if _positive_int(p, "train.batch_size", t.get("batch_size")) and max_examples is not None \
            and t.batch_size > max_examples:
        p.add(f"train.batch_size={t.batch_size} is larger than the training set ({max_examples} examples); "
              f"lower train.batch_size or raise data.subset")
    opt = t.get("optim") or {}
    _number(p, "train.optim.lr", opt.get("lr"), lo=0, lo_open=True)
    if opt.get("betas") is not None:
        betas = list(opt.betas)
        if len(betas) != 2 or not all(_is_number(b) and 0 <= b < 1 for b in betas):
            p.add(f"train.optim.betas={betas}: must be two numbers in [0, 1)")
    for k in ("eps", "weight_decay"):
        if opt.get(k) is not None:
            _number(p, f"train.optim.{k}", opt.get(k), lo=0, lo_open=k == "eps")
    _positive_int(p, "train.warmup_steps", t.get("warmup_steps", 0), minimum=0)
    if t.get("lr_decay", "constant") not in ("constant", "linear"):
        p.add(f"train.lr_decay={t.lr_decay!r}: must be constant or linear")
    _number(p, "train.grad_clip", t.get("grad_clip"), lo=0, lo_open=True, allow_none=True)
    _number(p, "train.ema_decay", t.get("ema_decay", 0.999), lo=0, hi=1, hi_open=True)
    if str(t.get("amp", "auto")) not in ("auto", "off", "bf16", "fp16", "True", "False", "true", "false", "None"):
        p.add(f"train.amp={t.amp!r}: must be auto, off, bf16 or fp16")
    for k in ("log_every", "checkpoint_every"):
        _positive_int(p, f"train.{k}", t.get(k, 1))
    _positive_int(p, "train.keep_every", t.get("keep_every"), allow_none=True)
    if t.get("resume", True) not in (True, False):
        p.add(f"train.resume={t.resume!r}: must be true or false")
    _two_stage_budget(p, cfg)


def _two_stage_budget(p: Problems, cfg: DictConfig) -> None:
    """A two-stage model (latent diffusion) must train past its first stage, else its denoiser is
    never trained. Budgets end training at whichever comes first, so the step budgets (max_steps,
    max_images / batch_size) bound the end whatever else is set (max_minutes can only end it sooner)."""
    stage1 = (cfg.get("model") or {}).get("backend", {}).get("stage1_steps")
    if not _is_int(stage1):
        return
    steps, images, batch = cfg.train.get("max_steps"), cfg.train.get("max_images"), cfg.train.get("batch_size")
    limits = []
    if _is_int(steps):
        limits.append((int(steps), f"train.max_steps={steps}", f"raise train.max_steps above {stage1}"))
    if _is_int(images) and _is_int(batch) and int(batch) > 0:
        end = -(-int(images) // int(batch))
        limits.append((end, f"train.max_images={images} (= {end} steps of batch {batch})",
                       f"raise train.max_images above {int(stage1) * int(batch)}"))
    if not limits:
        return
    end, what, fix = min(limits)
    if end <= int(stage1):
        p.add(f"{what} ends within the first stage (model.backend.stage1_steps={stage1}): the diffusion model "
              f"would never train; {fix} or lower stage1_steps")


def _data(p: Problems, cfg: DictConfig) -> int | None:
    """Checks data.*; returns the training set's size when the config tells it (subset or toy size)."""
    d = cfg.data
    shape = list(d.get("shape") or [])
    if len(shape) not in (1, 3) or not all(_is_int(s) and s > 0 for s in shape):
        p.add(f"data.shape={shape}: must be [C, H, W] for images or [d] for vectors, positive integers")
    if str(d.get("kind", "image")) not in ("image", "vector"):
        p.add(f"data.kind={d.kind!r}: must be image or vector")
    if d.get("kind") == "vector" and len(shape) != 1 or d.get("kind") == "image" and len(shape) != 3:
        p.add(f"data.shape={shape} does not fit data.kind={d.get('kind')}")
    _positive_int(p, "data.subset", d.get("subset"), allow_none=True)
    size = (d.get("source") or {}).get("size")
    if d.get("subset") is not None and _is_int(d.subset):
        if _is_int(size) and d.subset > size:
            p.add(f"data.subset={d.subset} is larger than the split ({size} examples); lower data.subset")
        return int(d.subset)
    return int(size) if _is_int(size) else None


def _npz_shape(path: Path) -> tuple[int, ...] | None:
    """Shape of ``arr_0`` in an npz, read from its header only (None when unreadable)."""
    import zipfile

    import numpy as np

    try:
        with zipfile.ZipFile(path) as z, z.open("arr_0.npy") as f:
            version = np.lib.format.read_magic(f)
            header = (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)
            shape, _, _ = header(f)
            return tuple(shape)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


def _eval(p: Problems, cfg: DictConfig) -> None:
    e = cfg.eval
    n_ok = _positive_int(p, "eval.num_samples", e.get("num_samples"))
    _positive_int(p, "eval.sweep_num_samples", e.get("sweep_num_samples"), allow_none=True)
    _positive_int(p, "eval.batch_size", e.get("batch_size"))
    _positive_int(p, "eval.chunk", e.get("chunk", 32))
    _positive_int(p, "eval.grid_size", e.get("grid_size", 0), minimum=0)
    _positive_int(p, "eval.reference_subset", e.get("reference_subset"), allow_none=True)
    nll = e.get("nll") or {}
    if nll.get("enabled", True):
        _positive_int(p, "eval.nll.examples", nll.get("examples"), allow_none=True)
        _positive_int(p, "eval.nll.batch_size", nll.get("batch_size", 1))
    # every data source has a train and a test split; an image folder without a folder of another
    # name would silently read its root (with train/ and test/ as two "classes")
    for key, value in (("eval.reference_split", e.get("reference_split", "train")),
                       ("eval.nll.split", nll.get("split", "test") if nll.get("enabled", True) else "test")):
        if str(value) not in SPLITS:
            p.add(f"{key}={value!r}: must be one of {list(SPLITS)}")
    pretrained = (e.get("features") or {}).get("pretrained", "auto")
    if str(pretrained) not in ("auto", "True", "False", "true", "false"):
        p.add(f"eval.features.pretrained={pretrained!r}: must be true (the published weights, else an error), "
              "false (random init, not comparable) or auto (the published weights when available)")
    resize = (e.get("features") or {}).get("resize")
    if resize is not None:
        modes = _extractor_resizes(cfg)
        if str(resize) not in modes:
            p.add(f"eval.features.resize={resize!r}: must be one of {list(modes)}")
    counts = [e.get("num_samples")] + ([e.sweep_num_samples] if e.get("sweep_num_samples") else [])
    n = min(c for c in counts if _is_int(c)) if n_ok else None
    image = str(cfg.data.get("kind", "image")) == "image"
    from generative_bench.evaluation import suite  # noqa: F401  (the declarations)
    from generative_bench.evaluation.schema import metric

    space, key = ("features", "eval.metrics") if image else ("toy", "eval.toy_metrics")
    provided = _extractor_features(cfg) if image else None
    default = False
    if image:
        from generative_bench.evaluation import metric_selection

        try:
            names, default = metric_selection.requested(e)
        except InputError as err:
            p.add(str(err))
            names = []
    else:
        names = list(e.get("toy_metrics") or [])
    from generative_bench.evaluation import reference_file

    ref_keys = reference_file.config_problems(p, cfg) if image else None
    kept = []
    for name in names:
        try:
            m = metric(str(name), space)
        except InputError as err:
            p.add(str(err))
            continue
        missing = [k for k in m.needs if provided is not None and k not in provided]
        ref_missing = [k for k in m.reference_needs if ref_keys is not None and k not in ref_keys]
        if default and name != "memorization" and (missing or ref_missing):
            continue  # left out of the default list (the record notes it)
        kept.append(str(name))
        if missing:
            p.add(f"metric {m.name!r} needs '{missing[0]}' features, which eval.features ({_extractor_name(cfg)}) does not "
                  f"provide; remove {m.name} from {key}")
        elif ref_missing:
            p.add(f"metric {m.name!r} needs the reference's '{ref_missing[0]}' arrays, which eval.reference.file does "
                  f"not hold; remove {m.name} from {key}, or use a guided-diffusion reference batch or the suite's cache "
                  "(gbench reference ... --format guided-diffusion --out FILE)")
    names = kept
    if image and _positive_int(p, "eval.bootstrap", e.get("bootstrap", 0), minimum=0):
        from generative_bench.evaluation.bootstrap import MAX_REPLICATES

        if int(e.get("bootstrap", 0)) > MAX_REPLICATES:
            p.add(f"eval.bootstrap={int(e.bootstrap)} replicates is more than {MAX_REPLICATES:,} (each recomputes "
                  "every metric; a 95% interval is stable at 1,000-2,000): lower eval.bootstrap")
        _number(p, "eval.bootstrap_level", e.get("bootstrap_level", 0.95), lo=0, hi=1, lo_open=True, hi_open=True)
    # every selected metric's declared options: types and choices (evaluation/suite.py declares them)
    options, wrong = {}, False
    for name in names:
        declared = metric(str(name), space).options
        if declared is not None:
            options[str(name)] = opts = declared.read(e)
            for problem in opts.problems():
                wrong = True
                p.add(problem)
    if n is None or wrong:
        return
    ref = e.get("reference_subset")
    if "kid" in options:
        size = options["kid"].kid_subset_size
        if size > n:
            p.add(f"eval.kid_subset_size={size} is larger than the {n} samples per evaluation; lower "
                  f"eval.kid_subset_size to <= {n} or raise eval.num_samples")
        if _is_int(ref) and size > ref:
            p.add(f"eval.kid_subset_size={size} is larger than the reference subset ({ref} images); lower it or "
                  "raise eval.reference_subset")
    if "is" in options and options["is"].is_splits > n:
        p.add(f"eval.is_splits={options['is'].is_splits} is more than the {n} samples; lower eval.is_splits or raise "
              "eval.num_samples")
    for opts in options.values():  # a k-NN neighbourhood needs more points than k
        for k in ("pr_k", "dc_k"):
            v = getattr(opts, k, None)
            if v is not None and v >= n:
                p.add(f"eval.{k}={v} needs more than {v} samples, got eval.num_samples={n}")


def _extractor_features(cfg: DictConfig) -> set[str] | None:
    """Feature keys the configured extractor class declares (``FEATURES``), without building it."""
    import importlib

    target = str((cfg.eval.get("features") or {}).get("_target_", ""))
    module, _, name = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None
    feats = getattr(cls, "FEATURES", None)
    return set(feats) if feats else None


def _extractor_resizes(cfg: DictConfig) -> tuple[str, ...]:
    """Resize modes the configured extractor class accepts (``RESIZE_MODES``; Inception's by default)."""
    import importlib

    from generative_bench.evaluation.resize import MODES

    module, _, name = str((cfg.eval.get("features") or {}).get("_target_", "")).rpartition(".")
    try:
        return tuple(getattr(getattr(importlib.import_module(module), name), "RESIZE_MODES", MODES))
    except (ImportError, AttributeError, ValueError):
        return MODES


def _extractor_name(cfg: DictConfig) -> str:
    return str((cfg.eval.get("features") or {}).get("_target_", "?")).rpartition(".")[2]


def _sampler(p: Problems, cfg: DictConfig) -> None:
    s = cfg.get("sampler")
    if s is None:
        return
    path = s.get("path")
    if path in (None, "???"):
        p.add("sampler.path is not set: pass sampler.path=FILE.npz (sampler=npz) or sampler.path=DIR (sampler=folder)")
        return
    path = Path(str(path)).expanduser()
    target = str(s.get("_target_", ""))
    if target.endswith("NpzSampleSet"):
        if not path.is_file():
            p.add(f"sampler.path={str(path)!r} does not exist; pass the .npz file of samples")
            return
        shape = _npz_shape(path)
        if shape is None:
            p.add(f"sampler.path={str(path)!r} is not a readable npz with arr_0 (uint8 NHWC images)")
        elif len(shape) == 4:
            chw = [3 if shape[3] == 1 else shape[3], shape[1], shape[2]]
            want = list(cfg.data.shape)
            if chw != want:
                p.add(f"the samples in {str(path)!r} are {shape[2]}x{shape[1]} images with {shape[3]} channel(s) "
                      f"but data={cfg.data.name} has shape {want}: score them against data of their size "
                      "(or resize the samples)")
            n = cfg.eval.get("num_samples")
            if _is_int(n) and n > shape[0]:
                p.add(f"eval.num_samples={n} but {str(path)!r} holds {shape[0]} samples; lower eval.num_samples to "
                      f"<= {shape[0]}")
    elif target.endswith("FolderSampleSet"):
        if not path.is_dir():
            p.add(f"sampler.path={str(path)!r} is not a folder; pass the folder of sample images")
            return
        first = _first_image_size(path)
        want = list(cfg.data.shape)
        if first is not None and len(want) == 3 and [first[1], first[2]] != want[1:]:
            p.add(f"the sample image {str(first[0])!r} is {first[2]}x{first[1]} but data={cfg.data.name} has shape "
                  f"{want}: score the samples against data of their size (or resize the samples)")


def _first_image_size(folder: Path) -> tuple[Path, int, int] | None:
    """(file, height, width) of the first image of a sample folder (in the sample set's order), from
    its header only; None when there is none or it cannot be read (the sample set reports that)."""
    from generative_bench.data.images import IMAGE_EXTENSIONS

    try:
        files = sorted(f for f in folder.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            return None
        from PIL import Image

        with Image.open(files[0]) as img:
            width, height = img.size
        return files[0], int(height), int(width)
    except Exception:  # noqa: BLE001 - unreadable files are reported by the sample set itself
        return None


def _folder_names(p: Problems, cfg: DictConfig) -> None:
    """``run_name`` and ``benchmark_name`` become folder names below ``paths.runs_dir``: a '/' or '..'
    would put the run somewhere else (or inside another run's folder)."""
    for key, sources in (("run_name", "model.name, data.name and seed"), ("benchmark_name", "data.name")):
        try:
            value = cfg.get(key)
        except Exception:  # an interpolation that cannot be resolved is reported where it is used
            continue
        if value is None:
            continue
        text = str(value)
        bad = [shown for part, shown in (("/", "'/'"), ("\\", "'\\'"), ("..", "'..'"), ("\x00", "a NUL character"))
               if part in text]
        if bad:
            p.add(f"{key}={text!r} contains {' and '.join(bad)}: it names a folder below paths.runs_dir, so it must "
                  f"be a plain name; pass {key}=NAME without '/' or '..' (it is built from {sources} unless set)")
            return  # benchmark_name shares data.name with run_name: one message is enough


def _sampling(p: Problems, cfg: DictConfig, stage: str) -> None:
    """The model's sampling options (``model.sampling`` and, when swept, ``model.sampling_sweep``)
    are checked by the backend itself now, not after training: an option the backend does not
    have, or a bad value, is a problem here. The backend is built on the CPU from the config
    (untrained; the global RNG state is restored); a config that cannot be built is left to the
    stage that builds it, which reports it with its own message."""
    if stage not in EVALUATING_STAGES or cfg.get("sampler") is not None:
        return
    model = cfg.get("model") or {}
    if model.get("backend") is None:
        return
    from omegaconf import OmegaConf

    def plain(node: Any) -> Any:
        return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node

    try:
        base = plain(model.get("sampling")) or {}
        sweep = (plain(model.get("sampling_sweep")) or []) if stage != "sample" and \
            (cfg.get("eval") or {}).get("sweep_sampling", True) else []
    except Exception:
        return
    if not isinstance(base, dict):
        p.add(f"model.sampling must be a mapping of sampling options, got {base!r}")
        return
    settings = [("model.sampling", base)]
    settings += [(f"model.sampling_sweep[{i}]", {**base, **s}) for i, s in enumerate(sweep) if isinstance(s, dict)]
    if not any(s for _, s in settings):
        return
    import torch

    from generative_bench.config import instantiate

    try:
        with torch.random.fork_rng(devices=[]):
            backend = instantiate(model.backend)
    except Exception:
        return
    resolve = getattr(backend, "resolve_settings", None)
    if resolve is None:
        return
    for key, s in settings:
        try:
            resolve(**s)
        except InputError as err:
            p.add(f"{key}: {err}")
            return  # one message per model: a bad base setting repeats in every sweep entry
        except Exception:
            return


def validate(cfg: DictConfig) -> None:
    """Raise one InputError listing every problem of ``cfg`` that shows without data or networks
    (the model's sampling options are checked by building the untrained backend once)."""
    p = Problems()
    stage = str(cfg.get("stage", "pipeline"))
    _folder_names(p, cfg)
    if "per_model" in cfg:
        p.add("per_model is no longer read: put one model's settings of a preset in "
              "conf/per_model/<experiment>/<model>.yaml (Hydra composes it when model=<model>), or override "
              "model.* on the command line")
    if not _is_int(cfg.get("seed")) or cfg.seed < 0:
        p.add(f"seed={cfg.get('seed')!r}: must be an integer >= 0")
    device = str(cfg.get("device", "auto"))
    if device != "auto" and not (device == "cpu" or device == "cuda" or device.startswith("cuda:") or device == "mps"):
        p.add(f"device={device!r}: must be auto, cpu, cuda, cuda:N or mps")
    examples = _data(p, cfg)
    if stage in TRAINING_STAGES and cfg.get("train") is not None:
        _train(p, cfg, examples)
    if stage in EVALUATING_STAGES and cfg.get("eval") is not None:
        _eval(p, cfg)
        _sampler(p, cfg)
    if stage == "reference" and cfg.get("eval") is not None:
        from generative_bench.evaluation.reference_file import config_problems

        config_problems(p, cfg)
    sweep = (cfg.get("model") or {}).get("sampling_sweep")
    if sweep is not None and not all(isinstance(s, (dict, DictConfig)) for s in sweep):
        p.add("model.sampling_sweep must be a list of mappings of sampling options, e.g. [{steps: 50}]")
    if not p.items:  # only a config without other problems is worth building a backend for
        _sampling(p, cfg, stage)
    p.raise_if_any()


__all__ = ["validate"]
