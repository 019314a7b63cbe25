"""The catalogue of bad inputs: each row is one bad input and the error it must give.

The promise: bad input gets a clear error that names the problem and the fix, and nothing already
written is lost. Every row builds the files it needs under ``tmp_path``, runs one command (a real
``gbench`` process) or one API call, and asserts

1. the exit code (CLI) or the exception type (API);
2. that the message matches the row's regex (the problem and, where there is one, the fix);
3. for CLI rows: no traceback, and the error is at most 3 lines of stderr (the ``gbench...`` line
   and its continuation lines; Hydra's and the log's INFO lines are not counted);
4. that no file that existed before the command changed or vanished (Hydra's ``.hydra/`` folders
   and ``*.log`` files excepted; new files and folders are fine).

Rows that document a gap the project still has are ``xfail(strict=True)`` with the change that
would close it. ``catalogue()`` / ``catalogue_counts()`` give the table to
``experiments/bad_inputs_catalogue.py``, which writes ``reports/bad_inputs_catalogue.md``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import pickle
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from generative_bench.errors import InputError, OutputError, WeightsUnavailableError
from generative_bench.reporting import FORMATS as REPORT_FORMATS

GBENCH = [sys.executable, "-m", "generative_bench"]
#: the first line of every error the CLI prints on purpose
ERROR_HEADER = re.compile(r"^gbench( report| compare)?: error: ")
#: the published FID Inception weights' sha256 (generative_bench.evaluation.weights.KNOWN_SHA256)
INCEPTION_SHA = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
GROUPS = ("config", "data", "checkpoints", "weights", "records", "disks")
MINIMUM_ROWS = {"config": 12, "data": 8, "checkpoints": 5, "weights": 3, "records": 8, "disks": 5}


# ---------------------------------------------------------------------------------------------- rows
@dataclass
class Ctx:
    """What a row's setup and call see: the test's folder, fixtures on demand, the Hydra composer."""

    tmp: Path
    request: Any
    monkeypatch: Any
    names: dict[str, str] = field(default_factory=dict)

    def fixture(self, name: str) -> Any:
        return self.request.getfixturevalue(name)

    def compose(self, overrides: list[str]):
        return self.fixture("compose")(overrides)

    def fmt(self, text: str) -> str:
        return text.format(tmp=self.tmp, **self.names)


@dataclass
class Bad:
    """One bad input.

    ``cli``: gbench arguments (``{tmp}`` and the names the setup returns are filled in), or
    ``api``: a callable ``f(ctx)``. ``expect``: the exit code (CLI) or exception type (API);
    ``message``: a regex the message must match (``re.S``). ``post(ctx, result)`` may check more
    after the snapshot comparison (e.g. that the fix works).
    """

    group: str
    id: str
    expect: int | type[BaseException]
    message: str
    setup: Callable[[Ctx], dict[str, str] | None] | None = None
    cli: tuple[str, ...] | None = None
    api: Callable[[Ctx], Any] | None = None
    env: dict[str, str | None] = field(default_factory=dict)
    post: Callable[[Ctx, Any], None] | None = None
    xfail: str | None = None
    slow: bool = False

    @property
    def expected(self) -> str:
        return f"exit {self.expect}" if isinstance(self.expect, int) else self.expect.__name__


# ------------------------------------------------------------------------------------------ helpers
def write_png(path: Path, h: int = 8, w: int = 8, seed: int = 0) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def write_folder(root: Path, n: int = 4, size: int = 8, classes=("a", "b"), split: str | None = "train") -> Path:
    base = root / split if split else root
    for k, c in enumerate(classes):
        for i in range(n):
            write_png(base / c / f"{i:03d}.png", size, size, seed=100 * k + i)
    return root


def write_npz(path: Path, n: int = 8, h: int = 8, w: int = 8, c: int = 3, dtype=np.uint8, key: str = "arr_0",
              labels: np.ndarray | None = None, shape: tuple[int, ...] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, shape or (n, h, w, c)).astype(dtype)
    arrays = {key: arr}
    if labels is not None:
        arrays["arr_1"] = labels
    np.savez(path, **arrays)
    return path


def copy_run(ctx: Ctx, which: str, dest: str = "run") -> Path:
    src = ctx.fixture("trained")[which]
    return Path(shutil.copytree(src, ctx.tmp / dest))


def snapshot(root: Path) -> dict[str, str]:
    """path -> sha256 of every file below ``root`` except Hydra's ``.hydra/`` folders and ``*.log``."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if ".hydra" in rel.parts or p.suffix == ".log" or p.is_symlink() or not p.is_file():
            continue
        out[str(rel)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def error_block(stderr: str) -> list[str]:
    """The error's lines: the first line starting with ``gbench`` and its continuation lines (up to
    an empty line, a log line ``[...]`` or the next ``gbench`` line)."""
    lines = stderr.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("gbench"):
            block = [line]
            for nxt in lines[i + 1:]:
                if not nxt.strip() or nxt.startswith("[") or nxt.startswith("gbench"):
                    break
                block.append(nxt)
            return block
    return []


def cli_env(ctx: Ctx, extra: dict[str, str | None]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("GBENCH_INCEPTION_WEIGHTS", "HYDRA_FULL_ERROR", "GBENCH_TEST_SLOW_WRITE")}
    env.update(GBENCH_HOME=str(ctx.tmp), GBENCH_CACHE=str(ctx.tmp / "cache"), GBENCH_OFFLINE="1",
               TORCH_HOME=str(ctx.tmp / "torch"), PYTHONUNBUFFERED="1")
    for k, v in extra.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = ctx.fmt(v)
    return env


def gbench(ctx: Ctx, *args: str, env: dict[str, str | None] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(GBENCH + [ctx.fmt(a) for a in args], capture_output=True, text=True, timeout=120,
                          cwd=ctx.tmp, env=cli_env(ctx, env or {}))


def validate(ctx: Ctx, *overrides: str) -> None:
    """Compose ``conf/`` with ``overrides`` and run the pre-flight config check on it."""
    from generative_bench.validation import validate as check

    check(ctx.compose([ctx.fmt(o) for o in overrides]))


TRAIN = ("train", "model=gaussian", "train.max_steps=5", "hydra.run.dir={tmp}/run")
NPZ_DATA = ("data=npz", "data.source.path={tmp}/data.npz", "data.shape=[3,8,8]")


# --------------------------------------------------------------------------------- setups and posts
def setup_data_npz(ctx: Ctx):
    write_npz(ctx.tmp / "data.npz", n=16)


def setup_samples_64_vs_32(ctx: Ctx):
    write_folder(ctx.tmp / "images32", n=4, size=32)
    write_npz(ctx.tmp / "samples64.npz", n=8, h=64, w=64)


def setup_folder_samples_64_vs_32(ctx: Ctx):
    write_folder(ctx.tmp / "images32", n=4, size=32)
    for i in range(2):
        write_png(ctx.tmp / "samples64" / f"{i:03d}.png", 64, 64, seed=i)


def setup_weights_eval(ctx: Ctx):
    write_npz(ctx.tmp / "data.npz", n=16)
    write_npz(ctx.tmp / "samples.npz", n=8)
    (ctx.tmp / "cache").mkdir()


def setup_wrong_weights(ctx: Ctx):
    setup_weights_eval(ctx)
    (ctx.tmp / "wrong.pth").write_bytes(b"not the inception weights" * 100)


WEIGHTS_EVAL = ("evaluate", "sampler=npz", "sampler.path={tmp}/samples.npz", *NPZ_DATA, "eval.num_samples=8",
                "eval.metrics=[fid]", "eval.nll.enabled=false", "hydra.run.dir={tmp}/run")


def no_checkpoint_written(ctx: Ctx, result) -> None:
    assert not (ctx.tmp / "run" / "checkpoints").exists(), "the bad setting was found only after training"


def nothing_extracted(ctx: Ctx, result) -> None:
    assert not (ctx.tmp / "run" / "results.json").exists(), "the run started before the shapes were checked"
    cache = ctx.tmp / "cache"
    assert not cache.exists() or not any(p.is_file() for p in cache.rglob("*")), "features were extracted"


def resume_with_allow_config_change_works(ctx: Ctx, result) -> None:
    ok = gbench(ctx, "train", "model=gaussian", "train.max_steps=8", "train.optim.lr=0.05",
                "train.allow_config_change=true", "hydra.run.dir={tmp}/run")
    assert ok.returncode == 0, ok.stderr
    import json

    rec = json.loads((ctx.tmp / "run" / "results.json").read_text())
    assert rec["status"] == "completed" and rec["train"]["resumed_from_step"] == 5


def report_lists_unreadable(ctx: Ctx, result) -> None:
    md = (ctx.tmp / "runs" / "report" / "leaderboard.md").read_text()
    assert "unreadable" in md and "broken" in md
    assert (ctx.tmp / "runs" / "report" / "index.html").is_file()


def no_temp_files_left(ctx: Ctx, result) -> None:
    assert not list(ctx.tmp.rglob("*.tmp")), "a temp file was left behind"


# ---------------------------------------------------------------------------------------- API calls
def api_npz_images(name: str):
    def call(ctx: Ctx):
        from generative_bench.data.images import NpzImages

        return NpzImages(str(ctx.tmp / name))
    return call


def api_subset_of_folder(ctx: Ctx):
    from generative_bench.data.loading import load_split

    cfg = ctx.compose(["data=folder", f"data.source.root={ctx.tmp}/folder", "data.shape=[3,8,8]", "data.subset=1000"])
    return load_split(cfg.data, "train")


def api_sample_folder_mixed(ctx: Ctx):
    from generative_bench.evaluation.sample_sets import FolderSampleSet

    return FolderSampleSet(str(ctx.tmp / "samples")).draw(0, 2)


def api_sample_npz_labels(ctx: Ctx):
    from generative_bench.evaluation.sample_sets import NpzSampleSet

    return NpzSampleSet(str(ctx.tmp / "labelled.npz"))


def api_load_checkpoint(name: str):
    def call(ctx: Ctx):
        from generative_bench.training.checkpoint import load_checkpoint

        return load_checkpoint(ctx.tmp / name)
    return call


def api_resolve_weights(ctx: Ctx):
    from generative_bench.evaluation import weights

    ctx.monkeypatch.delenv(weights.ENV_WEIGHTS, raising=False)
    ctx.monkeypatch.setenv(weights.ENV_CACHE, str(ctx.tmp / "cache"))
    ctx.monkeypatch.setenv("TORCH_HOME", str(ctx.tmp / "torch"))
    return weights.resolve_inception_weights(download=False)


def api_inception_auto_with_wrong_file(ctx: Ctx):
    from generative_bench.evaluation.features import InceptionFeatures

    import warnings

    ctx.monkeypatch.setenv("GBENCH_OFFLINE", "1")
    with warnings.catch_warnings():  # today's fallback warns and goes on: the gap this row documents
        warnings.simplefilter("ignore", UserWarning)
        return InceptionFeatures(weights=ctx.tmp / "wrong.pth", pretrained="auto", channels_last=False)


def api_verify_truncated(ctx: Ctx):
    from generative_bench.evaluation import weights

    return weights.verify(ctx.tmp / weights.FILENAME)


def api_read_json(ctx: Ctx):
    from generative_bench.io import read_json

    return read_json(ctx.tmp / "run" / "results.json")


def failing_replace(code: int):
    def call(ctx: Ctx):
        from generative_bench.io import atomic_write_json

        def replace(src, dst):
            raise OSError(code, os.strerror(code), str(dst))

        ctx.monkeypatch.setattr(os, "replace", replace)
        return atomic_write_json(ctx.tmp / "run" / "results.json", {"status": "completed", "new": True})
    return call


def api_checkpoint_disk_full(ctx: Ctx):
    import torch

    from generative_bench.training.checkpoint import save_checkpoint

    def replace(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))

    ctx.monkeypatch.setattr(os, "replace", replace)
    return save_checkpoint({"step": 6, "model": {}, "ema": {}, "w": torch.zeros(3)}, ctx.tmp / "run" / "checkpoints")


def api_write_below_file(ctx: Ctx):
    from generative_bench.io import atomic_write_json

    return atomic_write_json(ctx.tmp / "notes.txt" / "results.json", {})


def setup_results(ctx: Ctx):
    (ctx.tmp / "run").mkdir()
    (ctx.tmp / "run" / "results.json").write_text('{"schema": "generative-bench/results-1", "status": "completed"}\n')


def setup_notes(ctx: Ctx):
    (ctx.tmp / "notes.txt").write_text("a file, not a folder\n")


# ---------------------------------------------------------------------------------------- the table
def _mixed_folder(ctx: Ctx):
    write_png(ctx.tmp / "mixed" / "train" / "a" / "000.png", 8, 8)
    write_png(ctx.tmp / "mixed" / "train" / "a" / "001.png", 16, 16)


def _corrupt_image(ctx: Ctx):
    write_folder(ctx.tmp / "folder", n=2)
    (ctx.tmp / "folder" / "train" / "a" / "001.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")


def _truncated_checkpoint(ctx: Ctx):
    run = copy_run(ctx, "gaussian")
    last = run / "checkpoints" / "last.pt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])


def _pickle_checkpoint(ctx: Ctx):
    (ctx.tmp / "run" / "checkpoints").mkdir(parents=True)
    with open(ctx.tmp / "run" / "checkpoints" / "last.pt", "wb") as f:
        pickle.dump({"weights": [1.0, 2.0], "note": "not from gbench"}, f)


def _torch_dict_checkpoint(ctx: Ctx):
    import torch

    torch.save({"weights": torch.zeros(3)}, ctx.tmp / "other.pt")


def _half_written_results(ctx: Ctx):
    good = copy_run(ctx, "gaussian", "runs/good")
    broken = ctx.tmp / "runs" / "broken"
    broken.mkdir()
    text = (good / "results.json").read_text()
    (broken / "results.json").write_text(text[: len(text) // 2])


def _other_schema(ctx: Ctx):
    (ctx.tmp / "runs" / "theirs").mkdir(parents=True)
    (ctx.tmp / "runs" / "theirs" / "results.json").write_text('{"schema": "someone-else/v9", "fid": 3.1}\n')


def _leaderboard(ctx: Ctx):
    shutil.copy(ctx.fixture("trained")["leaderboard"], ctx.tmp / "new.csv")


def _not_a_leaderboard(ctx: Ctx):
    _leaderboard(ctx)
    (ctx.tmp / "baseline.csv").write_text("name,score\nmine,1.0\n")


def _corrupt_results(ctx: Ctx):
    run = copy_run(ctx, "gaussian")
    text = (run / "results.json").read_text()
    (run / "results.json").write_text(text[:100])


def _runs_dir_file(ctx: Ctx):
    (ctx.tmp / "runsfile").write_text("a file where the runs folder should be\n")


def _unwritable_run(ctx: Ctx):
    run = ctx.tmp / "run"
    run.mkdir()
    if os.geteuid() == 0:  # permission bits do not stop root: put a file where the folder must go
        (run / "checkpoints").write_text("a file where the checkpoints folder should be\n")
    else:
        (run / "checkpoints").mkdir()
        (run / "checkpoints").chmod(0o500)


ROWS: list[Bad] = [
    # ------------------------------------------------------------------ config (CLI: the real pre-flight)
    Bad("config", "max_steps_negative", 2, r"train\.max_steps=-1: must be an integer >= 1",
        cli=("train", "model=gaussian", "train.max_steps=-1", "hydra.run.dir={tmp}/run")),
    Bad("config", "two_stage_budget_ends_in_stage_one", 2, r"train\.max_steps=10 ends within the first stage "
        r"\(model\.backend\.stage1_steps=600\).*raise train\.max_steps above 600",
        cli=("train", "model=ldm", "data=cifar10_jpeg", "train.max_steps=10", "hydra.run.dir={tmp}/run")),
    Bad("config", "batch_larger_than_subset", 2,
        r"train\.batch_size=64 is larger than the training set \(16 examples\); lower train\.batch_size or raise "
        r"data\.subset", cli=(*TRAIN, "data.subset=16", "train.batch_size=64")),
    Bad("config", "unknown_stage", 2, r"unknown stage='fly'; choose one of \[.*'pipeline'.*'train'",
        cli=(*TRAIN, "stage=fly")),
    Bad("config", "device_tpu", 2, r"device='tpu': must be auto, cpu, cuda, cuda:N or mps",
        cli=(*TRAIN, "device=tpu")),
    Bad("config", "unknown_model_choice", 2, r"modle.*(gaussian|vae)",
        cli=("train", "model=modle", "hydra.run.dir={tmp}/run")),
    Bad("config", "typo_key", 2, r"trian\.max_steps is not a key of the config; did you mean train\.max_steps\?",
        cli=("train", "model=gaussian", "trian.max_steps=5", "hydra.run.dir={tmp}/run")),
    Bad("config", "diffusion_temperature", 2,
        r"model\.sampling: DiffusionBackend got unknown sampling option\(s\) \['temperature'\]; valid options: "
        r"\[.*'steps'", cli=("run", "model=ddpm", "+model.sampling.temperature=2", "train.max_steps=5",
                             "eval.num_samples=16", "eval.nll.enabled=false", "hydra.run.dir={tmp}/run"),
        post=no_checkpoint_written),
    Bad("config", "respacing_not_a_number", 2, r"bad respacing 'abc': expected an int, 'N1,N2,\.\.\.' or 'ddimN'",
        cli=("sample", "model=ddpm", "model.sampling.steps=abc", "hydra.run.dir={tmp}/run")),
    Bad("config", "gan_truncation_zero", 2, r"truncation \(psi\) must be in \(0, 1\], got 0(\.0)?; 1 = no truncation",
        cli=("sample", "model=gan", "+model.sampling.truncation=0", "hydra.run.dir={tmp}/run")),
    Bad("config", "cfg_scale_nan", 2,
        r"DiffusionBackend sampling option cfg_scale=nan must be a finite number \(its neutral value is 0\.0\); set "
        r"model\.sampling\.cfg_scale", cli=("run", "model=ddpm", "model.backend.num_classes=${{data.num_classes}}",
                                           "+model.sampling.cfg_scale=nan", "train.max_steps=5", "eval.num_samples=16",
                                           "hydra.run.dir={tmp}/run"), post=no_checkpoint_written),
    Bad("config", "vae_temperature_inf", 2,
        r"VAEBackend sampling option temperature=inf must be a finite number.*model\.sampling\.temperature",
        cli=("run", "model=vae", "model.sampling.temperature=inf", "train.max_steps=5", "eval.num_samples=16",
             "hydra.run.dir={tmp}/run"), post=no_checkpoint_written),
    # ------------------------------------------------------------------ config (API: validation.validate)
    Bad("config", "is_split_order_typo", InputError,
        r"eval\.is_split_order='random' is not one of \['canonical', 'shuffled', 'sequential'\]",
        api=lambda c: validate(c, "model=gaussian", "data=cifar10_jpeg", "eval.is_split_order=random")),
    Bad("config", "kid_subset_order_typo", InputError, r"eval\.kid_subset_order='sorted' is not one of",
        api=lambda c: validate(c, "model=gaussian", "data=cifar10_jpeg", "eval.kid_subset_order=sorted")),
    Bad("config", "max_steps_zero", InputError, r"train\.max_steps=0: must be an integer >= 1 or null",
        api=lambda c: validate(c, "model=gaussian", "train.max_steps=0")),
    Bad("config", "batch_size_zero", InputError, r"train\.batch_size=0: must be an integer >= 1",
        api=lambda c: validate(c, "model=gaussian", "train.batch_size=0")),
    Bad("config", "no_budget", InputError, r"no training budget: set train\.max_steps, train\.max_images or",
        api=lambda c: validate(c, "model=gaussian", "train.max_steps=null")),
    Bad("config", "num_samples_zero", InputError, r"eval\.num_samples=0: must be an integer >= 1",
        api=lambda c: validate(c, "model=gaussian", "eval.num_samples=0")),
    Bad("config", "kid_subset_larger_than_samples", InputError,
        r"eval\.kid_subset_size=1000 is larger than the 100 samples per evaluation; lower eval\.kid_subset_size "
        r"to <= 100 or raise eval\.num_samples",
        api=lambda c: validate(c, *NPZ_DATA, "model=gaussian", "eval.num_samples=100", "eval.metrics=[kid]")),
    Bad("config", "is_splits_more_than_samples", InputError,
        r"eval\.is_splits=20 is more than the 10 samples; lower eval\.is_splits or raise eval\.num_samples",
        api=lambda c: validate(c, *NPZ_DATA, "model=gaussian", "eval.num_samples=10", "eval.metrics=[is]",
                               "eval.is_splits=20")),
    Bad("config", "unknown_metric", InputError, r"unknown metric 'fod' in eval\.metrics; choose from \[.*'fid'",
        api=lambda c: validate(c, *NPZ_DATA, "model=gaussian", "eval.metrics=[fid,fod]")),
    Bad("config", "sfid_without_spatial_features", InputError,
        r"metric 'sfid' needs 'spatial' features, which eval\.features \(DomainFeatures\) does not provide; "
        r"remove sfid from eval\.metrics",
        api=lambda c: validate(c, *NPZ_DATA, "model=gaussian", "eval/features=cifar10_resnet", "eval.metrics=[sfid]")),
    Bad("config", "pr_k_not_below_samples", InputError, r"eval\.pr_k=3 needs more than 3 samples, got "
        r"eval\.num_samples=3", api=lambda c: validate(c, "model=gaussian", "eval.num_samples=3")),
    Bad("config", "lr_decay_unknown", InputError, r"train\.lr_decay='cosine': must be constant or linear",
        api=lambda c: validate(c, "model=gaussian", "train.lr_decay=cosine")),
    Bad("config", "ema_decay_above_one", InputError, r"train\.ema_decay=1\.5: must be a number in \[0, 1\)",
        api=lambda c: validate(c, "model=gaussian", "train.ema_decay=1.5")),
    Bad("config", "lr_zero", InputError, r"train\.optim\.lr=0(\.0)?: must be a number in \(0, inf\)",
        api=lambda c: validate(c, "model=gaussian", "train.optim.lr=0")),
    Bad("config", "amp_unknown", InputError, r"train\.amp='fp8': must be auto, off, bf16 or fp16",
        api=lambda c: validate(c, "model=gaussian", "train.amp=fp8")),
    Bad("config", "seed_negative", InputError, r"seed=-1: must be an integer >= 0",
        api=lambda c: validate(c, "model=gaussian", "seed=-1")),
    Bad("config", "sampler_without_path", InputError, r"sampler\.path is not set: pass sampler\.path=FILE\.npz",
        api=lambda c: validate(c, "stage=evaluate", "sampler=npz")),
    Bad("config", "sweep_entry_bad_option", InputError,
        r"model\.sampling_sweep\[0\]: VAEBackend got unknown sampling option\(s\) \['steps'\]",
        api=lambda c: validate(c, "model=vae", "model.sampling_sweep=[{{steps: 10}}]")),
    Bad("config", "reference_split_unknown", InputError, r"eval\.reference_split='val': must be one of "
        r"\['train', 'test'\]", api=lambda c: validate(c, "model=gaussian", "eval.reference_split=val")),
    Bad("config", "features_pretrained_unknown", InputError, r"eval\.features\.pretrained='maybe': must be true .*, "
        r"false .* or auto", api=lambda c: validate(c, *NPZ_DATA, "model=gaussian", "eval.features.pretrained=maybe")),
    # ------------------------------------------------------------------ data
    Bad("data", "missing_image_folder", 2, r"image folder '.*nope' does not exist; fix data\.source\.root",
        cli=(*TRAIN, "data=folder", "data.source.root={tmp}/nope", "data.shape=[3,8,8]")),
    Bad("data", "empty_image_folder", 2, r"no images \(\.png.*\) found under '.*empty/train'; expected "
        r"<root>/<split>/<class>/<image>", setup=lambda c: (c.tmp / "empty" / "train").mkdir(parents=True),
        cli=(*TRAIN, "data=folder", "data.source.root={tmp}/empty", "data.shape=[3,8,8]")),
    Bad("data", "mixed_size_folder", 2, r"'.*mixed/train/a/001\.png' is 16x16 but '.*mixed/train/a/000\.png' is "
        r"8x8: every image of a dataset must have one size; resize them", setup=_mixed_folder,
        cli=(*TRAIN, "data=folder", "data.source.root={tmp}/mixed", "data.shape=[3,8,8]")),
    Bad("data", "corrupt_image", 2, r"cannot decode image '.*folder/train/a/001\.png' .*; remove or replace the file",
        setup=_corrupt_image, cli=(*TRAIN, "data=folder", "data.source.root={tmp}/folder", "data.shape=[3,8,8]")),
    Bad("data", "data_shape_mismatch", 2, r"data 'folder' has examples of shape \[3, 8, 8\] but data\.shape is "
        r"\[3, 32, 32\]; set data\.shape=\[3, 8, 8\]", setup=lambda c: write_folder(c.tmp / "folder"),
        cli=(*TRAIN, "data=folder", "data.source.root={tmp}/folder")),
    Bad("data", "npz_without_arr_0", 2, r"'.*data\.npz' has no array 'arr_0' \(found \['images'\]\); save the "
        r"images as arr_0", setup=lambda c: write_npz(c.tmp / "data.npz", key="images"), cli=(*TRAIN, *NPZ_DATA)),
    Bad("data", "samples_64_against_data_32", 2,
        r"the samples in '.*samples64\.npz' are 64x64 images with 3 channel\(s\) but data=folder has shape "
        r"\[3, 32, 32\]: score them against data of their size", setup=setup_samples_64_vs_32,
        cli=("evaluate", "sampler=npz", "sampler.path={tmp}/samples64.npz", "data=folder",
             "data.source.root={tmp}/images32", "eval.num_samples=8", "eval.metrics=[fid]",
             "hydra.run.dir={tmp}/run"),
        post=nothing_extracted),
    Bad("data", "sample_folder_64_against_data_32", 2,
        r"the sample image '.*samples64/000\.png' is 64x64 but data=folder has shape \[3, 32, 32\]: score the "
        r"samples against data of their size", setup=setup_folder_samples_64_vs_32,
        cli=("evaluate", "sampler=folder", "sampler.path={tmp}/samples64", "data=folder",
             "data.source.root={tmp}/images32", "eval.num_samples=2", "eval.metrics=[fid]",
             "hydra.run.dir={tmp}/run"), post=nothing_extracted),
    Bad("data", "npz_float_images", InputError, r"arr_0 has dtype float32; expected uint8 NHWC images \(values in "
        r"\[0, 255\], so \[0, 255\] data: np\.clip\(np\.round\(x\), 0, 255\)", setup=lambda c: write_npz(c.tmp / "float.npz", dtype=np.float32),
        api=api_npz_images("float.npz")),
    Bad("data", "npz_wrong_shape", InputError, r"arr_0 has shape \(4, 8, 8\); expected \(N, H, W, 3\) uint8 NHWC",
        setup=lambda c: write_npz(c.tmp / "flat.npz", shape=(4, 8, 8)), api=api_npz_images("flat.npz")),
    Bad("data", "npz_labels_wrong_length", InputError, r"arr_1 must hold one integer class label per image: found "
        r"dtype int64, shape \(3,\) for 8 images; fix or drop it",
        setup=lambda c: write_npz(c.tmp / "labelled.npz", labels=np.arange(3)), api=api_npz_images("labelled.npz")),
    Bad("data", "sample_npz_labels_wrong_length", InputError, r"arr_1 must hold one integer class label per image",
        setup=lambda c: write_npz(c.tmp / "labelled.npz", labels=np.arange(3)), api=api_sample_npz_labels),
    Bad("data", "npz_not_a_zip", InputError, r"'.*junk\.npz' is not a readable npz file .*; re-create or "
        r"re-download it", setup=lambda c: (c.tmp / "junk.npz").write_bytes(b"PK\x03\x04 cut short"),
        api=api_npz_images("junk.npz")),
    Bad("data", "subset_larger_than_folder", InputError, r"data\.subset=1000 is larger than the split \(8 examples\); "
        r"lower it or use null", setup=lambda c: write_folder(c.tmp / "folder"), api=api_subset_of_folder),
    Bad("data", "num_samples_larger_than_npz", InputError, r"eval\.num_samples=100 but '.*samples\.npz' holds 8 "
        r"samples; lower eval\.num_samples to <= 8", setup=lambda c: write_npz(c.tmp / "samples.npz"),
        api=lambda c: validate(c, "stage=evaluate", "sampler=npz", "sampler.path={tmp}/samples.npz", *NPZ_DATA,
                               "eval.num_samples=100")),
    Bad("data", "sample_folder_mixed_sizes", InputError, r"sample image '.*samples/b\.png' is 16x16 but "
        r"'.*samples/a\.png' is 8x8: every image of a sample folder must have one size; resize them first",
        setup=lambda c: (write_png(c.tmp / "samples" / "a.png", 8, 8), write_png(c.tmp / "samples" / "b.png", 16, 16)),
        api=api_sample_folder_mixed),
    # ------------------------------------------------------------------ checkpoints
    Bad("checkpoints", "missing_checkpoint", 2, r"checkpoint '.*empty/last\.pt' does not exist; train first or fix "
        r"the path", setup=lambda c: (c.tmp / "empty").mkdir(),
        cli=("sample", "model=gaussian", "checkpoint={tmp}/empty", "eval.num_samples=8", "hydra.run.dir={tmp}/out")),
    Bad("checkpoints", "truncated_last_pt", 2, r"checkpoint '.*run/checkpoints/last\.pt' is corrupt or not a "
        r"generative-bench checkpoint .*delete it to retrain or restore a backup", setup=_truncated_checkpoint,
        cli=("sample", "model=gaussian", "checkpoint={tmp}/run", "eval.num_samples=8", "hydra.run.dir={tmp}/out")),
    Bad("checkpoints", "pickle_not_a_checkpoint", 2, r"checkpoint '.*last\.pt' is corrupt or not a generative-bench "
        r"checkpoint: a safe load refused it .*pass the checkpoints/last\.pt that `gbench train` wrote",
        setup=_pickle_checkpoint,
        cli=("sample", "model=gaussian", "checkpoint={tmp}/run", "eval.num_samples=8", "hydra.run.dir={tmp}/out")),
    Bad("checkpoints", "checkpoint_of_another_model", 2, r"checkpoint '.*run/checkpoints' does not match model=gan "
        r"\(it was trained as another model: model\.name: 'vae' -> 'gan'\); pass the same model/data overrides the run "
        r"was trained with",
        setup=lambda c: copy_run(c, "vae"),
        cli=("sample", "model=gan", "checkpoint={tmp}/run", "eval.num_samples=8", "hydra.run.dir={tmp}/out")),
    Bad("checkpoints", "resume_with_changed_lr", 2, r"was started with other settings than this command's .*\n  "
        r"train\.optim\.lr: 0\.01 -> 0\.05\nRerun with the original settings, pass train\.allow_config_change=true",
        setup=lambda c: copy_run(c, "gaussian"),
        cli=("train", "model=gaussian", "train.max_steps=8", "train.optim.lr=0.05", "hydra.run.dir={tmp}/run"),
        post=resume_with_allow_config_change_works),
    Bad("checkpoints", "torch_file_not_a_checkpoint", InputError, r"checkpoint '.*other\.pt' is not a "
        r"generative-bench checkpoint \(it holds a dict without \['step', 'model', 'ema'\]\); pass the "
        r"checkpoints/last\.pt", setup=_torch_dict_checkpoint, api=api_load_checkpoint("other.pt")),
    Bad("checkpoints", "empty_checkpoint_file", InputError, r"checkpoint '.*empty\.pt' is corrupt .*delete it to "
        r"retrain", setup=lambda c: (c.tmp / "empty.pt").write_bytes(b""), api=api_load_checkpoint("empty.pt")),
    # ------------------------------------------------------------------ weights
    Bad("weights", "pretrained_true_offline", 4, rf"FID Inception weights were not found .*downloading is disabled "
        rf"\(GBENCH_OFFLINE=1.*sha256 {INCEPTION_SHA}.*GBENCH_INCEPTION_WEIGHTS=PATH",
        setup=setup_weights_eval, cli=(*WEIGHTS_EVAL, "eval.features.pretrained=true")),
    Bad("weights", "env_weights_wrong_file", 4, rf"Inception weights file .*wrong\.pth has sha256 [0-9a-f]{{64}}, "
        rf"but the FID Inception weights .* have sha256 {INCEPTION_SHA}: the file is corrupt.*Delete it and "
        r"download it again", setup=setup_wrong_weights, cli=(*WEIGHTS_EVAL, "eval.features.pretrained=true"),
        env={"GBENCH_INCEPTION_WEIGHTS": "{tmp}/wrong.pth"}),
    Bad("weights", "env_weights_missing_file", 4, rf"Inception weights file .*absent\.pth does not exist\. Provide "
        rf"the FID Inception weights .*sha256 {INCEPTION_SHA}", setup=setup_weights_eval,
        cli=(*WEIGHTS_EVAL, "eval.features.pretrained=true"), env={"GBENCH_INCEPTION_WEIGHTS": "{tmp}/absent.pth"}),
    Bad("weights", "wrong_weights_file_with_auto", WeightsUnavailableError, rf"have sha256 {INCEPTION_SHA}",
        setup=lambda c: (c.tmp / "wrong.pth").write_bytes(b"not the inception weights" * 100),
        api=api_inception_auto_with_wrong_file),
    Bad("weights", "offline_without_weights_api", WeightsUnavailableError, rf"were not found \(looked in .*\) and "
        rf"downloading is disabled.*sha256 {INCEPTION_SHA}.*set the environment variable GBENCH_INCEPTION_WEIGHTS",
        api=api_resolve_weights),
    Bad("weights", "truncated_weights_file", WeightsUnavailableError, rf"has sha256 [0-9a-f]{{64}}, but .* have "
        rf"sha256 {INCEPTION_SHA}: the file is corrupt, truncated or a different network",
        setup=lambda c: (c.tmp / "pt_inception-2015-12-05-6726825d.pth").write_bytes(b"\x00" * 1000),
        api=api_verify_truncated),
    # ------------------------------------------------------------------ records and reports
    Bad("records", "report_missing_folder", 2, r"^gbench report: error: no such folder\(s\): '.*nope'; pass existing "
        r"run or sweep folders", cli=("report", "{tmp}/nope")),
    Bad("records", "report_folder_without_runs", 2, r"no results\.json and no Hydra job folder found below .*; pass "
        r"the folder\(s\) that training/evaluation runs wrote", setup=lambda c: (c.tmp / "runs").mkdir(),
        cli=("report", "{tmp}/runs")),
    Bad("records", "report_half_written_results", 0, r"unreadable.*results\.json cannot be read",
        setup=_half_written_results, cli=("report", "{tmp}/runs"), post=report_lists_unreadable),
    Bad("records", "report_other_schema", 0, r"unsupported results schema 'someone-else/v9' \(expected "
        r"'generative-bench/results-1'\)", setup=_other_schema, cli=("report", "{tmp}/runs")),
    Bad("records", "report_out_is_a_file", 2, r"--out '.*notes\.txt' is a file; pass a folder",
        setup=lambda c: (copy_run(c, "gaussian"), setup_notes(c)), cli=("report", "{tmp}/run", "--out", "{tmp}/notes.txt")),
    Bad("records", "report_unknown_format", 2, r"unknown report format\(s\) \['pdf'\]; choose from "
        + re.escape(str(list(REPORT_FORMATS))), setup=lambda c: copy_run(c, "gaussian"),
        cli=("report", "{tmp}/run", "--formats", "pdf", "--out", "{tmp}/report")),
    Bad("records", "report_input_is_another_file", 2, r"'.*notes\.txt' is a file but not a results\.json; pass run "
        r"folders", setup=setup_notes, cli=("report", "{tmp}/notes.txt")),
    Bad("records", "compare_missing_baseline", 2, r"BASELINE '.*nope\.csv' does not exist; pass a sweep/run folder "
        r"or the leaderboard\.json", setup=_leaderboard, cli=("compare", "{tmp}/new.csv", "{tmp}/nope.csv")),
    Bad("records", "compare_csv_not_a_leaderboard", 2, r"'.*baseline\.csv' is not a leaderboard CSV written by "
        r"`gbench report` \(no column\(s\) .*\); pass its leaderboard\.csv or a folder of runs",
        setup=_not_a_leaderboard, cli=("compare", "{tmp}/new.csv", "{tmp}/baseline.csv")),
    Bad("records", "compare_bad_tolerance", 2, r"--tolerance 'abc' is neither a number \(relative, e\.g\. 0\.05\) nor "
        r"KEY=VALUE", setup=_leaderboard, cli=("compare", "{tmp}/new.csv", "{tmp}/new.csv", "--tolerance", "abc")),
    Bad("records", "run_on_corrupt_results", 2, r"'.*run/results\.json' is not valid JSON .*move it away",
        setup=_corrupt_results, cli=(*TRAIN[:-1], "train.max_steps=8", "hydra.run.dir={tmp}/run")),
    Bad("records", "read_corrupt_record", InputError, r"'.*results\.json' is not valid JSON .*; it was cut short or "
        r"edited by hand: restore it, or move it away to start a fresh record",
        setup=lambda c: (c.tmp / "run").mkdir() or (c.tmp / "run" / "results.json").write_text('{"status": "comp'),
        api=api_read_json),
    # ------------------------------------------------------------------ disks and names
    Bad("disks", "runs_dir_is_a_file", 5, r"'.*runsfile.*'.*(is a file|not a folder).*paths\.runs_dir",
        setup=_runs_dir_file, cli=("train", "model=gaussian", "train.max_steps=5", "paths.runs_dir={tmp}/runsfile")),
    Bad("disks", "run_folder_unwritable", 5, r"cannot write '.*run/checkpoints/last\.pt': ('.*run/checkpoints' is "
        r"a file where a folder is expected: move it away|permission denied: write to a folder you own)",
        setup=_unwritable_run, cli=TRAIN),
    Bad("disks", "run_name_with_dotdot", 2, r"run_name='\.\./escape' contains '/' and '\.\.': it names a folder "
        r"below paths\.runs_dir.*pass run_name=NAME without '/' or '\.\.'",
        cli=("train", "model=gaussian", "train.max_steps=5", "run_name=../escape")),
    Bad("disks", "data_name_with_slash", 2, r"run_name='gaussian-a/b-s0' contains '/': .*\(it is built from "
        r"model\.name, data\.name and seed unless set\)",
        cli=("train", "model=gaussian", "train.max_steps=5", "data.name=a/b", "hydra.run.dir={tmp}/run")),
    Bad("disks", "report_out_inside_a_file", 2, r"--out '.*notes\.txt/report' is inside the file '.*notes\.txt'; "
        r"pass a folder", setup=lambda c: (copy_run(c, "gaussian"), setup_notes(c)),
        cli=("report", "{tmp}/run", "--out", "{tmp}/notes.txt/report")),
    Bad("disks", "compare_out_below_a_file", 2, r"^gbench compare: error: cannot write '.*notes\.txt/cmp\.md': "
        r"'.*notes\.txt' is a file where a folder is expected", setup=lambda c: (_leaderboard(c), setup_notes(c)),
        cli=("compare", "{tmp}/new.csv", "{tmp}/new.csv", "--out", "{tmp}/notes.txt/cmp.md")),
    Bad("disks", "read_only_file_system", OutputError, r"cannot write '.*run/results\.json': the file system is "
        r"read-only: write elsewhere", setup=setup_results, api=failing_replace(errno.EROFS), post=no_temp_files_left),
    Bad("disks", "disk_full", OutputError, r"cannot write '.*run/results\.json': the disk is full: free space or "
        r"write elsewhere", setup=setup_results, api=failing_replace(errno.ENOSPC), post=no_temp_files_left),
    Bad("disks", "disk_full_checkpoint", OutputError, r"cannot write '.*checkpoints/last\.pt': the disk is full",
        setup=lambda c: copy_run(c, "gaussian"), api=api_checkpoint_disk_full, post=no_temp_files_left),
    Bad("disks", "write_below_a_file", OutputError, r"cannot write '.*notes\.txt/results\.json': '.*notes\.txt' is a "
        r"file where a folder is expected", setup=setup_notes, api=api_write_below_file),
]


# ----------------------------------------------------------------- rows of the second catalogue (issue kinds)
def api_reference(name: str):
    def call(ctx: Ctx):
        from generative_bench.evaluation.reference_file import read_reference_file

        return read_reference_file(ctx.tmp / name)
    return call


def write_reference(path: Path, **arrays) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def _stats(d: int = 4) -> dict[str, np.ndarray]:
    return {"mu": np.zeros(d), "sigma": np.eye(d)}


def api_legacy_reference_with_clean_bicubic(ctx: Ctx):
    import json

    from generative_bench.evaluation.reference_file import check_feature_space, read_reference_file

    meta = {"extractor": {"name": "inception-v3-fid", "weights_sha256": "a" * 64}}  # written before resize modes
    write_reference(ctx.tmp / "old.npz", **_stats(), gbench_meta=np.array(json.dumps(meta)))
    ref = read_reference_file(ctx.tmp / "old.npz")
    check_feature_space(ref, {"name": "inception-v3-fid", "weights_sha256": "a" * 64, "resize": "tf1_bilinear",
                              "dims": {"pool": 4}})  # the resize it was made with: accepted
    return check_feature_space(ref, {"name": "inception-v3-fid", "weights_sha256": "a" * 64,
                                     "resize": "clean_bicubic", "dims": {"pool": 4}})


def api_labels_against_classes(ctx: Ctx):
    from generative_bench.evaluation.harness import Evaluator
    from generative_bench.evaluation.sample_sets import NpzSampleSet

    cfg = ctx.compose(["data=cifar10_jpeg"])
    write_npz(ctx.tmp / "samples.npz", n=8, labels=np.array([0, 1, 2, 3, 9, 10, 11, 12]))
    return Evaluator(cfg.data, cfg.eval).check_labels(NpzSampleSet(str(ctx.tmp / "samples.npz")), "samples")


def api_held_out_is_training(ctx: Ctx):
    from generative_bench.evaluation.harness import check_held_out

    train = np.random.default_rng(0).normal(size=(50, 8))
    return check_held_out(train, train[:20].copy(), "test", "npz")


def api_memorization_split_train(ctx: Ctx):
    from generative_bench.evaluation.harness import Evaluator

    cfg = ctx.compose(["data=cifar10_jpeg", "eval.memorization_split=train"])
    return Evaluator(cfg.data, cfg.eval).memorization_sets()


def api_resolve(model: str, *settings: tuple[str, Any]):
    def call(ctx: Ctx):
        from generative_bench.config import instantiate

        cfg = ctx.compose([f"model={model}", "model.backend.num_classes=8"] if model in ("ddpm", "gan") else
                          [f"model={model}"])
        backend = instantiate(cfg.model.backend)
        return backend.resolve_settings(**dict(settings))
    return call


def api_read_side(name: str):
    def call(ctx: Ctx):
        from generative_bench.reporting.compare import read_side

        return read_side(ctx.tmp / name)
    return call


def _leaderboard_with_cell(cell: str):
    def setup(ctx: Ctx):
        import csv
        import io

        lines = ctx.fixture("trained")["leaderboard"].read_text().splitlines()
        at = next(i for i, ln in enumerate(lines) if not ln.startswith("#"))
        row = next(csv.reader(io.StringIO(lines[at + 1])))
        buf = io.StringIO()
        csv.writer(buf, lineterminator="").writerow(row + [cell])  # a metric column, edited by hand
        lines[at], lines[at + 1] = lines[at] + ",hq_mean", buf.getvalue()
        (ctx.tmp / "baseline.csv").write_text("\n".join(lines) + "\n")
    return setup


def _json_board(doc: Any):
    def setup(ctx: Ctx):
        import json

        (ctx.tmp / "leaderboard.json").write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return setup


def _json_row(metrics: dict) -> dict:
    return {"tables": [{"protocol_fingerprint": {"n": 1}, "rows": [
        {"backend": "b", "config": "", "budget": "", "sampler": "", "metrics": metrics}]}]}


def _hostile_run(ctx: Ctx):
    import json

    run = copy_run(ctx, "gaussian")
    record = json.loads((run / "results.json").read_text())
    record["backend"]["name"] = "x" * 2_000_000
    record["backend"]["display_name"] = "<script>alert(1)</script>" * 1000
    (run / "results.json").write_text(json.dumps(record))


def report_finished_bounded(ctx: Ctx, result) -> None:
    html = (ctx.tmp / "report" / "index.html").read_text()
    assert len(html) < 2_000_000 and "<script>alert" not in html and "&lt;script&gt;" in html


def architecture_listed(ctx: Ctx, result) -> None:
    assert not (ctx.tmp / "out" / "samples").exists() or not any((ctx.tmp / "out" / "samples").iterdir())


ROWS += [
    # ------------------------------------------------------------------ reference files
    Bad("references", "reference_string_statistics", InputError, r"'mu' holds <U\d+ values, not numbers; .*recompute",
        setup=lambda c: write_reference(c.tmp / "ref.npz", mu=np.array(["a", "b"]), sigma=np.array(["c", "d"])),
        api=api_reference("ref.npz")),
    Bad("references", "reference_object_metadata", InputError, r"gbench_meta is an object array .*never loaded.*"
        r"recompute", setup=lambda c: write_reference(c.tmp / "ref.npz", **_stats(),
                                                       gbench_meta=np.array([{"x": 1}], dtype=object)),
        api=api_reference("ref.npz")),
    Bad("references", "reference_numeric_metadata", InputError, r"gbench_meta holds int64 values, not a JSON string",
        setup=lambda c: write_reference(c.tmp / "ref.npz", **_stats(), gbench_meta=np.arange(3)),
        api=api_reference("ref.npz")),
    Bad("references", "reference_labels_wrong_length", InputError, r"ref\.npz:arr_1 must hold one integer class label "
        r"per image: found dtype int64, shape \(3,\) for 8 images; fix or drop it",
        setup=lambda c: write_reference(c.tmp / "ref.npz", **_stats(), arr_0=np.zeros((8, 8, 8, 3), np.uint8),
                                        arr_1=np.arange(3)), api=api_reference("ref.npz")),
    Bad("references", "reference_labels_float", InputError, r"arr_1 must hold one integer class label per image: found "
        r"dtype float64", setup=lambda c: write_reference(c.tmp / "ref.npz", **_stats(),
                                                          arr_0=np.zeros((4, 8, 8, 3), np.uint8), arr_1=np.ones(4)),
        api=api_reference("ref.npz")),
    Bad("references", "reference_negative_labels", InputError, r"arr_1 holds class labels in \[-1, 2\], 1 of them "
        r"outside \[0, inf\)", setup=lambda c: write_reference(c.tmp / "ref.npz", **_stats(),
                                                               arr_0=np.zeros((4, 8, 8, 3), np.uint8),
                                                               arr_1=np.array([-1, 0, 1, 2])),
        api=api_reference("ref.npz")),
    Bad("references", "legacy_reference_for_clean_bicubic", InputError, r"feature-space mismatch: old\.npz was made "
        r"with another feature extractor \(resize: file 'tf1_bilinear' vs now 'clean_bicubic'\)",
        api=api_legacy_reference_with_clean_bicubic),
    Bad("references", "reference_folder_without_manifest", InputError, r"is a folder without manifest\.json; pass a "
        r"reference \.npz", setup=lambda c: (c.tmp / "refdir").mkdir(), api=api_reference("refdir")),
    Bad("references", "reference_missing", InputError, r"reference file not found: eval\.reference\.file=.*nope\.npz",
        api=api_reference("nope.npz")),
    Bad("references", "reference_images_float", InputError, r"arr_0 has float32 \(8, 8, 8, 3\); expected uint8 NHWC",
        setup=lambda c: write_reference(c.tmp / "ref.npz", **_stats(), arr_0=np.zeros((8, 8, 8, 3), np.float32)),
        api=api_reference("ref.npz")),
    # ------------------------------------------------------------------ sample arrays and labels
    Bad("labels", "sample_labels_outside_classes", InputError, r"the labels of samples \(arr_1\) holds class labels in "
        r"\[0, 12\], 3 of them outside \[0, 10\) \(the data has 10 classes\)", api=api_labels_against_classes),
    Bad("labels", "sample_labels_negative", InputError, r"arr_1 holds class labels in \[-3, 1\], 1 of them outside "
        r"\[0, inf\); fix the labels, or drop them", setup=lambda c: write_npz(
            c.tmp / "labelled.npz", n=4, labels=np.array([0, 1, -3, 1])), api=api_sample_npz_labels),
    Bad("labels", "sample_labels_2d", InputError, r"arr_1 must hold one integer class label per image: found dtype "
        r"int64, shape \(8, 1\)", setup=lambda c: write_npz(c.tmp / "labelled.npz", labels=np.zeros((8, 1), np.int64)),
        api=api_sample_npz_labels),
    Bad("labels", "sample_npz_nchw", InputError, r"has shape \(8, 3, 8, 8\); expected \(N, H, W, 3\) uint8 NHWC; the "
        r"shape .* looks channels-first \(NCHW\): transpose with x\.transpose\(0, 2, 3, 1\)",
        setup=lambda c: write_npz(c.tmp / "nchw.npz", shape=(8, 3, 8, 8)), api=api_npz_images("nchw.npz")),
    Bad("labels", "sample_npz_float_01", InputError, r"dtype float64; expected uint8 NHWC images \(values in \[.*\], "
        r"so \[0, 1\] data: np\.clip\(np\.round\(x \* 255\), 0, 255\)",
        setup=lambda c: np.savez(c.tmp / "f.npz", arr_0=np.random.default_rng(0).random((4, 8, 8, 3))),
        api=api_npz_images("f.npz")),
    Bad("labels", "sample_npz_float_255", InputError, r"values in \[.*\], so \[0, 255\] data: np\.clip\(np\.round\(x\), "
        r"0, 255\)", setup=lambda c: np.savez(c.tmp / "f.npz", arr_0=np.random.default_rng(0).random((4, 8, 8, 3)) * 255),
        api=api_npz_images("f.npz")),
    Bad("labels", "sample_npz_text", InputError, r"holds <U\d+ values \(text or records\), not image pixels",
        setup=lambda c: np.savez(c.tmp / "t.npz", arr_0=np.array(["a", "b"])), api=api_npz_images("t.npz")),
    Bad("labels", "sample_npz_object", InputError, r"holds an object array \(pickled Python objects\), which is never "
        r"unpickled", setup=lambda c: np.savez(c.tmp / "o.npz", arr_0=np.array([{"a": 1}], dtype=object)),
        api=api_npz_images("o.npz")),
    # ------------------------------------------------------------------ knobs and sampler settings
    Bad("knobs", "cfg_scale_inf", InputError, r"cfg_scale=inf must be a finite number",
        api=api_resolve("ddpm", ("cfg_scale", float("inf")))),
    Bad("knobs", "truncation_nan", InputError, r"truncation.*nan", api=api_resolve("gan", ("truncation", float("nan")))),
    Bad("knobs", "vae_temperature_negative", InputError, r"temperature.*-1", api=api_resolve("vae", ("temperature", -1.0))),
    Bad("knobs", "ddim_eta_negative", InputError, r"ddim eta must be a finite number >= 0, got -0\.5",
        api=api_resolve("ddpm", ("method", "ddim"), ("eta", -0.5))),
    Bad("knobs", "eta_for_heun", InputError, r"eta=0\.5 applies to method=ddim only; heun is deterministic, set eta=0\.0",
        api=api_resolve("ddpm", ("method", "heun"), ("steps", 10), ("eta", 0.5))),
    Bad("knobs", "respacing_for_grid_method", InputError, r"method=euler_ode needs steps=N, an int >= 2 .*respacing "
        r"specs apply to ancestral, ddim and dpmpp_2m", api=api_resolve("ddpm", ("method", "euler_ode"), ("steps", "ddim10"))),
    Bad("knobs", "unknown_method", InputError, r"unknown diffusion sampling method 'plms'; choose one of \['ancestral', "
        r"'ddim', 'dpmpp_2m', 'euler_ode', 'heun'\]", api=api_resolve("ddpm", ("method", "plms"))),
    Bad("knobs", "sweep_entry_nan_knob", InputError, r"model\.sampling_sweep\[0\]: .*cfg_scale=nan must be a finite",
        api=lambda c: validate(c, "model=ddpm", "model.backend.num_classes=8", "model.sampling_sweep=[{{cfg_scale: nan}}]")),
    # ------------------------------------------------------------------ budgets and bounded counts
    Bad("budgets", "two_stage_max_images_in_stage_one", InputError, r"train\.max_images=3200 \(= 100 steps of batch 32\) "
        r"ends within the first stage \(model\.backend\.stage1_steps=600\).*raise train\.max_images above 19200",
        api=lambda c: validate(c, "model=ldm", "data=cifar10_jpeg", "train.max_images=3200")),
    Bad("budgets", "two_stage_both_budgets", InputError, r"train\.max_steps=500 ends within the first stage",
        api=lambda c: validate(c, "model=ldm", "data=cifar10_jpeg", "train.max_images=320000", "train.max_steps=500")),
    Bad("budgets", "bootstrap_unbounded", InputError, r"eval\.bootstrap=100000000 replicates is more than 10,000 .*"
        r"lower eval\.bootstrap", api=lambda c: validate(c, *NPZ_DATA, "model=gaussian", "eval.bootstrap=100000000")),
    Bad("budgets", "bootstrap_negative", InputError, r"eval\.bootstrap=-1",
        api=lambda c: validate(c, *NPZ_DATA, "model=gaussian", "eval.bootstrap=-1")),
    Bad("budgets", "bootstrap_level_one", InputError, r"eval\.bootstrap_level=1(\.0)?",
        api=lambda c: validate(c, *NPZ_DATA, "model=gaussian", "eval.bootstrap=10", "eval.bootstrap_level=1.0")),
    Bad("budgets", "max_images_zero", InputError, r"train\.max_images=0",
        api=lambda c: validate(c, "model=gaussian", "train.max_images=0")),
    Bad("budgets", "default_sweep_num_samples_zero", 2, r"^gbench: error: invalid sweep configuration, no job launched: "
        r"eval\.num_samples=0: must be an integer >= 1 \(every job of the sweep\)",
        cli=("eval.num_samples=0", "hydra.sweep.dir={tmp}/sweep"), post=lambda c, r: not (c.tmp / "sweep").exists()
        or pytest.fail("a sweep folder was written")),
    # ------------------------------------------------------------------ memorization
    Bad("budgets", "held_out_split_is_training", InputError, r"the held-out 'test' images of data=npz are training "
        r"images \(20 of 20 repeat a training image exactly\).*give it one \(data\.source\.test_path=FILE\.npz",
        api=api_held_out_is_training),
    Bad("budgets", "memorization_split_train", InputError, r"eval\.memorization_split=train: the held-out images must "
        r"not be training images; use test", api=api_memorization_split_train),
    # ------------------------------------------------------------------ compare baselines
    Bad("compare", "baseline_formula_cell", InputError, r"baseline\.csv' line \d+ column hq_mean holds '=1\+1' \(a "
        r"spreadsheet formula\), not a number; regenerate it", setup=_leaderboard_with_cell("=1+1"),
        api=api_read_side("baseline.csv")),
    Bad("compare", "baseline_text_cell", InputError, r"column hq_mean holds 'good' \(text\), not a number",
        setup=_leaderboard_with_cell("good"), api=api_read_side("baseline.csv")),
    Bad("compare", "baseline_json_without_tables", InputError, r"is not a leaderboard\.json written by `gbench report` "
        r"\(no list 'tables'\)", setup=_json_board({"rows": []}), api=api_read_side("leaderboard.json")),
    Bad("compare", "baseline_json_formula_mean", InputError, r"metrics\.fid\.mean holds '=2\*3' \(a spreadsheet "
        r"formula\), not a number", setup=_json_board(_json_row({"fid": {"mean": "=2*3", "better": "lower"}})),
        api=api_read_side("leaderboard.json")),
    Bad("compare", "baseline_json_bad_direction", InputError, r"metrics\.fid\.better is 'up', not 'lower', 'higher'",
        setup=_json_board(_json_row({"fid": {"mean": 1.0, "better": "up"}})), api=api_read_side("leaderboard.json")),
    Bad("compare", "baseline_json_not_json", InputError, r"is not JSON \(.*\); regenerate it",
        setup=_json_board("{not json"), api=api_read_side("leaderboard.json")),
    Bad("compare", "output_is_the_baseline", 2, r"^gbench compare: error: --out '.*new\.csv' is one of the inputs; "
        r"writing there would replace it", setup=_leaderboard,
        cli=("compare", "{tmp}/new.csv", "{tmp}/new.csv", "--out", "{tmp}/new.csv")),
    # ------------------------------------------------------------------ hostile report inputs
    Bad("compare", "report_over_hostile_names", 0, r"report: .*index\.html", setup=_hostile_run,
        cli=("report", "{tmp}/run", "--out", "{tmp}/report", "--formats", "html"), post=report_finished_bounded),
    # ------------------------------------------------------------------ checkpoints loaded for sampling
    Bad("checkpoints", "sample_with_other_architecture", 2, r"does not match model=vae \(model\.backend\.vector_net\."
        r"hidden: 128 -> 48\); pass the same model/data overrides",
        setup=lambda c: copy_run(c, "vae"),
        cli=("sample", "model=vae", "checkpoint={tmp}/run", "model.backend.vector_net.hidden=48", "eval.num_samples=8",
             "hydra.run.dir={tmp}/out"), post=architecture_listed),
]
GROUPS = (*GROUPS, "references", "labels", "knobs", "budgets", "compare")
MINIMUM_ROWS.update({"references": 8, "labels": 6, "knobs": 6, "budgets": 6, "compare": 6})

# ------------------------------------------------------------------------------------------ catalogue
def catalogue() -> list[dict[str, str]]:
    """The table: one dict per row (group, id, expected outcome, message regex, xfail reason)."""
    return [{"group": r.group, "id": r.id, "expected": r.expected, "message": r.message, "xfail": r.xfail or ""}
            for r in ROWS]


def catalogue_counts() -> dict[str, int]:
    """Rows per group, in the catalogue's group order."""
    return {g: sum(r.group == g for r in ROWS) for g in GROUPS}


def _param(row: Bad):
    marks = []
    if row.xfail:
        marks.append(pytest.mark.xfail(strict=True, reason=row.xfail))
    if row.slow:
        marks.append(pytest.mark.slow)
    return pytest.param(row, id=f"{row.group}-{row.id}", marks=marks)


# ---------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """Run folders trained once per module (5 steps on the ring): a Gaussian and a VAE, and the
    leaderboard.csv of the Gaussian run."""
    root = tmp_path_factory.mktemp("trained")
    env = {**{k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"},
           "GBENCH_HOME": str(root), "GBENCH_CACHE": str(root / "cache"), "GBENCH_OFFLINE": "1"}
    runs = {"gaussian": root / "gaussian", "vae": root / "vae"}
    procs = {name: subprocess.Popen(GBENCH + ["train", f"model={name}", "train.max_steps=5", f"hydra.run.dir={path}"], stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, env=env, cwd=root)
             for name, path in runs.items()}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=180)
        assert proc.returncode == 0, out
    for path in runs.values():  # the run folders as users have them, without Hydra's bookkeeping
        shutil.rmtree(path / ".hydra", ignore_errors=True)
        for log in path.glob("*.log"):
            log.unlink()
    from generative_bench.reporting import build_report

    paths = build_report([runs["gaussian"]], root / "report", formats=("csv",), plots=False)
    return {**runs, "leaderboard": Path(paths["csv"])}


# -------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("row", [_param(r) for r in ROWS])
def test_bad_input(row: Bad, tmp_path, request, monkeypatch):
    ctx = Ctx(tmp_path, request, monkeypatch)
    if row.setup is not None:
        made = row.setup(ctx)
        ctx.names.update(made if isinstance(made, dict) else {})
    before = snapshot(tmp_path)
    pattern = re.compile(row.message, re.S | re.M)
    if row.cli is not None:
        result = gbench(ctx, *row.cli, env=row.env)
        output = result.stdout + result.stderr
        assert "Traceback" not in output, output
        assert result.returncode == row.expect, f"exit {result.returncode}, wanted {row.expect}:\n{output}"
        if row.expect == 0:
            assert pattern.search(output), f"{row.message!r} not in the output:\n{output}"
        else:
            block = error_block(result.stderr)
            assert block and ERROR_HEADER.match(block[0]), f"no 'gbench...: error:' line:\n{result.stderr}"
            assert len(block) <= 3, f"the error takes {len(block)} lines:\n" + "\n".join(block)
            assert pattern.search("\n".join(block)), f"{row.message!r} does not match:\n" + "\n".join(block)
    else:
        with pytest.raises(row.expect) as info:
            row.api(ctx)
        result = info.value
        assert pattern.search(str(result)), f"{row.message!r} does not match:\n{result}"
    monkeypatch.undo()  # os.replace and friends are the real ones again before anything else runs
    after = snapshot(tmp_path)
    changed = sorted(p for p, digest in before.items() if after.get(p) != digest)
    assert not changed, f"existing files changed or vanished: {changed}"
    if row.post is not None:
        row.post(ctx, result)


def test_catalogue_covers_every_group():
    """The catalogue has its minimum number of rows per group and unique ids (prints nothing)."""
    counts = catalogue_counts()
    assert all(counts[g] >= n for g, n in MINIMUM_ROWS.items()), counts
    assert sum(counts.values()) >= 123 and sum(counts.values()) == len(ROWS)
    ids = [f"{r.group}-{r.id}" for r in ROWS]
    assert len(ids) == len(set(ids))
    assert all(r.group in GROUPS and (r.cli is None) != (r.api is None) for r in ROWS)
