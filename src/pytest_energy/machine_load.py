"""Other work on the machine during a measurement, from ``/proc/stat``.

A CPU meter (``cpu-estimate``, ``rapl``) counts what the cores did; when other
processes keep cores busy, the measured run is slowed (cache and memory
contention, OpenMP threads spin-waiting for a core) and RAPL adds their joules
outright. :class:`LoadProbe` measures, over one window, how many cores the rest
of the machine kept busy on average: all busy CPU time from ``/proc/stat``
minus this process's own (``os.times``), divided by the wall time. Linux only;
elsewhere it reports nothing. A model server on this machine works for us: its
CPU time is ours too (:func:`ours_and_server_cpu_s`), not other load. Where its
process is unknown (no ``energy_server_pid``) its work cannot be told from
other load, which is then unknown (None). A meter that counts a server's CPU
time itself (``cpu-estimate``) gives its own count of "ours" (``own_cpu_s``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from pytest_energy.meters.proc_cpu import PROC, machine_busy_cpu_s, process_tree_cpu_s

PROC_STAT = Path("/proc/stat")


class LoadProbe:
    """``with LoadProbe() as probe: ...``; then ``probe.other_cores`` (None: unknown)."""

    def __init__(
        self, stat: Path = PROC_STAT, own_cpu_s: Callable[[], float | None] | None = None
    ) -> None:
        self._stat = stat
        self._own_cpu_s = own_cpu_s or _process_cpu_s
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
        busy = machine_busy_cpu_s(self._stat)
        own = self._own_cpu_s()
        if busy is None or own is None:
            return None
        return busy, own, time.monotonic()


def _process_cpu_s() -> float:
    mine = os.times()
    return mine.user + mine.system


def ours_and_server_cpu_s(
    server_pid: int | None, *, local_server: bool, proc: Path = PROC
) -> float | None:
    """The CPU seconds that worked for the measurement: this process's, and with
    ``server_pid`` the model server's process tree. None (unknown) for a server on
    this machine without its pid, or one that has ended."""
    if server_pid is not None:
        try:
            return _process_cpu_s() + process_tree_cpu_s(server_pid, proc)
        except ProcessLookupError:
            return None
    return None if local_server else _process_cpu_s()
