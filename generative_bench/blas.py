"""Which CPU matrix-product kernels numpy's BLAS runs, in one line for the run records.

OpenBLAS picks its kernels when it is loaded, from the CPU or from ``OPENBLAS_CORETYPE`` (an
environment can pin e.g. ``Haswell`` kernels on an AVX-512 CPU). The kernels decide the last
bits of every matrix product and, on one core, their rate: on one Zen 5 core the AVX2 (Haswell)
kernels ran float32 products at 102 GFLOP/s, the AVX-512 (SkylakeX) ones at 204. The metrics whose
time is their products (FID statistics, KID, P/R/D/C) move with them, so a number's record
says which ran. Imported lazily: threadpoolctl and numpy load on the first call.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

#: the environment variables that choose or size OpenBLAS's kernels
OPENBLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def blas_libraries() -> list[dict[str, Any]]:
    """The BLAS libraries loaded in this process (threadpoolctl): api, version and kernels."""
    from threadpoolctl import threadpool_info

    import numpy  # noqa: F401  (loads numpy's BLAS, so that it is listed)

    return [{"api": i.get("internal_api"), "version": i.get("version"), "architecture": i.get("architecture")}
            for i in threadpool_info() if i.get("user_api") == "blas"]


def describe(libraries: list[dict[str, Any]] | None = None, environ: Mapping[str, str] | None = None) -> str:
    """E.g. ``openblas 0.3.31 Haswell (OPENBLAS_CORETYPE=Haswell)``: each distinct library (numpy's
    and scipy's copies) with its kernels, sorted and '; '-joined (so a record does not depend on
    which library this process happened to load first), then the OpenBLAS variables that are set."""
    environ = os.environ if environ is None else environ
    libraries = blas_libraries() if libraries is None else libraries
    parts: list[str] = []
    for lib in libraries:
        text = " ".join(str(lib[k]) for k in ("api", "version", "architecture") if lib.get(k))
        if text and text not in parts:
            parts.append(text)
    text = "; ".join(sorted(parts)) or "no BLAS found by threadpoolctl"
    settings = [f"{k}={environ[k]}" for k in OPENBLAS_ENV if k in environ]
    return text + (f" ({', '.join(settings)})" if settings else "")
