"""Data sources, subsets, the uint8 boundary and resumable batch order."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from generative_bench.data.codec import check_uint8_images, to_model_space, to_uint8
from generative_bench.data.images import ImageFolderImages, NpzImages
from generative_bench.data.loading import BatchStream, load_split
from generative_bench.data.subsets import class_balanced_indices
from generative_bench.data.toy import GridOfGaussians, RingOfGaussians
from generative_bench.errors import InputError
from tests.conftest import CIFAR_JPEG, needs_cifar


def test_uint8_round_trip_is_exact():
    x = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(1, 3, 16, 16)
    assert torch.equal(to_uint8(to_model_space(x)), x)
    # round-and-clamp of (x + 1) * 127.5
    assert to_uint8(torch.tensor([-2.0, -1.0, 0.0, 0.999, 1.5])).tolist() == [0, 0, 128, 255, 255]


def test_nan_samples_are_rejected_with_a_clear_error():
    x = torch.zeros(4, 3, 2, 2)
    x[1, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match=r"NaN/Inf \(1 of 4 samples"):
        to_uint8(x)


@pytest.mark.parametrize(
    "x, msg",
    [
        (torch.rand(2, 3, 4, 4), "expected dtype torch.uint8"),
        (torch.zeros(3, 4, 4, dtype=torch.uint8), "4-D NCHW"),
        (torch.zeros(2, 4, 4, 3, dtype=torch.uint8), "looks like NHWC"),
        (torch.zeros(2, 1, 4, 4, dtype=torch.uint8), "expected 3 channels"),
    ],
)
def test_check_uint8_images_names_the_problem(x, msg):
    with pytest.raises(InputError, match=msg):
        check_uint8_images(x)


def test_class_balanced_subset_is_balanced_and_deterministic():
    labels = np.repeat(np.arange(10), 100)
    a = class_balanced_indices(labels, 55, seed=3)
    b = class_balanced_indices(labels, 55, seed=3)
    c = class_balanced_indices(labels, 55, seed=4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    counts = np.bincount(labels[a], minlength=10)
    assert counts.sum() == 55 and counts.max() - counts.min() == 1
    with pytest.raises(InputError, match="larger than the split"):
        class_balanced_indices(labels, 5000)


@pytest.mark.parametrize("cls, modes", [(RingOfGaussians, 8), (GridOfGaussians, 25)])
def test_toy_density_is_normalised_and_matches_samples(cls, modes):
    ds = cls(size=4000, seed=1)
    assert ds.num_modes == modes and len(ds) == 4000
    # integrate exp(log p) on a fine grid around one mode: mass 1/K per mode
    m = ds.means[0].float()
    s = ds.std
    t = torch.linspace(-6 * s, 6 * s, 401)
    xx, yy = torch.meshgrid(t + m[0], t + m[1], indexing="ij")
    pts = torch.stack([xx.flatten(), yy.flatten()], 1)
    mass = ds.log_prob(pts).exp().sum().item() * float(t[1] - t[0]) ** 2
    assert mass == pytest.approx(1 / modes, rel=1e-3)
    # every sample sits within 6 std of a mode
    d = torch.cdist(ds.points.double(), ds.means).min(1).values
    assert (d < 6 * s).all()
    assert ds.nll_bits_per_dim(ds.points).mean().item() == pytest.approx(
        -ds.log_prob(ds.points).mean().item() / (2 * math.log(2)))


def test_image_folder_reads_uint8_chw_with_class_labels(image_folder):
    ds = ImageFolderImages(str(image_folder), split="train")
    assert len(ds) == 24 and ds.classes == ["cat", "dog"]
    x, y = ds[13]
    assert x.dtype == torch.uint8 and x.shape == (3, 8, 8) and y == 1


def test_empty_folder_and_missing_folder_errors(tmp_path):
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(InputError, match="no images"):
        ImageFolderImages(str(tmp_path / "empty"))
    with pytest.raises(InputError, match="does not exist"):
        ImageFolderImages(str(tmp_path / "nope"))


def test_corrupt_image_file_is_named(image_folder):
    bad = image_folder / "train" / "cat" / "000.png"
    bad.write_bytes(b"not a png")
    ds = ImageFolderImages(str(image_folder), split="train")
    with pytest.raises(InputError, match="000.png"):
        ds[0]


def test_npz_images_and_bad_npz_files(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
    np.savez(tmp_path / "ok.npz", arr_0=arr)
    ds = NpzImages(str(tmp_path / "ok.npz"))
    assert torch.equal(ds.images.permute(0, 2, 3, 1), torch.from_numpy(arr))
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(InputError, match="not a readable npz"):
        NpzImages(str(tmp_path / "corrupt.npz"))
    np.savez(tmp_path / "float.npz", arr_0=arr.astype(np.float32))
    with pytest.raises(InputError, match="dtype float32"):
        NpzImages(str(tmp_path / "float.npz"))
    np.savez(tmp_path / "other.npz", images=arr)
    with pytest.raises(InputError, match="no array 'arr_0'"):
        NpzImages(str(tmp_path / "other.npz"))


def test_load_split_from_folder_config_with_subset(image_folder):
    cfg = {"name": "tiny", "source": {"_target_": "generative_bench.data.images.ImageFolderImages",
                                      "root": str(image_folder)}, "subset": 6, "subset_seed": 0}
    split = load_split(cfg, "test")
    assert split.x.shape == (6, 3, 8, 8) and split.x.dtype == torch.uint8
    assert np.bincount(split.labels).tolist() == [3, 3]
    assert split.info["subset"] == 6 and split.info["split"] == "test"


def test_batch_stream_resumes_the_exact_order_with_flips():
    x = torch.arange(40 * 3 * 2 * 2, dtype=torch.int64).remainder(256).to(torch.uint8).view(40, 3, 2, 2)
    a = BatchStream(x, 8, seed=5, hflip=True)
    first = [a.next_raw() for _ in range(7)]  # crosses an epoch boundary (5 batches/epoch)
    b = BatchStream(x, 8, seed=5, hflip=True)
    for _ in range(3):
        b.next_raw()
    c = BatchStream(x, 8, seed=5, hflip=True)
    c.load_state_dict(b.state_dict())
    assert all(torch.equal(first[3 + i], c.next_raw()) for i in range(4))
    flipped = torch.cat(first[:5])
    # each example appears once per epoch, some of them mirrored
    assert len(flipped) == 40
    assert any(not any(torch.equal(f, o) for o in x) for f in flipped)


@needs_cifar
def test_shared_cifar10_jpeg_subset():
    cfg = {"name": "cifar10-jpeg", "source": {"_target_": "generative_bench.data.images.ImageFolderImages",
                                              "root": str(CIFAR_JPEG)}, "subset": 20, "subset_seed": 0}
    split = load_split(cfg, "test")
    assert split.x.shape == (20, 3, 32, 32) and np.bincount(split.labels).tolist() == [2] * 10
