"""Background sampling shared by the hardware meters.

:class:`PeriodicSampler` runs a sampling function in a daemon thread (RAPL
wrap-around safety, NVML power polling); :class:`PowerIntegrator` turns power
samples into a cumulative counter; :func:`probe_update_period_s` measures how
often a stepped counter changes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

DEFAULT_PROBE_TIMEOUT_S = 2.0
PROBE_CHANGES = 4


class PeriodicSampler:
    """Calls ``sample`` every ``interval_s`` in a daemon thread until :meth:`close`.

    The first exception ``sample`` raises stops the thread and is kept in
    ``error`` so the meter can raise it from the next ``read()``.
    """

    def __init__(self, sample: Callable[[], None], interval_s: float, name: str) -> None:
        self.interval_s = interval_s
        self.error: Exception | None = None
        self._sample = sample
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._sample()
            except Exception as exc:
                self.error = exc
                return

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def probe_update_period_s(
    read: Callable[[], float],
    clock: Callable[[], float],
    *,
    changes: int = PROBE_CHANGES,
    timeout_s: float = DEFAULT_PROBE_TIMEOUT_S,
) -> float:
    """Mean time between changes of a stepped counter, read in a tight loop.

    Stops after ``changes`` changes or ``timeout_s``. With fewer than two changes
    the period is at least the time waited, so ``timeout_s`` is returned.
    """
    start_s = clock()
    last = read()
    change_times: list[float] = []
    while len(change_times) < changes and clock() - start_s < timeout_s:
        value = read()
        if value != last:
            change_times.append(clock())
            last = value
    if len(change_times) < 2:
        return timeout_s
    return (change_times[-1] - change_times[0]) / (len(change_times) - 1)


class PowerIntegrator:
    """Cumulative joules from power samples: trapezoids, last power held to the read time."""

    def __init__(self) -> None:
        self.energy_j = 0.0
        self.last_s: float | None = None
        self.last_w = 0.0

    def add(self, time_s: float, power_w: float) -> None:
        if self.last_s is not None and time_s > self.last_s:
            self.energy_j += 0.5 * (power_w + self.last_w) * (time_s - self.last_s)
        if self.last_s is None or time_s >= self.last_s:
            self.last_s, self.last_w = time_s, power_w

    def total_j(self, time_s: float) -> float:
        if self.last_s is None:
            return 0.0
        return self.energy_j + self.last_w * max(0.0, time_s - self.last_s)
