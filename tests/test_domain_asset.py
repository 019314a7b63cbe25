"""The shipped CIFAR-10 domain extractor: loads, is described honestly, and its accuracy holds up."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from generative_bench.evaluation.domain.extractor import ASSETS_DIR, DomainFeatures
from generative_bench.io import read_json
from tests.conftest import CIFAR_JPEG, needs_cifar

WEIGHTS = ASSETS_DIR / "cifar10_resnet.pt"
MANIFEST = ASSETS_DIR / "cifar10_resnet.json"
#: test-split accuracy measured by `gbench train-extractor` for the shipped weights (flip TTA)
MEASURED_ACCURACY = 0.9042


@pytest.fixture(scope="module")
def shipped():
    return DomainFeatures(asset="cifar10_resnet", batch_size=250)


def test_shipped_files_are_small_and_belong_together():
    manifest = read_json(MANIFEST)
    assert WEIGHTS.stat().st_size < 5 * 2**20
    assert hashlib.sha256(WEIGHTS.read_bytes()).hexdigest() == manifest["weights_sha256"]
    assert manifest["training"]["dataset"] == "cifar10-jpeg" and manifest["training"]["split"] == "train"
    assert manifest["training"]["examples"] == 50000 and manifest["training"]["subset"] is None
    assert manifest["evaluation"]["split"] == "test" and manifest["evaluation"]["examples"] == 10000
    assert manifest["evaluation"]["accuracy"] >= MEASURED_ACCURACY
    assert manifest["command"].startswith(("gbench train-extractor", "OMP_NUM_THREADS=1 gbench train-extractor"))
    assert "data=cifar10_jpeg" in manifest["command"] and "extractor=cifar10_resnet" in manifest["command"]


def test_shipped_extractor_describes_itself(shipped):
    d = shipped.describe()
    assert d["name"] == "cifar10-resnet" and d["metric_prefix"] == "FD_cifar10-resnet"
    assert d["dims"] == {"pool": 256, "logits": 10} and len(d["class_names"]) == 10
    assert d["weights_sha256"] == read_json(MANIFEST)["weights_sha256"]
    assert d["comparable"] is False and "not FID" in d["warning"]


def test_eval_features_config_selects_the_shipped_extractor(compose):
    from generative_bench.evaluation.harness import build_extractor

    cfg = compose(["eval/features=cifar10_resnet", "data=cifar10_jpeg"])
    ext = build_extractor(cfg.eval.features, "cpu")
    assert isinstance(ext, DomainFeatures) and ext.name == "cifar10-resnet"
    if cfg.eval.features.sha256:  # pinned in the config: the shipped file must match it
        assert ext.weights_sha256 == cfg.eval.features.sha256


@needs_cifar
def test_accuracy_on_a_real_test_subset_matches_the_manifest(shipped):
    """500 class-balanced real test images: accuracy within 3.5 binomial std of the manifest's figure."""
    from generative_bench.data.loading import load_split

    data = {"name": "cifar10-jpeg", "source": {"_target_": "generative_bench.data.images.ImageFolderImages",
                                               "root": str(CIFAR_JPEG)}}
    test = load_split(data, "test", subset=500)
    feats = shipped.extract([test.x], total=len(test.x), progress=False)
    acc = float((feats["logits"].argmax(1) == test.labels).mean())
    expected = read_json(MANIFEST)["evaluation"]["accuracy"]
    tol = 3.5 * np.sqrt(expected * (1 - expected) / len(test.x))
    assert abs(acc - expected) <= tol, (acc, expected, tol)
    assert feats["pool"].shape == (500, 256) and np.isfinite(feats["pool"]).all()
