"""``cpu-estimate``: CPU time multiplied by a configured watts-per-core.

Not a measurement: it ignores the GPU, DRAM, idle power and frequency scaling.
It is labelled ``estimated`` everywhere and never compared with a measured
baseline. Use it where no sensor exists.

Whose CPU time it counts, named in the meter's name (which reports show, and
baselines compare):

* ``cpu-estimate``: this process's threads (the in-process engine);
* ``cpu-estimate (server pid 1234)``: with ``energy_server_pid``, also that
  process's, its reaped children's and its live descendants' (a model server on
  this machine, :func:`~pytest_energy.meters.proc_cpu.process_tree_cpu_s`);
* ``cpu-estimate (whole machine)``: a served model on this machine
  (``http://127.0.0.1...``) without ``energy_server_pid``: the busy time of every
  core from ``/proc/stat``, since the server's process is unknown. The served
  backend switches the meter to it when it connects (:meth:`count_local_server`),
  so in-process evaluations later in the same session count the whole machine
  too; set ``energy_server_pid`` to keep the count to the server.

The count never goes backwards: a descendant that ends without being reaped
takes its CPU time out of the tree, and that drop is carried as an offset.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from pytest_energy.cpuinfo import cpu_flags, cpu_model, vector_isa
from pytest_energy.errors import MeasurementError, MeterError
from pytest_energy.meters.proc_cpu import PROC, machine_busy_cpu_s, process_tree_cpu_s

NAME = "cpu-estimate"


class CpuEstimateMeter:
    estimated = True

    def __init__(
        self,
        watts_per_core: float,
        clock: Callable[[], float] = time.process_time,
        *,
        server_pid: int | None = None,
        proc: Path = PROC,
    ) -> None:
        self.watts_per_core = watts_per_core
        self.server_pid = server_pid
        self.whole_machine = False
        self._clock = clock
        self._proc = proc
        self._offset_s = 0.0
        self._last_s: float | None = None
        if server_pid is not None:
            _server_cpu_s(server_pid, proc, MeterError, "no process with that id runs here")
        self.name = self._name()

    def _name(self) -> str:
        if self.server_pid is not None:
            return f"{NAME} (server pid {self.server_pid})"
        return f"{NAME} (whole machine)" if self.whole_machine else NAME

    def own_cpu_s(self) -> float | None:
        """The CPU seconds this meter counts as the measurement's own (for
        :class:`~pytest_energy.machine_load.LoadProbe`); None: the whole machine's."""
        if self.whole_machine:
            return None
        pid = self.server_pid
        server = (
            0.0
            if pid is None
            else _server_cpu_s(pid, self._proc, MeasurementError, "the process ended")
        )
        return self._clock() + server

    def _counted_s(self) -> float:
        own = self.own_cpu_s()
        if own is not None:
            return own
        busy = machine_busy_cpu_s(self._proc / "stat")
        if busy is None:
            raise MeasurementError(
                f"{self.name} cannot read {self._proc / 'stat'}: it needs Linux's /proc; "
                "give energy_server_pid, or use another meter"
            )
        return busy

    def cpu_seconds(self) -> float:
        """The CPU seconds counted so far, from an arbitrary origin, never decreasing."""
        value = self._counted_s() + self._offset_s
        if self._last_s is not None and value < self._last_s:
            self._offset_s += self._last_s - value
            value = self._last_s
        self._last_s = value
        return value

    def read(self) -> float:
        # One busy core for one second is one core-second, i.e. watts_per_core joules.
        return self.cpu_seconds() * self.watts_per_core

    def count_local_server(self) -> None:
        """A model served on this machine does the work: count the whole machine's CPU
        time from now on, unless ``energy_server_pid`` names the server (the count
        goes on from where it was, so a window across the switch stays whole)."""
        if self.server_pid is not None or self.whole_machine:
            return
        before = self.cpu_seconds()
        self.whole_machine = True
        self._offset_s = before - self._counted_s()
        self.name = self._name()

    def fingerprint(self) -> dict[str, str]:
        return {
            "cpu": cpu_model(),
            "cpu_isa": vector_isa(cpu_flags()),
            "cpu_count": str(os.cpu_count() or 0),
            "watts_per_core": f"{self.watts_per_core:g}",
        }


def _server_cpu_s(pid: int, proc: Path, error: type[MeterError], problem: str) -> float:
    try:
        return process_tree_cpu_s(pid, proc)
    except ProcessLookupError:
        raise error(
            f"energy_server_pid={pid}: {problem}; give the process id "
            "of the model server on this machine (e.g. pgrep -f 'vllm serve'), or unset "
            "energy_server_pid"
        ) from None
