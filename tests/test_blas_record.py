"""The BLAS line run records carry: which libraries, which kernels, which OpenBLAS settings."""

import platform
import subprocess
import sys

import pytest

from generative_bench import blas
from generative_bench.records import environment_info

_LIBS = [
    {"api": "openblas", "version": "0.3.31", "architecture": "Haswell"},
    {"api": "openblas", "version": "0.3.31", "architecture": "Haswell"},
    {"api": "openblas", "version": "0.3.30", "architecture": "SkylakeX"},
]


def test_distinct_libraries_with_their_kernels_and_the_settings_that_chose_them():
    text = blas.describe(_LIBS, {"OPENBLAS_CORETYPE": "Haswell", "PATH": "/bin"})
    assert text == "openblas 0.3.30 SkylakeX; openblas 0.3.31 Haswell (OPENBLAS_CORETYPE=Haswell)"
    assert blas.describe(_LIBS[::-1], {}) == blas.describe(_LIBS, {})  # whatever order they were loaded in
    assert blas.describe([], {}) == "no BLAS found by threadpoolctl"


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="Haswell kernels are x86-64 kernels")
def test_the_kernels_follow_the_coretype_the_process_started_with():
    """A real child process: OpenBLAS reads OPENBLAS_CORETYPE when numpy loads it."""
    code = "from generative_bench import blas; print(blas.describe())"
    env = {"OPENBLAS_CORETYPE": "Haswell", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    if "openblas" not in out:  # numpy built on another BLAS: nothing to pin
        return
    assert "Haswell" in out and out.strip().endswith("(OPENBLAS_CORETYPE=Haswell)")


def test_run_records_name_the_cpu_and_the_blas_kernels():
    env = environment_info()
    assert env["blas"] == blas.describe() and env["cpu"]
