"""FID Inception-v3 against torch-fidelity 0.4's extractor: same weights, same uint8 images.

Random weights stand in for pt_inception-2015-12-05 (not downloadable here); the BatchNorm
statistics are drawn away from identity so that folding them into the convs is really tested.
Tolerance: 1e-4 relative (observed ~1e-6; the TF-1 resize is bit-exact).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generative_bench.evaluation import inception as inc
from generative_bench.evaluation import weights as wts
from generative_bench.evaluation.features import InceptionFeatures

tf_inception = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")
tf_interp = pytest.importorskip("torch_fidelity.interpolate_compat_tensorflow")

SEED = 3
RTOL = 1e-4


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    net = inc.init_random_(inc.FIDInceptionV3(), seed=SEED)
    path = tmp_path_factory.mktemp("w") / "random_inception.pth"
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (3, 3, 32, 32), generator=g, dtype=torch.uint8)
    x[0] = 0  # a flat image and a saturated one exercise the extremes of (x - 128) / 128
    x[1] = 255
    return x


@pytest.fixture(scope="module")
def reference(weights_file, images):
    """torch-fidelity's pool_3 / (un)biased logits, and its Mixed_6d output via a hook."""
    ext = tf_inception.FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048", "logits_unbiased", "logits"], feature_extractor_weights_path=str(weights_file)
    )
    captured = {}
    ext.Mixed_6d.register_forward_hook(lambda m, i, o: captured.__setitem__("mixed_6d", o))
    with torch.inference_mode():
        pool, logits, biased = ext(images)
    m6d = captured["mixed_6d"]
    spatial = m6d[:, :7].permute(0, 2, 3, 1).reshape(len(images), -1)  # TF (h, w, c) order
    return {"pool": pool.numpy(), "logits": logits.numpy(), "biased": biased.numpy(), "spatial": spatial.numpy(),
            "state": ext.state_dict()}


@pytest.fixture(scope="module")
def ours():
    return InceptionFeatures(pretrained=False, seed=SEED, batch_size=2)  # the weights of weights_file


@pytest.mark.parametrize("size", [(32, 32), (17, 45), (299, 299), (320, 301), (1, 1)])
def test_tf1_resize_is_bit_exact_with_torch_fidelity(size):
    g = torch.Generator().manual_seed(size[0] * 1000 + size[1])
    x = torch.randint(0, 256, (2, 3, *size), generator=g, dtype=torch.uint8)
    ref = tf_interp.interpolate_bilinear_2d_like_tensorflow1x(x.float(), size=(299, 299), align_corners=False)
    ours = inc.tf1_resize_bilinear(x)
    assert ours.shape == (2, 3, 299, 299) and ours.dtype == torch.float32
    assert ours.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(ours, ref)


def test_resize_is_not_pytorch_default_bilinear():
    """TF-1 resize (no half-pixel centres) differs from F.interpolate(align_corners=False)."""
    x = torch.arange(32 * 32, dtype=torch.float32).reshape(1, 1, 32, 32).expand(1, 3, 32, 32)
    torch_default = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    assert (inc.tf1_resize_bilinear(x) - torch_default).abs().max() > 1.0


def test_state_dict_layout_matches_torch_fidelity(reference):
    ours = inc.FIDInceptionV3().state_dict()
    theirs = reference["state"]
    assert len(ours) == len(theirs) == 566
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}
    inc.FIDInceptionV3().load_state_dict(theirs, strict=True)
    assert ours["fc.weight"].shape == (1008, 2048)
    assert all(m.eps == 1e-3 for m in inc.FIDInceptionV3().modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_unfused_network_matches_torch_fidelity(weights_file, images, reference):
    net = inc.FIDInceptionV3()
    net.load_state_dict(torch.load(weights_file, weights_only=True), strict=True)
    with torch.inference_mode():
        out = net.eval()(images)
    for key in ("pool", "logits", "spatial"):
        assert out[key].shape == reference[key].shape
        assert _rel(out[key], reference[key]) < RTOL, key


def test_extractor_matches_torch_fidelity(ours, images, reference, weights_file):
    """The public path: BN folded, channels_last, oneDNN fused conv+ReLU."""
    feats = ours.extract_tensor(images)  # batch_size 2: a full and a partial batch
    assert feats.dims == {"pool": 2048, "spatial": 2023, "logits": 1008}
    for key in ("pool", "logits", "spatial"):
        assert feats[key].dtype == np.float32
        assert _rel(feats[key], reference[key]) < RTOL, key
    # the comparison means something: features are neither dead nor identical across images
    pool = reference["pool"]
    assert (pool > 0).mean() > 0.2 and np.isfinite(pool).all()
    assert pool.std(0).mean() > 1e-3 * np.abs(pool).mean()
    assert np.abs(reference["logits"]).std() > 0.1
    # biased logits (torch-fidelity 'logits') = ours + fc.bias: one matmul serves both
    bias = torch.load(weights_file, weights_only=True)["fc.bias"].numpy()
    assert _rel(feats["logits"] + bias, reference["biased"]) < RTOL


def test_any_input_size_and_channels_first_path(ours):
    x = torch.randint(0, 256, (1, 3, 20, 28), dtype=torch.uint8)
    a = ours.extract_tensor(x)
    b = InceptionFeatures(pretrained=False, seed=SEED, channels_last=False).extract_tensor(x)
    for key in a:
        assert _rel(a[key], b[key]) < RTOL


def test_random_init_is_seeded_and_hashed(ours, weights_file):
    same = torch.load(weights_file, weights_only=True)  # init_random_(seed=SEED), made separately
    other = inc.init_random_(inc.FIDInceptionV3(), seed=SEED + 1).state_dict()
    assert wts.state_dict_sha256(same) == ours.state_sha256 == ours.describe()["weights_sha256"]
    assert wts.state_dict_sha256(other) != ours.state_sha256
    assert not torch.equal(same["fc.weight"], other["fc.weight"])


def test_flop_count_of_the_benchmark_is_inception_v3s():
    """experiments/bench_features.py counts 2 x 5.71 G multiply-adds per 299x299 image (torchvision's
    published Inception-v3 figure, whose convolutions are those of the FID network)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "experiments" / "bench_features.py"
    spec = importlib.util.spec_from_file_location("bench_features", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    flops = bench.network_flops_per_image(inc.FIDInceptionV3().eval())
    assert abs(flops / 2 / 5.71e9 - 1) < 0.01
    assert bench.matmul_peak_gflops(repeats=1, size=256) > 0
