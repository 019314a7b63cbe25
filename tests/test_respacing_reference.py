"""space_timesteps keeps exactly the steps improved-diffusion's ``space_timesteps`` keeps.

The reference repository is not available here, so the rule is restated below and checked over
every single-section count, and a few outputs of the reference itself are pinned.
``experiments/check_respacing_reference.py`` runs the comparison against the reference code.
"""

from __future__ import annotations

import math
import random
from itertools import accumulate, repeat

import pytest

from generative_bench.backends.diffusion.respace import space_timesteps
from generative_bench.errors import InputError


def running_sum_rule(num_timesteps: int, counts: list[int]) -> list[int]:
    """Split T into len(counts) near-equal parts (earlier parts get the remainder); in a part of
    ``size`` steps keep ``start + round(p)`` for p = 0, s, s+s, ... summed in float, where
    s = (size - 1) / (count - 1), or 1 when count is 1."""
    base, rest = divmod(num_timesteps, len(counts))
    sizes = [base + (i < rest) for i in range(len(counts))]
    out = []
    for start, size, count in zip([0, *accumulate(sizes)], sizes, counts):
        step = (size - 1) / (count - 1) if count > 1 else 1
        positions = accumulate(repeat(step, count - 1), initial=0.0)
        out += [start + round(p) for p in positions]
    return sorted(set(out))


def ddim_rule(num_timesteps: int, count: int) -> list[int] | None:
    """range(0, T, k) for the smallest integer k that gives exactly ``count`` steps, else None."""
    for k in range(1, num_timesteps):
        if math.ceil(num_timesteps / k) == count:
            return list(range(0, num_timesteps, k))
    return None


@pytest.mark.parametrize("num_timesteps", [50, 1000, 4000])
def test_every_single_section_count(num_timesteps):
    for count in range(1, num_timesteps + 1):
        assert space_timesteps(num_timesteps, count) == running_sum_rule(num_timesteps, [count]), count


@pytest.mark.parametrize("num_timesteps", [50, 300, 1000, 4000])
def test_multi_section_specs(num_timesteps):
    rng = random.Random(num_timesteps)
    specs = [[10, 15, 3], [1, 1], [7] * 7]
    for _ in range(40):
        k = rng.randint(2, 8)
        specs.append([rng.randint(1, num_timesteps // k) for _ in range(k)])
    for counts in specs:
        spec = ",".join(map(str, counts))
        assert space_timesteps(num_timesteps, spec) == running_sum_rule(num_timesteps, counts), spec


# Produced by improved-diffusion's space_timesteps (improved_diffusion/respace.py) at commit
# 1bc7bbbdc414d83d4abf2ad8cc1446dc36c4e4d5; guided-diffusion 22e0df8183507e13a7813f8d38d51b072ca1e67c
# gives the same. The last three are counts where round(stride * j) picks a different step
# (T=50 "25": 12 * 49/24 is exactly 24.5 -> 24, but the running sum is 24.500000000000004 -> 25).
REFERENCE = {
    (1000, "25"): [0, 42, 83, 125, 166, 208, 250, 291, 333, 375, 416, 458, 500, 541, 583, 624, 666, 708,
                   749, 791, 832, 874, 916, 957, 999],
    (300, "10,15,20"): [0, 11, 22, 33, 44, 55, 66, 77, 88, 99, 100, 107, 114, 121, 128, 135, 142, 149, 157,
                        164, 171, 178, 185, 192, 199, 200, 205, 210, 216, 221, 226, 231, 236, 242, 247, 252,
                        257, 263, 268, 273, 278, 283, 289, 294, 299],
    (50, "25"): [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 25, 27, 29, 31, 33, 35, 37, 39, 41, 43, 45, 47, 49],
    (1000, "21"): [0, 50, 100, 150, 200, 250, 300, 350, 400, 450, 499, 549, 599, 649, 699, 749, 799, 849, 899,
                   949, 999],
    (1000, "31"): [0, 33, 67, 100, 133, 166, 200, 233, 266, 300, 333, 366, 400, 433, 466, 500, 533, 566, 599,
                   633, 666, 699, 733, 766, 799, 832, 866, 899, 932, 966, 999],
}


@pytest.mark.parametrize("key", list(REFERENCE))
def test_pinned_reference_outputs(key):
    num_timesteps, spec = key
    assert space_timesteps(num_timesteps, spec) == REFERENCE[key]


@pytest.mark.parametrize("num_timesteps", [50, 1000])
def test_ddim_every_count(num_timesteps):
    for count in range(1, num_timesteps + 1):
        want = ddim_rule(num_timesteps, count)
        if want is None:
            with pytest.raises(InputError, match="evenly strided"):
                space_timesteps(num_timesteps, f"ddim{count}")
        else:
            assert space_timesteps(num_timesteps, f"ddim{count}") == want, count
    assert space_timesteps(1000, "ddim50") == list(range(0, 1000, 20))
    assert space_timesteps(1000, "ddim250") == list(range(0, 1000, 4))


@pytest.mark.parametrize("num_timesteps, spec, message", [
    (10, "11", "asks for 11 steps from a section of 10"),
    (300, "10,101,20", "asks for 101 steps from a section of 100"),
    (3, "1,1,1,1", "from a section of 0"),
    (100, "0", "at least one step"),
    (100, "10,-1", "at least one step"),
    (100, "ddim33", "exactly 33 evenly strided"),
    (100, "ddim0", "exactly 0 evenly strided"),
    (100, "ddim101", "exactly 101 evenly strided"),
    (100, "ddimx", "expected 'ddimN'"),
    (100, "fifty", "expected an int"),
])
def test_error_cases(num_timesteps, spec, message):
    with pytest.raises(InputError, match=message):
        space_timesteps(num_timesteps, spec)
