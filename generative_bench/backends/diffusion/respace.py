"""Timestep respacing: sample (or bound) with K < T steps by wrapping the trained process.

Following Nichol & Dhariwal (2021, Sec. 4) and improved-diffusion ``respace.py``: keep a subset S
of the original steps, take the original alpha_bar at those steps, and define the new process by
beta'_k = 1 - alpha_bar_{S_k} / alpha_bar_{S_{k-1}}. The respaced process is an ordinary
:class:`GaussianDiffusion` whose ``timestep_map`` sends its index k back to the original S_k, so
the network is always called with the timestep it was trained on.

Specs: an int or ``"50"`` (evenly strided), ``"10,10,10"`` (sections of the range, each strided),
``"ddim50"`` (an integer stride giving exactly 50 steps, as in DDIM), or ``"ddim_quad50"`` (DDIM's
quadratic spacing, Song et al. 2021 Appendix D.2, used there for CIFAR-10).

Quadratic spacing ``"ddim_quadN"`` keeps the steps int((i sqrt(0.8 T) / (N - 1))^2), i = 0..N-1,
computed as ``int`` of ``numpy.linspace(0, sqrt(0.8 T), N) ** 2`` (float64) as in the DDIM code
(``runners/diffusion.py``, ``skip_type="quad"``). That code indexes its schedule with
``compute_alpha(b, t + 1)`` on a cumulative product with a leading 1 (beta_0 = 0 prepended), so
its t is already the 0-based index of this project (index i is paper step i + 1): the kept
indices are the values themselves, from 0 up to int(0.8 T), and sampling starts at step 0.8 T
(x_T ~ N(0, I) there, as in DDIM). Latent-diffusion's ``make_ddim_timesteps`` adds 1 to the same
values (a one-step shift of this rule). For N large enough that the first values repeat (N >= 50
at T = 1000: 0, 0, 1, ...) the repeats are merged, so the process has fewer than N steps; the DDIM
code spends a network call on each repeat, a step from t to t that leaves x unchanged at eta = 0.

:func:`space_timesteps` keeps exactly the steps of ``space_timesteps`` in improved-diffusion
(``improved_diffusion/respace.py``; guided-diffusion's ``guided_diffusion/respace.py`` has the
same function), checked for every spec family by ``experiments/check_respacing_reference.py``
(see ``reports/respacing_vs_improved_diffusion.md``). Where the reference fails with a
ValueError, or silently keeps no steps for a section count of 0, this module raises an
:class:`InputError` that says what to change. The one addition: ``"ddimT"`` for a process of
T=1 step keeps that step (the reference finds no stride there and raises).
"""

from __future__ import annotations

import torch

from generative_bench.backends.diffusion.gaussian import GaussianDiffusion
from generative_bench.errors import InputError


def _ddim_steps(num_timesteps: int, count: int) -> list[int]:
    for stride in range(1, num_timesteps):
        if len(range(0, num_timesteps, stride)) == count:
            return list(range(0, num_timesteps, stride))
    if count == num_timesteps:
        return list(range(num_timesteps))
    raise InputError(f"cannot make exactly {count} evenly strided steps out of {num_timesteps}; "
                     "use a plain count (e.g. steps=50) instead of 'ddim50'")


def _ddim_quadratic_steps(num_timesteps: int, count: int) -> list[int]:
    """DDIM's quadratic spacing (0-based indices, repeats merged; see the module docstring)."""
    import numpy as np

    if count < 2:
        raise InputError(f"'ddim_quad{count}' needs at least 2 steps (the rule spaces N >= 2 points)")
    values = (np.linspace(0.0, np.sqrt(num_timesteps * 0.8), count) ** 2).astype(np.int64)
    return sorted(set(int(v) for v in values))


def space_timesteps(num_timesteps: int, spec: int | str) -> list[int]:
    """Sorted original indices kept by the respacing ``spec``."""
    text = str(spec).strip().replace(" ", "")
    if text.startswith("ddim_quad"):
        try:
            count = int(text[len("ddim_quad"):])
        except ValueError:
            raise InputError(f"bad respacing {spec!r}: expected 'ddim_quadN' with an integer N") from None
        return _ddim_quadratic_steps(num_timesteps, count)
    if text.startswith("ddim"):
        try:
            count = int(text[4:])
        except ValueError:
            raise InputError(f"bad respacing {spec!r}: expected 'ddimN' with an integer N") from None
        return _ddim_steps(num_timesteps, count)
    try:
        sections = [int(s) for s in text.split(",")]
    except ValueError:
        raise InputError(f"bad respacing {spec!r}: expected an int, 'N1,N2,...' or 'ddimN'") from None
    if any(c < 1 for c in sections):
        raise InputError(f"bad respacing {spec!r}: every section needs at least one step")
    size_per, extra = divmod(num_timesteps, len(sections))
    kept: list[int] = []
    start = 0
    for i, count in enumerate(sections):
        size = size_per + (1 if i < extra else 0)
        if size < count:
            raise InputError(f"respacing {spec!r} asks for {count} steps from a section of {size} "
                             f"(the process has T={num_timesteps}); use fewer steps")
        stride = 1.0 if count <= 1 else (size - 1) / (count - 1)
        # A running float sum, rounded at each take (round-half-to-even), exactly as the
        # reference does. ``round(stride * j)`` is not equivalent: the accumulated sum carries
        # float error that sometimes lands on the other side of a .5 boundary (278 of the
        # 1000 single-section counts at T=1000 keep a different step that way).
        position = 0.0
        for _ in range(count):
            kept.append(start + round(position))
            position += stride
        start += size
    return sorted(set(kept))


def respace(process: GaussianDiffusion, spec: int | str | None) -> GaussianDiffusion:
    """The process restricted to the steps of ``spec`` (``None``: the process itself)."""
    if spec is None:
        return process
    keep = space_timesteps(process.num_timesteps, spec)
    if len(keep) == process.num_timesteps:
        return process
    ab = process.alphas_cumprod[keep]
    ab_prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
    betas = 1.0 - ab / ab_prev
    return GaussianDiffusion(betas, variance=process.variance, rescale_timesteps=process.rescale_timesteps,
                             timestep_map=process.timestep_map[keep],
                             original_num_timesteps=process.original_num_timesteps)
