"""GAN losses against values worked out by hand."""

import math

import pytest
import torch
import torch.nn.functional as F

from generative_bench.backends.gan.losses import HingeLoss, NonSaturatingLoss, get_loss
from generative_bench.errors import InputError



def test_hinge_loss_hand_values():
    real = torch.tensor([2.0, 0.5, -1.0])
    fake = torch.tensor([-2.0, 0.0, 0.5])
    loss = HingeLoss()
    # max(0, 1 - real) = [0, 0.5, 2]  -> 2.5 / 3 ; max(0, 1 + fake) = [0, 1, 1.5] -> 2.5 / 3
    assert loss.d_loss(real, fake).item() == pytest.approx(5.0 / 3.0, abs=1e-7)
    # -mean(fake) = -(-1.5 / 3)
    assert loss.g_loss(fake).item() == pytest.approx(0.5, abs=1e-7)


def test_non_saturating_loss_hand_values():
    ln3 = math.log(3.0)
    real = torch.tensor([0.0, ln3])
    fake = torch.tensor([0.0, -ln3])
    loss = NonSaturatingLoss()
    # softplus(-0) = ln 2, softplus(-ln 3) = ln(4/3): each term averages to ln(8/3) / 2
    assert loss.d_loss(real, fake).item() == pytest.approx(math.log(8.0 / 3.0), abs=1e-6)
    # softplus(-0) = ln 2, softplus(ln 3) = ln 4 -> (ln 2 + ln 4) / 2 = 1.5 ln 2
    assert loss.g_loss(fake).item() == pytest.approx(1.5 * math.log(2.0), abs=1e-6)


def test_non_saturating_is_binary_cross_entropy_and_stable():
    torch.manual_seed(0)
    real, fake = 3 * torch.randn(64), 3 * torch.randn(64)
    bce = (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
           + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
    loss = NonSaturatingLoss()
    torch.testing.assert_close(loss.d_loss(real, fake), bce)
    torch.testing.assert_close(loss.g_loss(fake), F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake)))
    big = torch.tensor([200.0, -200.0])
    assert torch.isfinite(loss.d_loss(big, -big)) and torch.isfinite(loss.g_loss(big))
    assert loss.g_loss(torch.tensor([-200.0])).item() == pytest.approx(200.0)


def test_get_loss_names_and_error():
    assert isinstance(get_loss("hinge"), HingeLoss)
    assert isinstance(get_loss("non_saturating"), NonSaturatingLoss)
    with pytest.raises(InputError, match="hinge"):
        get_loss("wgan")
