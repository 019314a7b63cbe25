"""Features container and the FeatureExtractor surface: streaming, bad input, random-init labels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from generative_bench.errors import InputError
from generative_bench.evaluation.features import RANDOM_INIT_WARNING, Features, InceptionFeatures


@pytest.fixture(scope="module")
def ext():
    return InceptionFeatures(pretrained=False, seed=0, batch_size=2)  # 3 images: a full + a partial batch


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (3, 3, 16, 16), generator=g, dtype=torch.uint8)


@pytest.fixture(scope="module")
def feats(ext, images):
    out = ext.extract_tensor(images, batch_size=3)  # one forward pass of 3
    assert ext.batch_size == 2  # the per-call size does not stick
    return out


# ----------------------------------------------------------------------------- Features
def _toy(n=4, seed=0):
    r = np.random.default_rng(seed)
    return Features({"pool": r.normal(size=(n, 6)), "logits": r.normal(size=(n, 3))}, meta={"name": "toy"})


def test_features_container_basics():
    f = _toy()
    assert len(f) == 4 and set(f) == {"pool", "logits"} and "pool" in f and "spatial" not in f
    assert f["pool"].dtype == np.float32 and f.dims == {"pool": 6, "logits": 3}
    assert Features(pool=np.zeros((2, 3))).dims == {"pool": 3}  # keyword form
    with pytest.raises(KeyError, match="spatial"):
        f["spatial"]
    with pytest.raises(InputError, match="rows"):
        Features({"pool": np.zeros((3, 2)), "logits": np.zeros((4, 2))})
    with pytest.raises(InputError, match="2-D"):
        Features({"pool": np.zeros(3)})


def test_features_concat_and_npz_roundtrip(tmp_path):
    a, b = _toy(3, 0), _toy(2, 1)
    c = Features.concat([a, b])
    assert len(c) == 5 and np.array_equal(c["pool"][3:], b["pool"])
    with pytest.raises(InputError, match="keys"):
        Features.concat([a, Features(pool=np.zeros((1, 6)))])
    path = c.save(tmp_path / "f.npz")
    with np.load(path, allow_pickle=False) as z:  # no object arrays inside
        assert json.loads(str(z["__meta__"]))["name"] == "toy"
    back = Features.load(path)
    assert back.meta == {"name": "toy"} and all(np.array_equal(back[k], c[k]) for k in c)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="bad.npz"):
        Features.load(tmp_path / "bad.npz")


# ----------------------------------------------------------------------------- extraction
def test_extract_shapes_and_description(ext, feats):
    assert len(feats) == 3
    assert feats.dims == {"pool": 2048, "spatial": 2023, "logits": 1008}
    assert all(np.isfinite(feats[k]).all() for k in feats)
    assert feats.meta["weights_sha256"] == ext.describe()["weights_sha256"]


def test_pretrained_false_is_labelled_not_comparable(ext):
    d = ext.describe()
    assert d["pretrained"] is False and d["comparable"] is False
    assert d["warning"] == RANDOM_INIT_WARNING == "random-init Inception: NOT comparable to published figures"
    assert "random-init" in d["weights"] and len(d["weights_sha256"]) == 64
    assert d["dims"] == {"pool": 2048, "spatial": 2023, "logits": 1008}


def test_streamed_batches_equal_one_tensor(ext, images, feats):
    """Other batch boundaries (1 + 2 instead of 3), a numpy batch, no ``total``: same rows."""
    streamed = ext.extract(iter([images[:1].numpy(), images[1:]]))
    for k in feats:
        np.testing.assert_allclose(streamed[k], feats[k], rtol=1e-5, atol=1e-6)


def test_total_mismatch_and_empty_input(ext, images):
    with pytest.raises(InputError, match="total=3"):
        ext.extract([images[:2]], total=3)
    with pytest.raises(InputError, match="no images"):
        ext.extract([])


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.rand(2, 3, 8, 8), "uint8.*to_uint8"),
        (torch.full((2, 3, 8, 8), float("nan")), "NaN"),
        (torch.zeros(2, 1, 8, 8, dtype=torch.uint8), "3 channels"),
        (torch.zeros(2, 8, 8, 3, dtype=torch.uint8), "NHWC"),
        (torch.zeros(3, 8, 8, dtype=torch.uint8), "4-D"),
    ],
    ids=["float", "nan", "one-channel", "nhwc", "3d"],
)
def test_bad_input_is_a_clear_error(ext, bad, match):
    with pytest.raises(InputError, match=match):
        ext.extract_tensor(bad)
    with pytest.raises(InputError, match=match):
        ext.extract([bad])


def test_bad_batch_size():
    with pytest.raises(InputError, match="batch_size"):
        InceptionFeatures(pretrained=False, batch_size=0)
