"""Inception weights: lookup order, download with checksum, clear errors offline or on a bad file.

A real ``pt_inception-2015-12-05`` file cannot be made here, so the tests that need an accepted
file patch the expected full sha256 to that of a saved random state dict.
"""

from __future__ import annotations

import hashlib
import warnings

import pytest
import torch

from generative_bench.errors import WeightsUnavailableError
from generative_bench.evaluation import inception as inc
from generative_bench.evaluation import weights as wts
from generative_bench.evaluation.features import RANDOM_INIT_WARNING, InceptionFeatures


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Empty cache and torch hub, no env override: nothing outside tmp_path is found."""
    monkeypatch.setenv(wts.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(wts.ENV_WEIGHTS, raising=False)
    monkeypatch.delenv(wts.ENV_OFFLINE, raising=False)


@pytest.fixture(scope="module")
def state_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("sd") / "some_inception.pth"
    torch.save(inc.init_random_(inc.FIDInceptionV3(), seed=5).state_dict(), path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_offline_without_weights_says_how_to_provide_them(monkeypatch):
    monkeypatch.setenv(wts.ENV_OFFLINE, "1")
    with pytest.raises(WeightsUnavailableError) as e:
        InceptionFeatures()
    msg = str(e.value)
    for needed in (wts.ENV_WEIGHTS, wts.URLS[0], wts.FILENAME, str(wts.cache_dir()), "pretrained=False", "weights="):
        assert needed in msg


def test_failed_download_is_reported(monkeypatch):
    monkeypatch.setattr(wts, "URLS", ("http://127.0.0.1:9/pt_inception.pth",))
    with pytest.raises(WeightsUnavailableError, match="could not download.*127.0.0.1"):
        wts.resolve_inception_weights()
    assert not any(wts.cache_dir().glob("*")) if wts.cache_dir().exists() else True  # no partial file


def test_wrong_sha256_is_rejected(tmp_path, monkeypatch):
    bad = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    bad.write_bytes(b"definitely not the weights")
    with pytest.raises(WeightsUnavailableError, match=r"sha256 [0-9a-f]{64}.*6726825d.*corrupt"):
        InceptionFeatures(weights=bad)
    monkeypatch.setenv(wts.ENV_WEIGHTS, str(bad))  # same check through the environment variable
    with pytest.raises(WeightsUnavailableError, match="6726825d"):
        wts.resolve_inception_weights()
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        wts.resolve_inception_weights(tmp_path / "missing.pth")


def test_verified_file_loads_and_is_fingerprinted(state_file, monkeypatch):
    path, digest = state_file
    monkeypatch.setattr(wts, "KNOWN_SHA256", digest)
    ext = InceptionFeatures(weights=path)
    d = ext.describe()
    assert d["pretrained"] is True and d["comparable"] is True and d["warning"] is None
    assert d["weights_sha256"] == digest  # the file's full sha256 is recorded
    assert d["state_dict_sha256"] == wts.state_dict_sha256(torch.load(path, weights_only=True))


def test_cache_and_download(state_file, monkeypatch):
    path, digest = state_file
    monkeypatch.setattr(wts, "KNOWN_SHA256", digest)
    monkeypatch.setattr(wts, "URLS", ("http://127.0.0.1:9/unreachable.pth", path.as_uri()))
    got, sha = wts.resolve_inception_weights()  # first URL fails, the mirror works
    assert got == wts.cache_dir() / wts.FILENAME and sha == digest
    monkeypatch.setenv(wts.ENV_OFFLINE, "1")  # now found in the cache without any download
    assert wts.resolve_inception_weights() == (got, digest)


def test_bad_download_is_deleted(tmp_path, monkeypatch):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"html error page")
    monkeypatch.setattr(wts, "URLS", (junk.as_uri(),))
    with pytest.raises(WeightsUnavailableError, match="sha256"):
        wts.resolve_inception_weights()
    assert not (wts.cache_dir() / wts.FILENAME).exists()


def test_auto_falls_back_to_flagged_random_init(monkeypatch):
    monkeypatch.setenv(wts.ENV_OFFLINE, "1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ext = InceptionFeatures(pretrained="auto")
    assert any(RANDOM_INIT_WARNING in str(w.message) for w in caught)
    assert ext.describe()["comparable"] is False


def test_state_dict_hash_tracks_content():
    sd = {"a": torch.zeros(3), "n": torch.tensor(0)}
    h = wts.state_dict_sha256(sd)
    assert h == wts.state_dict_sha256({"n": torch.tensor(0), "a": torch.zeros(3)})
    assert h != wts.state_dict_sha256({"a": torch.tensor([0.0, 0.0, 1e-30]), "n": torch.tensor(0)})
