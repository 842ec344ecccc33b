"""Idle power: what the hardware draws while nothing runs, to report net-of-idle energy.

A GPU or CPU package draws tens of watts doing nothing; a test's gross energy
includes that floor. The plugin measures one quiet window per session (before
the first evaluation, so no model is running) and reports
``net_energy_j = energy_j - idle_power_w * duration_s`` next to the gross value.
Estimated meters have no idle floor to measure and give ``None``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pytest_energy.meters.base import EnergyMeter

DEFAULT_IDLE_WINDOW_S = 1.5


def measure_idle_power_w(
    meter: EnergyMeter,
    *,
    duration_s: float = DEFAULT_IDLE_WINDOW_S,
    sleep: Callable[[float], None] = time.sleep,
) -> float | None:
    """Mean power over a quiet window of at least ``duration_s`` (``None`` for estimates).

    The window is stretched to twice the meter's ``min_window_s`` when that is
    longer, and it goes through the meter's usual checks, so a broken reading
    raises :class:`~pytest_energy.errors.MeasurementError` rather than giving 0 W.
    """
    if meter.estimated:
        return None
    with meter.window() as window:
        sleep(max(duration_s, 2 * meter.min_window_s))
    return window.energy_j / window.duration_s


def net_energy_j(energy_j: float, duration_s: float, idle_power_w: float | None) -> float:
    """Energy above the idle floor, never below zero (gross energy when idle is unknown)."""
    if idle_power_w is None:
        return energy_j
    return max(0.0, energy_j - idle_power_w * duration_s)


class IdlePower:
    """Measures idle power on first use and remembers it for the session."""

    def __init__(self, meter: EnergyMeter, duration_s: float = DEFAULT_IDLE_WINDOW_S) -> None:
        self._meter = meter
        self._duration_s = duration_s
        self._measured = False
        self._power_w: float | None = None

    def power_w(self) -> float | None:
        if not self._measured:
            self._power_w = measure_idle_power_w(self._meter, duration_s=self._duration_s)
            self._measured = True
        return self._power_w
