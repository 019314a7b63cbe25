"""The diffusion sampling methods as typed declarations: each owns its settings with their
defaults, the process it runs on and its network evaluations per image (NFE).

A sampler setting names a ``method`` and one ``steps`` value; what ``steps`` is belongs to the
method and is a field of its own here:

* ``respacing`` (ancestral, DDIM, DPM-Solver++ (2M)): which steps of the training process are kept,
  improved-diffusion's ``space_timesteps`` spec (``None`` = all T steps, ``50``, ``"10,10,10"``,
  ``"ddim25"``, ``"ddim_quad10"``; see respace.py). The method runs every step of the respaced
  process: NFE = its number of steps.
* ``levels`` (Heun, Euler on the probability-flow ODE): the size N of the Karras et al. (2022)
  noise-level grid on the training process (an int in [2, T]). NFE = 2N' - 1 for Heun and N' for
  Euler, N' the grid after merging levels that round to the same training step.
* ``eta`` exists for DDIM only (Song et al. 2021, Eq. 12); the other methods refuse it.

Classifier-free guidance doubles the NFE (two passes per call); the backend applies that, since
it is a property of the model function, not of the method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Protocol

from generative_bench.backends.diffusion.gaussian import GaussianDiffusion
from generative_bench.backends.diffusion.solvers import check_grid_steps, karras_grid
from generative_bench.errors import InputError


class Processes(Protocol):
    """What a method needs from a backend: the training process and its respaced views."""

    process: GaussianDiffusion

    def respaced(self, steps: int | str | None) -> GaussianDiffusion: ...


@dataclass(frozen=True)
class SamplingMethod:
    """One method's settings. ``name`` is the config's ``method``; ``steps_field`` the field that
    the config's ``steps`` fills."""

    name: ClassVar[str]
    steps_field: ClassVar[str]

    def process(self, backend: Processes) -> GaussianDiffusion:
        raise NotImplementedError

    def nfe(self, backend: Processes) -> int:
        raise NotImplementedError

    @property
    def steps(self) -> Any:
        """The value the config's ``steps`` holds for this method."""
        return getattr(self, self.steps_field)

    @property
    def solver_eta(self) -> float:
        """The DDIM noise scale the solver gets (0 for every other method)."""
        return float(getattr(self, "eta", 0.0))

    @property
    def grid_levels(self) -> int | None:
        """The Karras grid size for the grid methods, None for the respaced ones."""
        return None


@dataclass(frozen=True)
class Respaced(SamplingMethod):
    """Every step of the training process respaced by ``respacing`` (None: all T steps)."""

    respacing: int | str | None = None
    steps_field: ClassVar[str] = "respacing"

    def process(self, backend: Processes) -> GaussianDiffusion:
        return backend.respaced(self.respacing)

    def nfe(self, backend: Processes) -> int:
        return self.process(backend).num_timesteps


@dataclass(frozen=True)
class Ancestral(Respaced):
    """Ho et al. (2020) Alg. 2 with the process's variance type."""

    name: ClassVar[str] = "ancestral"


@dataclass(frozen=True)
class DDIM(Respaced):
    """Song et al. (2021) Eq. 12; ``eta`` = 0 is deterministic, 1 is ancestral with the fixed-small variance."""

    name: ClassVar[str] = "ddim"
    eta: float = 0.0

    def __post_init__(self):
        value = self.eta
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise InputError(f"ddim eta must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class DPMSolverPP2M(Respaced):
    """DPM-Solver++ (2M) (Lu et al. 2022, Alg. 2) over every step of the respaced process."""

    name: ClassVar[str] = "dpmpp_2m"


@dataclass(frozen=True)
class KarrasGrid(SamplingMethod):
    """A deterministic ODE solver on the N-level Karras et al. (2022) grid of the training process."""

    levels: int | None = None
    steps_field: ClassVar[str] = "levels"
    second_order: ClassVar[bool] = False

    def process(self, backend: Processes) -> GaussianDiffusion:
        check_grid_steps(self.name, self.levels, backend.process)
        return backend.process

    def nfe(self, backend: Processes) -> int:
        process = self.process(backend)
        m = len(karras_grid(process, check_grid_steps(self.name, self.levels, process))[0])
        return 2 * m - 1 if self.second_order else m

    @property
    def grid_levels(self) -> int | None:
        return self.levels


@dataclass(frozen=True)
class Heun(KarrasGrid):
    """EDM Alg. 1 with S_churn = 0: Heun's second-order step, no correction on the last step."""

    name: ClassVar[str] = "heun"
    second_order: ClassVar[bool] = True


@dataclass(frozen=True)
class EulerODE(KarrasGrid):
    """Euler on the probability-flow ODE (EDM Alg. 1 without the correction)."""

    name: ClassVar[str] = "euler_ode"


#: every sampling method of the diffusion backends, by the name a config gives it
SAMPLING_METHODS: dict[str, type[SamplingMethod]] = {
    cls.name: cls for cls in (Ancestral, DDIM, DPMSolverPP2M, Heun, EulerODE)}
#: the method and settings of a backend that is given none: the full chain, ancestral
DEFAULT_METHOD = Ancestral()


def sampling_method(method: str = DEFAULT_METHOD.name, steps: Any = None, eta: Any = 0.0) -> SamplingMethod:
    """The typed settings of a config's ``method`` / ``steps`` / ``eta``; InputError on a method
    that does not exist or an ``eta`` given to a method other than DDIM."""
    cls = SAMPLING_METHODS.get(str(method))
    if cls is None:
        raise InputError(f"unknown diffusion sampling method {method!r}; choose one of {sorted(SAMPLING_METHODS)}")
    names = {f.name for f in fields(cls)}
    kwargs: dict[str, Any] = {cls.steps_field: steps}
    if "eta" in names:
        kwargs["eta"] = 0.0 if eta is None else eta
    elif eta:
        kind = "is deterministic" if cls is not Ancestral else "has no eta"
        raise InputError(f"sampling option eta={eta} applies to method=ddim only; {cls.name} {kind}, set eta=0.0")
    return cls(**kwargs)


__all__ = ["DDIM", "DEFAULT_METHOD", "SAMPLING_METHODS", "Ancestral", "DPMSolverPP2M", "EulerODE", "Heun",
           "KarrasGrid", "Respaced", "SamplingMethod", "sampling_method"]
