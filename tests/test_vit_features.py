"""DINOv2 / CLIP feature spaces (evaluation/vit.py, vit_features.py) and CMMD (metrics/cmmd.py).

The full-size networks are checked on the meta device (official parameter counts and key shapes);
features, loading and the harness record run on small networks of the same classes."""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pytest
import torch

from generative_bench.errors import InputError, WeightsUnavailableError
from generative_bench.evaluation import vit
from generative_bench.evaluation.metrics.cmmd import cmmd
from generative_bench.evaluation.vit_features import CLIPFeatures, DINOv2Features, resize_normalise
from tests.test_reference_files import _cfgs, folder  # noqa: F401  (the image-folder fixture)


def _tiny_dino():
    return vit.DinoViT(patch=14, width=32, depth=2, heads=4, pos_grid=37)


def _tiny_clip():
    return vit.CLIPVisionTransformer(image_size=32, patch=8, width=32, depth=2, heads=4, embed_dim=16)


class TinyDINOv2(DINOv2Features):
    image_size = 56  # a 4x4 patch grid: the 37x37 position embedding is interpolated
    build = staticmethod(_tiny_dino)


class TinyCLIP(CLIPFeatures):
    image_size = 32
    build = staticmethod(_tiny_clip)


def _images(n, seed=0, size=8):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, 3, size, size), dtype=np.uint8))


def test_full_size_networks_have_the_official_layout():
    with torch.device("meta"):
        d, c = vit.dinov2_vitl14(), vit.clip_vitb32()
    assert sum(p.numel() for p in d.parameters()) == 304_368_640  # dinov2_vitl14_pretrain.pth
    assert sum(p.numel() for p in c.parameters()) == 87_849_216   # CLIP ViT-B/32 image tower
    sd, sc = d.state_dict(), c.state_dict()
    assert sd["pos_embed"].shape == (1, 1370, 1024) and sd["blocks.23.ls2.gamma"].shape == (1024,)
    assert sd["blocks.0.attn.qkv.weight"].shape == (3072, 1024) and "mask_token" in sd
    assert sc["positional_embedding"].shape == (50, 768) and sc["proj"].shape == (768, 512)
    assert sc["transformer.resblocks.11.attn.in_proj_weight"].shape == (2304, 768) and "conv1.bias" not in sc


def test_random_init_features_are_deterministic_and_flagged():
    x = _images(6)
    with pytest.warns(UserWarning, match="NOT comparable"):
        a = TinyDINOv2(seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b, other = TinyDINOv2(seed=0), TinyDINOv2(seed=1)
    fa, fb = a.extract_tensor(x, batch_size=4)["pool"], b.extract_tensor(x, batch_size=6)["pool"]
    np.testing.assert_array_equal(fa, a.extract_tensor(x, batch_size=4)["pool"])
    np.testing.assert_allclose(fa, fb, rtol=0, atol=1e-5)  # other batch split, same weights
    assert fa.shape == (6, 32) and np.isfinite(fa).all() and np.abs(fa - fa[0]).max() > 1e-3
    assert np.abs(fa - other.extract_tensor(x)["pool"]).max() > 1e-3
    d = a.describe()
    assert d["comparable"] is False and d["pretrained"] is False and "NOT comparable" in d["warning"]
    assert d["weights_sha256"] == b.describe()["weights_sha256"] != other.describe()["weights_sha256"]
    assert d["metric_names"]["fid"] == "FD_DINOv2" and d["metric_names"]["kid_mean"] == "KD_DINOv2"
    assert d["kind"] == "domain" and d["architecture"] == "DinoViT"  # renamed metrics, no Inception display scales


def test_weights_are_verified_by_their_full_sha256(tmp_path):
    net = vit.init_random_(_tiny_clip(), seed=3)
    path = tmp_path / "clip.pt"
    torch.save({**{f"visual.{k}": v for k, v in net.state_dict().items()}, "text_projection": torch.zeros(2)}, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    ext = TinyCLIP(weights=path, sha256=digest, pretrained=True)
    d = ext.describe()
    assert d["comparable"] is True and d["warning"] is None and d["weights_sha256"] == digest
    emb = ext.extract_tensor(_images(5, size=32))["clip"]
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    with torch.no_grad():
        ref = torch.nn.functional.normalize(net(resize_normalise(_images(5, size=32), 32, ext.mean, ext.std)), dim=-1)
    np.testing.assert_allclose(emb, ref.numpy(), atol=1e-5)
    with pytest.raises(WeightsUnavailableError, match="has sha256"):
        TinyCLIP(weights=path, sha256="0" * 64, pretrained=True)
    with pytest.raises(InputError, match="without their sha256"):
        TinyCLIP(weights=path, pretrained=True)
    with pytest.raises(WeightsUnavailableError, match="no CLIP weights"):
        TinyCLIP(pretrained=True)
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "bad.pt")
    bad = hashlib.sha256((tmp_path / "bad.pt").read_bytes()).hexdigest()
    with pytest.raises(WeightsUnavailableError, match="does not fit CLIP"):
        TinyCLIP(weights=tmp_path / "bad.pt", sha256=bad, pretrained=True)


def test_cmmd_is_the_papers_rbf_mmd():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 5))
    y = rng.normal(size=(30, 5)) + 0.5
    k = lambda a, b: np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / 200.0).mean()  # noqa: E731  sigma=10
    assert cmmd(x, y) == pytest.approx(1000 * (k(x, x) + k(y, y) - 2 * k(x, y)), rel=1e-12)
    assert cmmd(x, x) == pytest.approx(0.0, abs=1e-9) and cmmd(x, y) > cmmd(x, x[:20])
    with pytest.raises(InputError):
        cmmd(x, y[:, :4])


def test_harness_records_cmmd_and_fd_dinov2_names(folder, tmp_path):  # noqa: F811
    from generative_bench.evaluation.domain.naming import metric_label
    from generative_bench.evaluation.harness import Evaluator

    samples = _images(40, seed=5).permute(0, 2, 3, 1).numpy()
    np.savez(tmp_path / "s.npz", arr_0=samples)
    from generative_bench.evaluation.sample_sets import NpzSampleSet

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data, ev = _cfgs(folder, tmp_path, num_samples=40, default_metrics=["cmmd"])
        ev.features = {"_target_": "tests.test_vit_features.TinyCLIP", "pretrained": False, "batch_size": 64}
        rec = Evaluator(data, ev, cache_dir=tmp_path / "c1", seed=0).evaluate(NpzSampleSet(str(tmp_path / "s.npz")), {})
        data, ev = _cfgs(folder, tmp_path, num_samples=40, metrics=["fid", "kid"], kid_subset_size=20)
        ev.features = {"_target_": "tests.test_vit_features.TinyDINOv2", "pretrained": False, "batch_size": 64}
        dino = Evaluator(data, ev, cache_dir=tmp_path / "c2", seed=0).evaluate(NpzSampleSet(str(tmp_path / "s.npz")),
                                                                              {})
    assert rec["metrics"]["cmmd"] > 0 and rec["protocol"]["metric_settings"]["cmmd"]["sigma"] == 10.0
    assert rec["comparable"] is False and any("NOT comparable" in w for w in rec["warnings"])
    feats = dino["protocol"]["features"]
    assert metric_label(feats, "fid") == "FD_DINOv2" and dino["metrics"]["fid"] > 0
    assert dino["comparable"] is False and feats["weights"] == "random-init(seed=0)"


def test_dinov2_position_grid_follows_the_hub_interpolation():
    net = vit.init_random_(_tiny_dino(), seed=0)
    assert torch.equal(net.position_embedding(37, 37), net.pos_embed)
    pos = net.position_embedding(16, 16)  # 224 / 14: scale factor (16 + 0.1) / 37, bicubic, no antialias
    grid = net.pos_embed[:, 1:].reshape(1, 37, 37, -1).permute(0, 3, 1, 2)
    want = torch.nn.functional.interpolate(grid, scale_factor=(16.1 / 37, 16.1 / 37), mode="bicubic")
    assert pos.shape == (1, 257, 32) and torch.equal(pos[:, 0], net.pos_embed[:, 0])
    torch.testing.assert_close(pos[:, 1:], want.permute(0, 2, 3, 1).reshape(1, 256, -1))


def test_feature_configs_bring_their_metric_lists(compose):
    from generative_bench.evaluation import metric_selection
    from generative_bench.validation import validate

    cfg = compose(["eval/features=clip_vitb32", "model=gaussian", "data=cifar10_jpeg"])
    assert metric_selection.requested(cfg.eval) == (["cmmd"], True)
    validate(cfg)
    validate(compose(["eval/features=clip_vitb32", "eval.features.resize=clean_bicubic", "model=gaussian",
                      "data=cifar10_jpeg"]))
    with pytest.raises(InputError, match="eval.features.resize='tf1_bilinear': must be one of"):
        validate(compose(["eval/features=clip_vitb32", "eval.features.resize=tf1_bilinear", "model=gaussian",
                          "data=cifar10_jpeg"]))
    with pytest.raises(InputError, match="eval.features.resize='torch_bicubic'"):
        validate(compose(["eval.features.resize=torch_bicubic", "model=gaussian", "data=cifar10_jpeg"]))
    cfg = compose(["eval/features=dinov2_vitl14", "eval.metrics=[fid,is]", "model=gaussian", "data=cifar10_jpeg"])
    with pytest.raises(InputError, match="metric 'is' needs 'logits' features"):
        validate(cfg)
    chosen, notes = metric_selection.select(compose(["eval/features=dinov2_vitl14"]).eval, set(DINOv2Features.FEATURES))
    assert "fid" in [m.name for m in chosen] and "sfid" in notes[0] and "cmmd" not in [m.name for m in chosen]


def test_resize_modes_follow_the_reference_implementations():
    x = _images(3, seed=2, size=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dino, clip = TinyDINOv2(), TinyCLIP()
        torch_dino = TinyDINOv2(resize="torch_bicubic")
    assert dino.describe()["resize"] == "clean_bicubic" and clip.describe()["resize"] == "torch_bicubic"
    a, b = dino.extract_tensor(x)["pool"], torch_dino.extract_tensor(x)["pool"]
    assert np.abs(a - b).max() > 1e-4  # the resize is part of the feature space
    assert dino.describe()["weights_sha256"] == torch_dino.describe()["weights_sha256"]
    big = resize_normalise(x, 32, (0.0,) * 3, (1.0,) * 3, "clean_bicubic")
    assert big.shape == (3, 3, 32, 32) and 0.0 <= float(big.min()) and float(big.max()) <= 1.0
    with pytest.raises(InputError, match="not a resize"):
        TinyCLIP(resize="tf1_bilinear", pretrained=False)
