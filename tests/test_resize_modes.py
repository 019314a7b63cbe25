"""Resize modes of the Inception extractor (eval.features.resize): tf1_bilinear is the existing TF
resize, the other two antialias when downscaling; the mode is in the fingerprint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generative_bench.errors import InputError
from generative_bench.evaluation import inception as inc
from generative_bench.evaluation import resize as rsz


def _checkerboard(size=598):
    y, x = np.mgrid[:size, :size]
    img = ((x + y) % 2 * 255).astype(np.uint8)
    return torch.from_numpy(np.stack([img] * 3))[None]


def test_tf1_mode_is_the_tf_resize():
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(rsz.inception_input(x, "tf1_bilinear"), inc.tf_inception_input(x))
    assert torch.equal(rsz.resize(x, "tf1_bilinear"), inc.tf1_resize_bilinear(x, 299))


def test_antialiased_modes_average_a_pixel_checkerboard_and_tf1_aliases_it():
    x = _checkerboard()
    stds = {m: float(rsz.resize(x, m).std()) for m in rsz.MODES}
    # TF1 samples every second pixel (src = 2 dst): the pattern aliases to one flat colour, not its mean grey
    assert abs(float(rsz.resize(x, "tf1_bilinear").mean()) - 127.5) > 100
    assert stds["clean_bicubic"] < 15 and stds["torchvision_antialias"] < 15
    for m in ("clean_bicubic", "torchvision_antialias"):
        out = rsz.resize(x, m)
        assert out.shape == (1, 3, 299, 299) and out.dtype == torch.float32
        assert abs(float(out.mean()) - 127.5) < 2


def test_clean_bicubic_matches_pil_per_channel_float_resize():
    from PIL import Image

    x = torch.randint(0, 256, (1, 3, 20, 24), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    out = rsz.clean_bicubic(x, 299)
    ref = np.asarray(Image.fromarray(x[0, 1].numpy().astype(np.float32), mode="F").resize((299, 299), Image.BICUBIC))
    np.testing.assert_array_equal(out[0, 1].numpy(), ref.clip(0, 255))
    assert float(out.min()) >= 0 and float(out.max()) <= 255


def test_the_mode_is_named_in_the_fingerprint_and_checked():
    from generative_bench.evaluation.features import InceptionFeatures

    d = InceptionFeatures(pretrained=False, resize="clean_bicubic").describe()
    assert d["resize"] == "clean_bicubic" and "BICUBIC" in d["preprocessing"]
    with pytest.raises(InputError, match=r"resize='bicubic' is not a resize mode; choose one of"):
        InceptionFeatures(pretrained=False, resize="bicubic")
    from generative_bench.evaluation.reference_file import ReferenceFile, check_feature_space

    ref = ReferenceFile(path=__import__("pathlib").Path("ref.npz"), sha256="0" * 64, format="pytorch-fid",
                        arrays={"mu": np.zeros(2048), "sigma": np.eye(2048)},
                        meta={"extractor": {**d, "resize": "tf1_bilinear"}})
    with pytest.raises(InputError, match="resize: file 'tf1_bilinear' vs now 'clean_bicubic'"):
        check_feature_space(ref, d)
