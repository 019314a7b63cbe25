"""GAN networks: published parameter counts, shapes, spectral normalisation."""

import pytest
import torch
from torch.nn.utils import parametrize

from generative_bench.backends.gan import (
    DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator, SNGANDiscriminator, SNGANGenerator,
)
from generative_bench.errors import InputError



def _count(m):
    return sum(p.numel() for p in m.parameters())


def test_sngan_cifar_parameter_counts_match_the_paper():
    g, d = SNGANGenerator(), SNGANDiscriminator()
    # Miyato et al. 2018 ResNet for CIFAR-10: ~4.3M (G) and ~1.0M (D) parameters
    assert _count(g) == pytest.approx(4.3e6, rel=0.02)
    assert _count(d) == pytest.approx(1.0e6, rel=0.06)
    assert (_count(g), _count(d)) == (4_276_739, 1_053_825)  # exact count of this layout
    assert len(g.blocks) == 3 and [b.down for b in d.blocks] == [True, True, False, False]
    assert d.blocks[2].shortcut is None and d.blocks[0].optimized


@pytest.mark.parametrize("res", [16, 32])
def test_image_nets_shapes_and_range(res):
    torch.manual_seed(0)
    z = torch.randn(3, 16)
    for c, g, d in [(3, SNGANGenerator([3, res, res], z_dim=16, ch=16), SNGANDiscriminator([3, res, res], ch=16)),
                    (3, DCGANGenerator([3, res, res], z_dim=16, ch=64), DCGANDiscriminator([3, res, res], ch=8)),
                    (1, DCGANGenerator([1, res, res], z_dim=16, ch=64), DCGANDiscriminator([1, res, res], ch=8, norm="batch"))]:
        x = g(z)
        assert x.shape == (3, c, res, res)
        assert x.abs().max() <= 1.0
        assert d(x).shape == (3,)
    g, d = MLPGenerator([2], z_dim=8, hidden=16), MLPDiscriminator([2], hidden=16)
    assert g(torch.randn(5, 8)).shape == (5, 2) and d(torch.randn(5, 2)).shape == (5,)


def test_bad_shapes_are_clear_errors():
    with pytest.raises(InputError, match="4 \\* 2\\^k"):
        SNGANGenerator([3, 30, 30])
    with pytest.raises(InputError, match="square"):
        SNGANDiscriminator([3, 32, 16])
    with pytest.raises(InputError, match="vector"):
        MLPGenerator([3, 32, 32])
    with pytest.raises(InputError, match="norm"):
        DCGANDiscriminator(norm="layer")


def _sn_layers(d):
    return [m for m in d.modules() if parametrize.is_parametrized(m, "weight")]


@pytest.mark.parametrize("make", [
    lambda: SNGANDiscriminator([3, 16, 16], ch=16),
    lambda: DCGANDiscriminator([3, 16, 16], ch=8),
    lambda: MLPDiscriminator([2], hidden=32, spectral=True),
])
def test_spectral_norm_largest_singular_value_is_one(make):
    torch.manual_seed(0)
    d = make()
    layers = _sn_layers(d)
    expected = {"SNGANDiscriminator": 8, "DCGANDiscriminator": 6, "MLPDiscriminator": 4}[type(d).__name__]
    assert len(layers) == expected  # every conv / linear of D, shortcuts and head included
    x = torch.randn(2, *([2] if isinstance(d, MLPDiscriminator) else [3, 16, 16]))
    d.train()
    with torch.no_grad():
        for _ in range(40):  # one power iteration per forward in train mode
            d(x)
    d.eval()
    with torch.no_grad():
        raw = [torch.linalg.matrix_norm(m.parametrizations.weight.original.flatten(1), 2).item() for m in layers]
        sigma = [torch.linalg.matrix_norm(m.weight.flatten(1), 2).item() for m in layers]
    assert max(abs(r - 1) for r in raw) > 0.1  # the raw weights are not normalised themselves
    # the power-iteration estimate never exceeds the true sigma, so W / sigma_hat has norm >= 1
    assert min(sigma) > 0.999 and max(sigma) < 1.05, sigma


def test_no_spectral_norm_when_disabled():
    assert not _sn_layers(MLPDiscriminator([2], spectral=False))
    assert not _sn_layers(DCGANDiscriminator([3, 16, 16], ch=8, norm="none"))
    assert not _sn_layers(SNGANDiscriminator([3, 16, 16], ch=8, spectral=False))
