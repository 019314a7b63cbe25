"""Domain extractors: metric names (FD_<name>, never FID), the train-extractor verb and configs."""

from __future__ import annotations

import pytest
import torch

from generative_bench.evaluation.domain.naming import metric_label, metric_names, relabel

DOMAIN = {"name": "cifar10-resnet", "kind": "domain"}
HARNESS_KEYS = ["fid", "fid_inf", "sfid", "is_mean", "is_std", "is_inf", "kid_mean", "kid_std",
                "precision", "recall", "density", "coverage"]


def test_domain_metrics_are_named_after_the_extractor_never_fid():
    labels = {k: metric_label(DOMAIN, k) for k in HARNESS_KEYS}
    assert labels["fid"] == "FD_cifar10-resnet" and labels["kid_mean"] == "KD_cifar10-resnet"
    assert labels["is_mean"] == "CS_cifar10-resnet" and labels["recall"] == "recall_cifar10-resnet"
    assert len(set(labels.values())) == len(HARNESS_KEYS)
    assert not any(v.lower().startswith(("fid", "kid", "is_", "sfid")) for v in labels.values())
    names = metric_names("cifar10-resnet")
    assert set(HARNESS_KEYS) <= set(names) and names == {k: metric_label(DOMAIN, k) for k in names}


def test_inception_names_unchanged_and_explicit_names_win():
    inception = {"name": "inception-v3-tf", "weights_sha256": "ab" * 32}
    assert [metric_label(inception, k) for k in HARNESS_KEYS] == HARNESS_KEYS
    assert metric_label({**DOMAIN, "metric_names": {"fid": "FD_custom"}}, "fid") == "FD_custom"
    assert relabel({"fid": 1.0, "recall": 0.5}, DOMAIN) == {"FD_cifar10-resnet": 1.0, "recall_cifar10-resnet": 0.5}


def test_train_extractor_verb_and_config(compose):
    from generative_bench.cli.main import hydra_args
    from generative_bench.pipeline import STAGES

    args = hydra_args(["train-extractor", "data=cifar10_jpeg", "extractor=cifar10_resnet"])
    assert args[:2] == ["stage=train_extractor", "hydra.mode=RUN"] and "train_extractor" in STAGES
    cfg = compose(["stage=train_extractor", "data=cifar10_jpeg", "extractor=cifar10_resnet"])
    assert cfg.extractor.name == "cifar10-resnet" and cfg.extractor.train.optim.nesterov is True
    assert compose([]).get("extractor") is None  # not selected unless asked for


def test_missing_extractor_config_is_a_clear_error(compose, tmp_path):
    from generative_bench.errors import InputError
    from generative_bench.evaluation.domain.stage import train_extractor
    from generative_bench.records import RunRecord

    cfg = compose(["stage=train_extractor", "data=cifar10_jpeg"])
    with pytest.raises(InputError, match="extractor=cifar10_resnet"):
        train_extractor(cfg, tmp_path, RunRecord.create(tmp_path), torch.device("cpu"), {})


def test_random_translate_uses_the_global_rng_and_keeps_content():
    from generative_bench.evaluation.domain.classifier import random_translate

    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    torch.manual_seed(5)
    a = random_translate(x, 2)
    torch.manual_seed(5)
    b = random_translate(x, 2)
    assert torch.equal(a, b) and a.shape == x.shape
    assert torch.equal(random_translate(x, 0), x)
    # every output row is a contiguous window of a reflect-padded input row
    pad = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    for i in range(2):
        hits = [(dy, dx) for dy in range(5) for dx in range(5) if torch.equal(pad[i, :, dy:dy + 8, dx:dx + 8], a[i])]
        assert len(hits) == 1


def test_whitening_init_whitens_patches():
    from generative_bench.evaluation.domain.nets import CompactResNet

    torch.manual_seed(0)
    net = CompactResNet(num_classes=3, widths=[8, 16])
    mix = torch.tensor([[1.0, 0.5, 0.2], [0.0, 1.0, 0.3], [0.0, 0.0, 0.2]])
    x = torch.einsum("ij,njhw->nihw", mix, torch.randn(64, 3, 16, 16)).clamp(-1, 1)
    net.prepare(x)
    assert not net.stem.weight.requires_grad and net.stem.bias.requires_grad
    out = torch.nn.functional.conv2d(x, net.stem.weight[:12])  # the 12 positive-sign filters
    cov = torch.cov(out.permute(1, 0, 2, 3).reshape(12, -1))
    assert torch.allclose(cov, torch.eye(12), atol=0.05)
    pool, logits = net.features(x[:4])
    assert pool.shape == (4, 16) and logits.shape == (4, 3)
