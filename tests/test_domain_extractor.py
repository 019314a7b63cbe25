"""Domain extractors: train-extractor stage (weights + manifest), DomainFeatures loading and checks."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from generative_bench.errors import InputError
from generative_bench.records import RunRecord

CLASSES = ("blue", "green", "red")
SIZE = 16


def _separable_folder(root: Path, per_class: dict[str, int]) -> Path:
    """root/{train,test}/<colour>/*.png: noisy 16x16 images whose dominant channel is the class."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in per_class.items():
        for k, name in enumerate(CLASSES):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 90, (SIZE, SIZE, 3))
                img[..., 2 - k] += 150  # blue -> channel 2, green -> 1, red -> 0
                Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(d / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny train-extractor run shared by the tests of this module (a few seconds)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from generative_bench.cli.main import config_dir
    from generative_bench.evaluation.domain.stage import train_extractor

    base = tmp_path_factory.mktemp("domain")
    root = _separable_folder(base / "folder", {"train": 16, "test": 8})
    overrides = ["stage=train_extractor", "data=folder", f"data.source.root={root}", f"data.shape=[3,{SIZE},{SIZE}]",
                 "extractor=cifar10_resnet", "extractor.name=tiny-colours", "extractor.file_stem=tiny",
                 "extractor.net.widths=[8,16]", "extractor.epochs=8", "extractor.warmup_epochs=1",
                 "extractor.train.batch_size=16", "extractor.train.optim.lr=0.2", "extractor.train.checkpoint_every=10",
                 "extractor.classifier.cpu_autocast=off", "extractor.eval_batch_size=10", "device=cpu"]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    GlobalHydra.instance().clear()
    run = base / "run"
    record = RunRecord.create(run, overrides=overrides, command="gbench " + " ".join(overrides))
    manifest = train_extractor(cfg, run, record, torch.device("cpu"), {})
    return {"run": run, "root": root, "manifest": manifest, "record": RunRecord.load(run)}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _copy(trained, dst: Path) -> tuple[Path, Path]:
    dst.mkdir(parents=True, exist_ok=True)
    w, m = dst / "tiny.pt", dst / "tiny.json"
    shutil.copy(trained["run"] / "tiny.pt", w)
    shutil.copy(trained["run"] / "tiny.json", m)
    return w, m


def test_stage_writes_weights_and_manifest_with_correct_sha256(trained):
    run, manifest = trained["run"], trained["manifest"]
    weights = run / "tiny.pt"
    on_disk = json.loads((run / "tiny.json").read_text())
    assert on_disk == json.loads(json.dumps(manifest))
    assert on_disk["weights_sha256"] == _sha(weights) and on_disk["weights_bytes"] == weights.stat().st_size
    state = torch.load(weights, map_location="cpu", weights_only=True)
    assert state["head.weight"].dtype == torch.float16  # stored half precision
    assert on_disk["class_names"] == list(CLASSES) and on_disk["num_classes"] == 3 and on_disk["feature_dim"] == 16
    assert on_disk["training"]["split"] == "train" and on_disk["training"]["examples"] == 48
    assert on_disk["training"]["steps"] == 8 * (48 // 16)
    assert on_disk["evaluation"]["split"] == "test" and on_disk["evaluation"]["examples"] == 24
    assert on_disk["evaluation"]["accuracy"] >= 0.9  # the colours are trivially separable
    assert "gbench train-extractor " in on_disk["command"] and "extractor=cifar10_resnet" in on_disk["command"]
    assert "stage=" not in on_disk["command"]
    rec = trained["record"].data
    assert rec["extractor"]["weights_sha256"] == _sha(weights) and rec["train"]["steps"] == 24
    assert (run / "checkpoints" / "last.pt").is_file() and (run / "train_log.csv").is_file()


def test_domain_features_load_extract_and_describe(trained):
    from generative_bench.data.loading import load_split
    from generative_bench.evaluation.domain.extractor import DomainFeatures

    ext = DomainFeatures(weights=trained["run"] / "tiny.pt", batch_size=7)
    test = load_split({"name": "folder", "source": {"_target_": "generative_bench.data.images.ImageFolderImages",
                                                   "root": str(trained["root"])}}, "test")
    feats = ext.extract((test.x[i:i + 10] for i in range(0, len(test.x), 10)), total=len(test.x), progress=False)
    assert feats["pool"].shape == (24, 16) and feats["logits"].shape == (24, 3)
    assert feats["pool"].dtype == np.float32 and feats["logits"].dtype == np.float32
    # the extractor's logits are exactly those the stage scored: same accuracy as the manifest
    acc = float((feats["logits"].argmax(1) == test.labels).mean())
    assert acc == pytest.approx(trained["manifest"]["evaluation"]["accuracy"])
    d = ext.describe()
    assert d["name"] == "tiny-colours" and d["kind"] == "domain" and d["metric_prefix"] == "FD_tiny-colours"
    assert d["weights_sha256"] == _sha(trained["run"] / "tiny.pt")
    assert d["dims"] == {"pool": 16, "logits": 3} and d["comparable"] is False
    assert d["metric_names"]["fid"] == "FD_tiny-colours" and "FID" not in json.dumps(d["metric_names"])
    assert d["training"]["dataset"] == "folder" and d["test_accuracy"] == trained["manifest"]["evaluation"]["accuracy"]
    # batching does not change features
    again = ext.extract([test.x], total=len(test.x), progress=False)
    np.testing.assert_allclose(again["pool"], feats["pool"], rtol=1e-5, atol=1e-5)


def test_wrong_sha256_or_mismatched_manifest_is_refused(trained, tmp_path):
    from generative_bench.evaluation.domain.extractor import DomainFeatures

    w, m = _copy(trained, tmp_path / "a")
    with pytest.raises(InputError, match="expected 0{64}"):
        DomainFeatures(weights=w, sha256="0" * 64)
    w.write_bytes(w.read_bytes() + b"\0")  # modified weights: sha256 differs from the manifest's
    with pytest.raises(InputError, match="do not belong together"):
        DomainFeatures(weights=w)
    w, m = _copy(trained, tmp_path / "b")
    bad = json.loads(m.read_text())
    bad["feature_dim"] = 32
    m.write_text(json.dumps(bad))
    with pytest.raises(InputError, match="feature_dim=32"):
        DomainFeatures(weights=w)
    bad = json.loads((trained["run"] / "tiny.json").read_text())
    bad["architecture"]["kwargs"]["widths"] = [8, 32]
    bad["feature_dim"] = 32
    m.write_text(json.dumps(bad))
    with pytest.raises(InputError, match="do not fit the manifest's architecture"):
        DomainFeatures(weights=w)
    bad["architecture"]["class"] = "os.system"
    m.write_text(json.dumps(bad))
    with pytest.raises(InputError, match="is not a net of"):
        DomainFeatures(weights=w)
    m.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(InputError, match="not a domain extractor manifest"):
        DomainFeatures(weights=w)
    m.unlink()
    with pytest.raises(InputError, match="manifest .* not found"):
        DomainFeatures(weights=w)


def test_extract_rejects_wrong_image_size_and_dtype(trained):
    from generative_bench.evaluation.domain.extractor import DomainFeatures

    ext = DomainFeatures(weights=trained["run"] / "tiny.pt")
    with pytest.raises(InputError, match=r"trained on \[3, 16, 16\] images but got \[3, 32, 32\]"):
        ext.extract([torch.zeros(2, 3, 32, 32, dtype=torch.uint8)], total=2, progress=False)
    with pytest.raises(InputError, match="uint8"):
        ext.extract([torch.zeros(2, 3, SIZE, SIZE)], total=2, progress=False)


def test_rerunning_the_stage_resumes_from_the_finished_checkpoint(trained, tmp_path):
    """The run folder's checkpoint is the trainer's: a rerun resumes (no new steps) and rewrites the same weights."""
    from generative_bench.evaluation.domain.stage import train_extractor

    run = tmp_path / "rerun"
    shutil.copytree(trained["run"], run)
    cfg = trained["record"].data  # noqa: F841 (the record keeps the overrides)
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from generative_bench.cli.main import config_dir

    overrides = trained["record"].data["overrides"]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    GlobalHydra.instance().clear()
    manifest = train_extractor(cfg, run, RunRecord.create(run, overrides=overrides), torch.device("cpu"), {})
    assert RunRecord.load(run).data["train"]["resumed_from_step"] == 24
    assert manifest["weights_sha256"] == trained["manifest"]["weights_sha256"]
