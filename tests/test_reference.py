"""Reference cache (content-addressed, atomic, checksummed) and foreign .npz reference files."""

import dataclasses
import zipfile

import numpy as np
import pytest

from generative_bench.errors import InputError
from generative_bench.evaluation.metrics import gaussian_stats
from generative_bench.evaluation.reference import (
    CorruptReferenceError,
    ReferenceCache,
    default_cache_root,
    load_reference_npz,
    save_stats_npz,
)

KEY = {
    "dataset": "cifar10",
    "variant": "jpeg",
    "split": "train",
    "subset": 100,
    "subset_seed": 0,
    "count": 100,
    "extractor": {"name": "inception-v3-tf", "weights_sha256": "ab" * 32},
}


def _features(n=100, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "pool": rng.normal(size=(n, 16)).astype(np.float32),
        "spatial": rng.normal(size=(n, 12)).astype(np.float32),
        "logits": rng.normal(size=(n, 10)).astype(np.float32),
    }


class Counter:
    def __init__(self, value):
        self.calls, self.value = 0, value

    def __call__(self):
        self.calls += 1
        return self.value


def test_get_or_compute_roundtrip_and_cache_hit(tmp_path):
    cache = ReferenceCache(tmp_path)
    feats = _features()
    compute = Counter(feats)
    first = cache.get_or_compute(KEY, compute)
    second = cache.get_or_compute(dict(reversed(list(KEY.items()))), compute)  # key order is irrelevant
    assert compute.calls == 1
    for name in ("pool", "spatial", "logits"):
        np.testing.assert_array_equal(second[name], feats[name])
        assert second[name].dtype == np.float32
    mu, sigma = gaussian_stats(feats["pool"])
    np.testing.assert_allclose(second["mu"], mu, rtol=0, atol=0)
    np.testing.assert_allclose(second["sigma"], sigma, rtol=0, atol=0)
    assert second["mu_s"].shape == (12,) and second["sigma_s"].shape == (12, 12)
    assert set(first) == set(second)

    folder = cache.path_for(KEY)
    assert folder.parent == tmp_path and folder.name.startswith("cifar10-train-")
    assert sorted(p.name for p in folder.iterdir()) == ["features.npz", "manifest.json", "stats.npz"]
    with np.load(folder / "stats.npz", allow_pickle=False) as z:  # what pytorch-fid reads
        np.testing.assert_array_equal(z["mu"], mu)
        np.testing.assert_array_equal(z["sigma"], sigma)


def test_every_key_field_changes_the_folder(tmp_path):
    cache = ReferenceCache(tmp_path)
    base = cache.path_for(KEY)
    for field, value in [("variant", "official"), ("split", "test"), ("subset", 200), ("subset_seed", 1),
                         ("count", 99), ("extractor", {**KEY["extractor"], "weights_sha256": "cd" * 32})]:
        assert cache.path_for({**KEY, field: value}) != base, field
    assert ReferenceCache.key_hash(KEY) == ReferenceCache.key_hash({**KEY, "subset": 100})


def test_key_validation(tmp_path):
    cache = ReferenceCache(tmp_path)
    no_hash = {**KEY, "extractor": {"name": "inception-v3-tf"}}
    with pytest.raises(InputError, match="sha256"):
        cache.path_for(no_hash)
    with pytest.raises(InputError, match="dataset"):
        cache.path_for({k: v for k, v in KEY.items() if k != "dataset"})
    with pytest.raises(InputError, match="JSON values"):
        cache.path_for({**KEY, "subset": object()})


def test_count_and_feature_checks_before_writing(tmp_path):
    cache = ReferenceCache(tmp_path)
    with pytest.raises(InputError, match="100 examples"):
        cache.get_or_compute(KEY, lambda: _features(n=90))
    bad = _features()
    bad["pool"][5, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        cache.get_or_compute(KEY, lambda: bad)
    assert not cache.path_for(KEY).exists() or not (cache.path_for(KEY) / "manifest.json").exists()


def test_accepts_a_features_dataclass(tmp_path):
    @dataclasses.dataclass
    class Features:
        pool: np.ndarray
        spatial: np.ndarray
        logits: np.ndarray
        extractor: str = "x"

    out = ReferenceCache(tmp_path).get_or_compute(KEY, lambda: Features(**_features()))
    assert {"pool", "spatial", "logits", "mu", "sigma", "mu_s", "sigma_s"} == set(out)


def test_corrupt_entry_raises_on_get_and_is_recomputed(tmp_path):
    cache = ReferenceCache(tmp_path)
    cache.get_or_compute(KEY, lambda: _features())
    path = cache.path_for(KEY) / "features.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptReferenceError, match="checksum"):
        cache.get(KEY)
    compute = Counter(_features())
    with pytest.warns(UserWarning, match="recomputing"):
        cache.get_or_compute(KEY, compute)
    assert compute.calls == 1
    assert cache.get(KEY) is not None


def test_default_root_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("GBENCH_CACHE", str(tmp_path))
    assert default_cache_root() == tmp_path / "reference"
    assert ReferenceCache().root == tmp_path / "reference"


# ------------------------------------------------------------------ foreign npz files
def test_load_pytorch_fid_statistics(tmp_path):
    mu, sigma = gaussian_stats(_features()["pool"])
    path = save_stats_npz(tmp_path / "stats.npz", mu, sigma)
    out = load_reference_npz(path, expected_dim=16)
    assert set(out) == {"mu", "sigma"}
    np.testing.assert_array_equal(out["sigma"], sigma)
    with pytest.raises(InputError, match=r"mu \(16,\) and sigma \(16, 16\).*dimension 2048"):
        load_reference_npz(path, expected_dim=2048)


def test_load_guided_diffusion_reference_batch(tmp_path):
    feats = _features()
    mu, sigma = gaussian_stats(feats["pool"])
    mu_s, sigma_s = gaussian_stats(feats["spatial"])
    images = np.random.default_rng(0).integers(0, 256, size=(4, 8, 8, 3), dtype=np.uint8)
    path = tmp_path / "VIRTUAL_test.npz"
    np.savez(path, arr_0=images, mu=mu, sigma=sigma, mu_s=mu_s, sigma_s=sigma_s)
    out = load_reference_npz(path)
    assert set(out) == {"mu", "sigma", "mu_s", "sigma_s"}
    with_images = load_reference_npz(path, include_images=True)
    np.testing.assert_array_equal(with_images["images"], images)

    only_images = tmp_path / "images_only.npz"
    np.savez(only_images, arr_0=images)
    with pytest.raises(InputError, match="include_images=True and extract their features"):
        load_reference_npz(only_images)


def test_load_features_file_computes_stats(tmp_path):
    feats = _features()
    path = tmp_path / "feats.npz"
    np.savez(path, **feats)
    out = load_reference_npz(path)
    np.testing.assert_array_equal(out["mu"], gaussian_stats(feats["pool"]).mu)
    assert out["mu_s"].shape == (12,)


@pytest.mark.parametrize("kind", ["garbage", "truncated", "pickled", "shapes", "half-pair", "nan", "empty"])
def test_corrupt_or_mismatched_files_are_clear_errors(tmp_path, kind):
    path = tmp_path / "ref.npz"
    mu, sigma = np.zeros(4), np.eye(4)
    if kind == "garbage":
        path.write_bytes(b"definitely not a zip file")
    elif kind == "truncated":
        np.savez(path, mu=mu, sigma=sigma)
        path.write_bytes(path.read_bytes()[:200])
    elif kind == "pickled":
        np.savez(path, mu=np.array([{"a": 1}], dtype=object), sigma=sigma)
    elif kind == "shapes":
        np.savez(path, mu=mu, sigma=np.eye(3))
    elif kind == "half-pair":
        np.savez(path, mu=mu)
    elif kind == "nan":
        np.savez(path, mu=np.full(4, np.nan), sigma=sigma)
    elif kind == "empty":
        with zipfile.ZipFile(path, "w"):
            pass
    with pytest.raises(InputError, match=str(path.name)) as err:
        load_reference_npz(path)
    assert isinstance(err.value, InputError)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_reference_npz(tmp_path / "nope.npz")
