"""Other work on the machine during a measurement, from ``/proc/stat``.

A CPU meter (``cpu-estimate``, ``rapl``) counts what the cores did; when other
processes keep cores busy, the measured run is slowed (cache and memory
contention, OpenMP threads spin-waiting for a core) and RAPL adds their joules
outright. :class:`LoadProbe` measures, over one window, how many cores the rest
of the machine kept busy on average: all busy CPU time from ``/proc/stat``
minus this process's own (``os.times``), divided by the wall time. Linux only;
elsewhere it reports nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PROC_STAT = Path("/proc/stat")
# /proc/stat "cpu" columns that are not work: idle and iowait.
_IDLE_COLUMNS = (3, 4)


class LoadProbe:
    """``with LoadProbe() as probe: ...``; then ``probe.other_cores`` (None: unknown)."""

    def __init__(self, stat: Path = PROC_STAT) -> None:
        self._stat = stat
        self.other_cores: float | None = None
        self._start: tuple[float, float, float] | None = None

    def __enter__(self) -> LoadProbe:
        self._start = self._sample()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._sample()
        if self._start is None or end is None:
            return
        busy, own, wall = (b - a for a, b in zip(self._start, end, strict=True))
        if wall > 0:
            self.other_cores = max(0.0, (busy - own) / wall)

    def _sample(self) -> tuple[float, float, float] | None:
        try:
            first = self._stat.read_text(encoding="ascii").split("\n", 1)[0].split()
        except OSError:
            return None
        if not first or first[0] != "cpu":
            return None
        ticks = os.sysconf("SC_CLK_TCK")
        columns = [int(v) for v in first[1:9]]
        busy = sum(v for i, v in enumerate(columns) if i not in _IDLE_COLUMNS) / ticks
        mine = os.times()
        return busy, mine.user + mine.system, time.monotonic()
