"""Shared fixtures: Hydra composition of the real conf/ tree, small on-disk datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CIFAR_JPEG = ROOT / "data" / "cifar10-jpeg"

torch.set_num_threads(1)  # small nets: one thread avoids oversubscription on shared CPUs


@pytest.fixture(autouse=True)
def _one_thread():
    """Every test starts on one thread (tiny nets run many times faster on a shared CPU) and
    whatever a test sets is undone after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def compose():
    """compose(overrides) -> the composed DictConfig of conf/config.yaml (no Hydra run)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from generative_bench.cli.main import config_dir

    def _compose(overrides=(), return_hydra_config=False):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            return hydra_compose("config", overrides=list(overrides), return_hydra_config=return_hydra_config)

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """A real image folder root/{train,test}/<class>/*.png with 2 classes of random 8x8 images."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 6)):
        for c in ("cat", "dog"):
            d = tmp_path / "folder" / split / c
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(d / f"{i:03d}.png")
    return tmp_path / "folder"


def cifar_jpeg_available() -> bool:
    return (CIFAR_JPEG / "train").is_dir() and (CIFAR_JPEG / "test").is_dir()


needs_cifar = pytest.mark.skipif(not cifar_jpeg_available(), reason="CIFAR-10 JPEG not unpacked under data/")
