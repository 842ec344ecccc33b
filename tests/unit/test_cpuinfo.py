from __future__ import annotations

from pathlib import Path

import pytest

from pytest_energy.cpuinfo import cpu_flags, cpu_model, vector_isa
from pytest_energy.models import native_cpu_bf16

# Two CPUs a cloud VM names alike: the flags tell them apart.
ZEN2 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse4_2 avx fma avx2\n"
ZEN4 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: sse4_2 avx avx2 avx512f avx512_bf16\n"
SAPPHIRE = (
    "model name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t: avx2 avx512f amx_tile amx_bf16\n"
)
GRAVITON = "processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd evtstrm aes sve\n"


def cpuinfo(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "isa", "bf16"),
    [
        (ZEN2, "avx2", False),
        (ZEN4, "avx512", True),
        (SAPPHIRE, "avx512+amx", True),
        (GRAVITON, "sve", False),
        ("model name\t: Old\nflags\t: fpu sse2\n", "unknown", False),
    ],
)
def test_vector_isa_names_the_widest_extension(
    tmp_path: Path, text: str, isa: str, bf16: bool
) -> None:
    path = cpuinfo(tmp_path, text)
    assert vector_isa(cpu_flags(path)) == isa
    assert native_cpu_bf16(path) is bf16


def test_model_name_and_a_missing_file(tmp_path: Path) -> None:
    assert cpu_model(cpuinfo(tmp_path, ZEN2)) == "AMD EPYC"
    assert cpu_flags(tmp_path / "absent") == frozenset()
    assert cpu_model(tmp_path / "absent")  # platform's name, never empty on a real machine
