"""One measured repeat of an evaluation: the whole run in one strict meter window."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from pytest_energy.backends.traffic import TrafficWindow
from pytest_energy.engine_results import Ledger
from pytest_energy.errors import WindowTooShort
from pytest_energy.locking import shared_device_warned
from pytest_energy.machine_load import LoadProbe, ours_and_server_cpu_s
from pytest_energy.meters.idle import net_energy_j
from pytest_energy.metrics import QuestionRecord, RepeatSample

if TYPE_CHECKING:
    from pytest_energy.backends import Backend
    from pytest_energy.meters.base import EnergyMeter
    from pytest_energy.mmlu import Question
    from pytest_energy.strategies import Strategy

# Repeating a run inside one window stops here: a workload still too short
# after that many runs is too small to measure with this meter.
MAX_RUNS_PER_WINDOW = 64


def measure_repeat(
    runner: Strategy,
    engine: Backend,
    questions: Sequence[Question],
    seed: int,
    *,
    meter: EnergyMeter,
    lock: Callable[[], AbstractContextManager[Any]],
    idle_power_w: Callable[[], float | None],
    server_pid: int | None = None,
) -> tuple[list[QuestionRecord], RepeatSample, dict[str, Any]]:
    """One measured repeat: the whole run in one strict window, phases inside it.

    ``lock`` holds the device while it is measured; ``idle_power_w`` gives the
    meter's idle power (None: unknown). A run too short for the meter's counter
    is repeated inside the window (and divided), never reported as 0 J. When
    phase windows were too short to resolve on their own, the prefill/decode
    split follows their durations and says so in ``details["phase_split"]``.

    A served model's backend has ``traffic_window()``: whether its server served
    other clients during the window (``RepeatSample.exclusive``). The model
    server's CPU time (``server_pid``, :func:`own_cpu`) is not taken for other load.
    """
    watch: Callable[[], AbstractContextManager[TrafficWindow]] = getattr(
        engine, "traffic_window", lambda: nullcontext(TrafficWindow())
    )
    ours = own_cpu(meter, engine, server_pid)
    runs = 1
    while True:
        ledger = Ledger()
        try:
            with (
                lock(),
                shared_device_warned(meter.meter),
                watch() as traffic,
                LoadProbe(own_cpu_s=ours) as load,
            ):
                start = time.perf_counter()
                with meter.window(engine.sync) as total:
                    for _ in range(runs):
                        answered = runner.run(engine, questions, ledger, seed=seed)
                duration_s = (time.perf_counter() - start) / runs
        except WindowTooShort:
            if runs >= MAX_RUNS_PER_WINDOW:
                raise
            runs *= 4
            continue
        break
    energy_j = total.energy_j / runs
    details = dict(ledger.details)
    if runs > 1:
        details["runs_per_window"] = runs
    if ledger.short_windows:
        phase_s = ledger.prefill_s + ledger.decode_s
        share = ledger.prefill_s / phase_s if phase_s else 0.0
        prefill_j, decode_j = energy_j * share, energy_j * (1 - share)
        details["phase_split"] = "by-duration"
    else:
        prefill_j, decode_j = ledger.prefill_j / runs, ledger.decode_j / runs
        details["phase_split"] = "measured"
    details["overhead_j"] = max(0.0, energy_j - prefill_j - decode_j)
    idle_w = idle_power_w()
    if idle_w is not None:
        details["idle_power_w"] = idle_w
        details["net_energy_j"] = net_energy_j(energy_j, duration_s, idle_w)
    sample = RepeatSample(
        energy_j,
        prefill_j,
        decode_j,
        duration_s,
        load.other_cores,
        exclusive=traffic.exclusive,
        other_tokens=traffic.other_tokens,
    )
    return answered, sample, details


def own_cpu(
    meter: EnergyMeter, engine: Backend, server_pid: int | None
) -> Callable[[], float | None]:
    """What the load probe counts as the measurement's own CPU time.

    The meter's own count where it keeps one (``cpu-estimate`` counts a server's
    CPU time itself); otherwise this process's and the server's that
    ``server_pid`` names, or unknown for a served model on this machine without it
    (RAPL measures the server's joules, but its CPU time is not other load).
    """
    counted: Callable[[], float | None] | None = getattr(meter.meter, "own_cpu_s", None)
    if counted is not None:
        return counted
    local = bool(getattr(engine, "local_server", False))
    return functools.partial(ours_and_server_cpu_s, server_pid, local_server=local)
