"""``cpu-estimate``: process CPU time multiplied by a configured watts-per-core.

Not a measurement: it ignores the GPU, DRAM, idle power and frequency scaling,
and it only sees this process's threads. It is labelled ``estimated`` everywhere
and never compared with a measured baseline. Use it where no sensor exists.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable


class CpuEstimateMeter:
    name = "cpu-estimate"
    estimated = True

    def __init__(
        self, watts_per_core: float, clock: Callable[[], float] = time.process_time
    ) -> None:
        self.watts_per_core = watts_per_core
        self._clock = clock

    def read(self) -> float:
        # process_time sums the CPU seconds of all threads: one busy core for
        # one second is one core-second, i.e. watts_per_core joules.
        return self._clock() * self.watts_per_core

    def fingerprint(self) -> dict[str, str]:
        return {
            "cpu": _cpu_model(),
            "cpu_count": str(os.cpu_count() or 0),
            "watts_per_core": f"{self.watts_per_core:g}",
        }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
