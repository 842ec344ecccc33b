"""What ``/proc/cpuinfo`` says about this machine's CPU: its model and vector units.

Cloud VMs often name the CPU only by family (``AMD EPYC``), although CPUs of one
family differ in the vector instructions they run, and with them in the speed and
energy of a model's matmuls: torch dispatches AVX-512 or AVX2 kernels by what the
CPU has. :func:`vector_isa` names the widest the CPU reports, so that a CPU
meter's fingerprint tells such machines apart where the model name cannot.
"""

from __future__ import annotations

import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
# The widest vector extension first: x86 "flags", ARM "Features".
_WIDEST = (
    ("avx512f", "avx512"),
    ("avx2", "avx2"),
    ("avx", "avx"),
    ("sse4_2", "sse4.2"),
    ("sve", "sve"),
    ("asimd", "neon"),
)


def _first_line(prefix: str, cpuinfo: Path) -> str | None:
    """The value of the first ``prefix ...: value`` line of ``cpuinfo``, or None."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip() if ":" in line else ""
    except OSError:
        pass
    return None


def cpu_model(cpuinfo: Path = CPUINFO) -> str:
    """The CPU's model name (``platform`` where ``/proc/cpuinfo`` has none)."""
    return _first_line("model name", cpuinfo) or platform.processor() or platform.machine()


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The instruction-set flags the CPU reports (empty where none are known)."""
    line = _first_line("flags", cpuinfo) or _first_line("Features", cpuinfo) or ""
    return frozenset(line.split())


def vector_isa(flags: frozenset[str]) -> str:
    """The widest vector extension in ``flags``, with ``+amx`` where the CPU has AMX
    tiles: ``avx512+amx``, ``avx512``, ``avx2``, ``neon``...; ``unknown`` without flags."""
    name = next((name for flag, name in _WIDEST if flag in flags), "unknown")
    return f"{name}+amx" if "amx_tile" in flags else name


__all__ = ["cpu_flags", "cpu_model", "vector_isa"]
