"""The CPU description benchmark reports carry: name, family, model and vector instruction set."""

from generative_bench.records import cpu_model_name

_BLOCK = """processor\t: {i}
vendor_id\t: AuthenticAMD
cpu family\t: 23
model\t\t: 49
model name\t: AMD EPYC
flags\t\t: fpu sse2 {flags}

"""


def test_generic_cloud_names_get_family_model_and_isa(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text(_BLOCK.format(i=0, flags="avx avx2 fma") + _BLOCK.format(i=1, flags="avx avx2 fma"))
    assert cpu_model_name(f) == "AMD EPYC (family 23, model 49, AVX2)"
    f.write_text(_BLOCK.format(i=0, flags="avx2 avx512f avx512bw"))
    assert cpu_model_name(f).endswith("AVX-512)")
    f.write_text("processor\t: 0\nmodel name\t: Some CPU\n")
    assert cpu_model_name(f) == "Some CPU"


def test_without_cpuinfo_falls_back_to_platform(tmp_path):
    assert cpu_model_name(tmp_path / "missing")  # platform's processor or machine name
