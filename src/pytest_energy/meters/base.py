"""The meter protocol: a cumulative energy counter, and windows over it.

A meter only has to say how many joules it has counted since an arbitrary
origin. A :class:`Window` subtracts two readings, so every meter (hardware
counter, integrated power, CPU-time estimate, operating curve) is measured the
same way, and a fake meter is a counter that a test advances by hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from pytest_energy import __version__
from pytest_energy.errors import MeasurementError, WindowTooShort

Phase = Literal["prefill", "decode"]


@runtime_checkable
class Meter(Protocol):
    """A cumulative energy counter.

    ``name`` is what reports show (``nvml``, ``rapl``, ``cpu-estimate``, ``curve``);
    ``estimated`` is true when the joules are not read from a power sensor.
    ``read()`` returns joules counted since an arbitrary, fixed origin.
    """

    name: str
    estimated: bool

    def read(self) -> float: ...


@runtime_checkable
class TokenAccounting(Protocol):
    """A meter whose count depends on tokens processed rather than on time.

    The engine calls ``account`` once per sequence and phase inside the window
    that measures that phase; the curve meter advances its counter there.
    """

    def account(self, phase: Phase, input_tokens: int, output_tokens: int) -> None: ...


@runtime_checkable
class Fingerprinted(Protocol):
    """A meter that can describe the hardware it measures (for baselines)."""

    def fingerprint(self) -> Mapping[str, str]: ...


@runtime_checkable
class WindowChecked(Protocol):
    """A meter that can tell a plausible window from a broken one (raises MeasurementError)."""

    def check_window(self, energy_j: float, duration_s: float) -> None: ...


@dataclass
class Window:
    """Energy and time between entering and leaving :meth:`EnergyMeter.window`.

    The values are filled when the ``with`` block ends.
    """

    meter: str
    estimated: bool
    energy_j: float = 0.0
    duration_s: float = 0.0
    closed: bool = False
    short: bool = False  # shorter than the counter resolves (only in a non-strict window)
    _accounting: TokenAccounting | None = field(default=None, repr=False)

    def account(self, phase: Phase, input_tokens: int, output_tokens: int) -> None:
        """Tell a token-accounting meter what this window processed (others ignore it)."""
        if self._accounting is not None:
            self._accounting.account(phase, input_tokens, output_tokens)


class EnergyMeter:
    """The session's meter, as the ``energy_meter`` fixture gives it to tests.

    ``with energy_meter.window() as w: ...`` measures the code in the block;
    ``w.energy_j`` and ``w.duration_s`` hold the result afterwards. ``sync`` is
    called right before each reading (the engine passes CUDA synchronisation so
    queued kernels are counted in the window that launched them).
    ``min_window_s`` is the shortest window the counter can resolve: a shorter
    window raises :class:`MeasurementError` instead of reporting 0 J.
    """

    def __init__(self, meter: Meter, *, min_window_s: float = 0.0) -> None:
        self.meter = meter
        self.min_window_s = min_window_s

    @property
    def name(self) -> str:
        return self.meter.name

    @property
    def estimated(self) -> bool:
        return self.meter.estimated

    def fingerprint(self) -> dict[str, str]:
        base = {
            "meter": self.meter.name,
            "estimated": str(self.meter.estimated).lower(),
            "pytest_energy": __version__,
        }
        if isinstance(self.meter, Fingerprinted):
            base.update(self.meter.fingerprint())
        return base

    @contextmanager
    def window(
        self, sync: Callable[[], None] | None = None, *, strict: bool = True
    ) -> Iterator[Window]:
        """Measure the ``with`` block.

        A strict window shorter than ``min_window_s`` raises :class:`WindowTooShort`;
        a non-strict one is marked ``short`` instead, for callers that measure the
        same work in an enclosing strict window too (the engine's phase windows).
        """
        accounting = self.meter if isinstance(self.meter, TokenAccounting) else None
        win = Window(self.meter.name, self.meter.estimated, _accounting=accounting)
        if sync is not None:
            sync()
        start_j = self.meter.read()
        start_s = time.perf_counter()
        yield win
        if sync is not None:
            sync()
        end_j = self.meter.read()
        win.duration_s = time.perf_counter() - start_s
        win.energy_j = end_j - start_j
        win.closed = True
        self._check(win, strict)

    def _check(self, win: Window, strict: bool) -> None:
        if isinstance(self.meter, TokenAccounting):
            if win.energy_j < 0:
                raise MeasurementError(f"meter {win.meter} predicted negative energy")
            return
        if win.duration_s < self.min_window_s and not strict:
            win.short = True
            return
        if win.duration_s < self.min_window_s:
            raise WindowTooShort(
                f"window of {win.duration_s * 1000:.1f} ms is shorter than the {win.meter} "
                f"counter's update period ({self.min_window_s * 1000:.1f} ms); "
                "measure a larger workload (more questions or --energy-repeats)"
            )
        if win.energy_j < 0:
            raise MeasurementError(
                f"meter {win.meter} went backwards by {-win.energy_j:.3f} J; "
                "the counter was reset or wrapped unnoticed"
            )
        if isinstance(self.meter, WindowChecked):
            self.meter.check_window(win.energy_j, win.duration_s)
