"""to_uint8 rounds to nearest (half to even), unlike the truncating cast of guided-diffusion."""

from __future__ import annotations

import torch

from generative_bench.data.codec import UINT8_RULE, to_uint8


def test_to_uint8_is_round_half_even_then_clamp():
    x = torch.linspace(-1.2, 1.2, 10_001)
    scaled = ((x + 1.0) * 127.5).double()
    want = torch.tensor([min(max(round(v), 0), 255) for v in scaled.tolist()], dtype=torch.uint8)
    assert torch.equal(to_uint8(x), want)
    assert UINT8_RULE == "round((x + 1) * 127.5) clamped to [0, 255]"


def test_rounding_differs_from_truncation():
    x = torch.tensor([10.7 / 127.5 - 1.0])                 # (x + 1) * 127.5 == 10.7
    assert to_uint8(x).item() == 11
    assert ((x + 1) * 127.5).clamp(0, 255).to(torch.uint8).item() == 10   # guided-diffusion's cast
    # the only exact tie inside [-1, 1] is x = 0 -> 127.5, which rounds to 128 (truncation gives 127)
    assert to_uint8(torch.tensor([0.0])).item() == 128
    assert ((torch.tensor([0.0]) + 1) * 127.5).clamp(0, 255).to(torch.uint8).item() == 127
