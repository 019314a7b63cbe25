"""MLPDenoiser: a time step shared by the whole batch is embedded once and broadcast, with the same
outputs as embedding every row, and the state dict is unchanged."""

import pytest
import torch

from generative_bench.backends.nets import mlp_denoiser
from generative_bench.backends.nets.mlp_denoiser import MLPDenoiser
from generative_bench.backends.nets.unet import add_label_embedding


def _per_row(net, x, t, y=None):
    """The forward pass with one time embedding (and time projection) per row."""
    emb = add_label_embedding(net, net.embed_time(t, x.dtype), y)
    h = net.inp(net.embed_input(x))
    for block in net.blocks:
        h = h + block.lin2(block.act(block.lin1(block.act(h)) + block.time(emb)))
    return net.out(h)


def _net(num_classes=0, **kw):
    torch.manual_seed(0)
    net = MLPDenoiser(num_classes=num_classes, **kw).eval()
    with torch.no_grad():  # the zero-initialised output layers of the blocks would hide the time path
        for block in net.blocks:
            block.lin2.weight.normal_(0, 0.05)
            block.lin2.bias.normal_(0, 0.05)
    return net


@pytest.mark.parametrize("num_classes", [0, 3])
@pytest.mark.parametrize("batch", [1, 5, 9, 64, 1000])
def test_shared_time_step_equals_per_row_embedding(num_classes, batch):
    net = _net(num_classes)
    g = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, 2, generator=g)
    t = torch.full((batch,), 417.0)
    labels = [None] + ([torch.randint(0, num_classes, (batch,), generator=g)] if num_classes else [])
    with torch.inference_mode():
        for y in labels:
            got, want = net(x, t, y), _per_row(net, x, t, y)
            assert got.shape == want.shape == (batch, 2)
            torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_different_time_steps_still_get_one_embedding_each():
    net = _net()
    x = torch.randn(32, 2)
    t = torch.linspace(0, 999, 32)
    with torch.inference_mode():
        assert net.embed_time_shared(t, torch.float32).shape == (32, 256)
        torch.testing.assert_close(net(x, t), _per_row(net, x, t), rtol=0, atol=0)
        shared = net.embed_time_shared(torch.full((32,), 5.0), torch.float32)
    assert shared.shape == (mlp_denoiser.SHARED_TIME_ROWS, 256) and bool((shared == shared[:1]).all())


def test_state_dict_is_unchanged():
    keys = list(MLPDenoiser().state_dict())
    assert not any("shared" in k for k in keys)
    assert keys[:3] == ["time_embed.0.weight", "time_embed.0.bias", "time_embed.2.weight"]
    assert "label_embed.weight" not in keys and "label_embed.weight" in MLPDenoiser(num_classes=2).state_dict()


def test_gradients_flow_through_the_shared_embedding():
    net = _net()
    x = torch.randn(16, 2)
    t = torch.full((16,), 10.0)
    net(x, t).square().sum().backward()
    assert net.time_embed[0].weight.grad is not None and net.time_embed[0].weight.grad.abs().sum() > 0
