"""``nvml``: GPU energy from NVIDIA's management library (``pip install nvidia-ml-py``).

Energy comes from the cumulative counter ``nvmlDeviceGetTotalEnergyConsumption``
(millijoules since the driver loaded; Volta and later), summed over the selected
GPUs. Where a GPU has no counter, a daemon thread polls instantaneous power
(field ``NVML_FI_DEV_POWER_INSTANT``; ``nvmlDeviceGetPowerUsage`` only where that
field is missing, which on recent GPUs is a one-second average) and integrates it
with trapezoids; a read between two samples holds the last power until the read.

Caveats: the counter covers the whole board, so other processes on the same GPU
are counted (see :meth:`NvmlMeter.other_processes`); the counter updates in steps
(:attr:`NvmlMeter.update_period_s`, probed once), so short windows are refused;
with MIG enabled the counter belongs to the physical GPU and is refused.
``pynvml`` is imported only when a meter is created.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pytest_energy.errors import MeasurementError, MeterError
from pytest_energy.meters.nvml_library import (
    OTHER_METERS,
    NvmlDriverError,
    NvmlError,
    NvmlMigError,
    NvmlNotSupportedError,
    load_pynvml,
    translate_error,
    visible_devices,
)
from pytest_energy.meters.sampling import (
    DEFAULT_PROBE_TIMEOUT_S,
    PeriodicSampler,
    PowerIntegrator,
    probe_update_period_s,
)

EnergySource = Literal["counter", "power_instant", "power_usage"]
SourceChoice = Literal["auto", "counter", "polled"]

DEFAULT_POLL_INTERVAL_S = 0.02
# The largest boards (B200-class) are rated near 1 kW; twice that is a broken
# reading, not a measurement.
MAX_PLAUSIBLE_W_PER_GPU = 2000.0
_SOURCE_LABELS: dict[EnergySource, str] = {
    "counter": "counter",
    "power_instant": "polled power_instant",
    "power_usage": "polled power_usage (1 s average)",
}


@dataclass(frozen=True)
class GpuProcess:
    """A process that uses a measured GPU; ``device`` is the NVML index."""

    pid: int
    device: str
    used_memory_bytes: int | None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlMeter:
    """GPU energy in joules, summed over the selected GPUs.

    ``devices`` are CUDA ordinals (as in ``cuda:N``), mapped through
    ``CUDA_VISIBLE_DEVICES``; default: every visible GPU. ``nvml`` is the
    ``pynvml`` module or a :class:`~pytest_energy.testing.FakeNvml`. ``source``
    ``"polled"`` forces power polling even where the counter exists (for
    cross-checks). ``update_period_s`` skips the probe. ``background=False``
    leaves power sampling to explicit :meth:`sample_power` calls. Call
    :meth:`close` at the end of the session.
    """

    name = "nvml"
    estimated = False

    def __init__(
        self,
        devices: Sequence[int] | None = None,
        *,
        nvml: Any = None,
        environ: Mapping[str, str] | None = None,
        source: SourceChoice = "auto",
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
        update_period_s: float | None = None,
        probe_timeout_s: float = DEFAULT_PROBE_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
        background: bool = True,
        allow_mig: bool = False,
    ) -> None:
        self._nvml = nvml if nvml is not None else load_pynvml()
        self._clock = clock
        self._lock = threading.Lock()
        self._sampler: PeriodicSampler | None = None
        self._closed = False
        self.poll_interval_s = poll_interval_s
        self._call("starting NVML", self._nvml.nvmlInit)
        try:
            self._select(devices, os.environ if environ is None else environ, allow_mig)
            self.sources = {label: self._choose_source(label, source) for label in self.devices}
            self._integrators = {
                label: PowerIntegrator() for label, s in self.sources.items() if s != "counter"
            }
            if self._integrators:
                self.sample_power()
            self.update_period_s = (
                update_period_s if update_period_s is not None else self._probe(probe_timeout_s)
            )
            if self._integrators and background:
                self._sampler = PeriodicSampler(
                    self.sample_power, poll_interval_s, "pytest-energy-nvml"
                )
        except BaseException:
            self.close()
            raise

    def _call(self, doing: str, function: Callable[..., Any], *args: Any) -> Any:
        try:
            return function(*args)
        except self._nvml.NVMLError as exc:
            raise translate_error(self._nvml, exc, doing) from None

    def _optional(self, function: Callable[..., Any], *args: Any) -> Any:
        try:
            return function(*args)
        except (self._nvml.NVMLError, AttributeError):
            return None

    def _select(
        self, devices: Sequence[int] | None, env: Mapping[str, str], allow_mig: bool
    ) -> None:
        nv = self._nvml
        count = int(self._call("counting GPUs", nv.nvmlDeviceGetCount))
        handles = [
            self._call(f"opening GPU {i}", nv.nvmlDeviceGetHandleByIndex, i) for i in range(count)
        ]
        uuids = [
            _text(self._call(f"reading GPU {i}'s UUID", nv.nvmlDeviceGetUUID, h))
            for i, h in enumerate(handles)
        ]
        spec = env.get("CUDA_VISIBLE_DEVICES")
        visible = visible_devices(spec, uuids)
        if not visible:
            where = (
                "NVML sees no GPU"
                if spec is None
                else f"CUDA_VISIBLE_DEVICES={spec!r} hides every GPU"
            )
            raise NvmlDriverError(f"{where}; check nvidia-smi, {OTHER_METERS}")
        chosen = visible
        if devices is not None and not devices:
            raise NvmlError("no GPU selected; pass CUDA ordinals, or None for every visible GPU")
        if devices is not None:
            for ordinal in devices:
                if not 0 <= ordinal < len(visible):
                    raise NvmlError(
                        f"cuda:{ordinal} is not a visible GPU ({len(visible)} visible, "
                        f"CUDA_VISIBLE_DEVICES={spec!r}); choose cuda:0 to cuda:{len(visible) - 1}"
                    )
            chosen = [visible[ordinal] for ordinal in dict.fromkeys(devices)]
        self.devices = [str(index) for index in chosen]
        self._handles = {str(index): handles[index] for index in chosen}
        self._uuids = {str(index): uuids[index] for index in chosen}
        for label, handle in self._handles.items():
            if not allow_mig and self._mig_enabled(handle):
                name = _text(self._optional(nv.nvmlDeviceGetName, handle))
                raise NvmlMigError(
                    f"GPU {label} ({name}) has MIG enabled: NVML counts energy for the whole "
                    "physical GPU, including every other MIG instance's work, so it cannot be "
                    f"attributed to this test; disable MIG (sudo nvidia-smi -i {label} -mig 0) "
                    "or use --energy-meter curve"
                )

    def _mig_enabled(self, handle: Any) -> bool:
        modes = self._optional(self._nvml.nvmlDeviceGetMigMode, handle)
        return modes is not None and modes[0] == self._nvml.NVML_DEVICE_MIG_ENABLE

    def _choose_source(self, label: str, choice: SourceChoice) -> EnergySource:
        nv = self._nvml
        handle = self._handles[label]
        if choice != "polled":
            try:
                nv.nvmlDeviceGetTotalEnergyConsumption(handle)
                return "counter"
            except nv.NVMLError as exc:
                error = translate_error(nv, exc, f"reading GPU {label}'s energy counter")
                if choice == "counter" or not isinstance(error, NvmlNotSupportedError):
                    raise error from None
        try:
            self._field_power_w(label)
            return "power_instant"
        except (nv.NVMLError, NvmlError, AttributeError):
            pass  # no instantaneous-power field on this GPU, driver or nvidia-ml-py
        self._call(f"reading GPU {label}'s power", nv.nvmlDeviceGetPowerUsage, handle)
        return "power_usage"

    def _field_power_w(self, label: str) -> float:
        nv = self._nvml
        value = nv.nvmlDeviceGetFieldValues(self._handles[label], [nv.NVML_FI_DEV_POWER_INSTANT])[0]
        if value.nvmlReturn != nv.NVML_SUCCESS:
            raise NvmlError(
                f"reading GPU {label}'s instantaneous power failed (NVML code "
                f"{value.nvmlReturn}); check nvidia-smi or use --energy-meter curve"
            )
        if value.valueType == nv.NVML_VALUE_TYPE_DOUBLE:
            milliwatts = float(value.value.dVal)
        elif value.valueType == nv.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG:
            milliwatts = float(value.value.ullVal)
        else:
            milliwatts = float(value.value.uiVal)
        return milliwatts / 1000

    def _power_w(self, label: str) -> float:
        doing = f"reading GPU {label}'s power"
        if self.sources[label] == "power_instant":
            return float(self._call(doing, self._field_power_w, label))
        handle = self._handles[label]
        return float(self._call(doing, self._nvml.nvmlDeviceGetPowerUsage, handle)) / 1000

    def _energy_mj(self, label: str) -> float:
        doing = f"reading GPU {label}'s energy counter"
        handle = self._handles[label]
        return float(self._call(doing, self._nvml.nvmlDeviceGetTotalEnergyConsumption, handle))

    def _probe(self, timeout_s: float) -> float:
        counters = [label for label, s in self.sources.items() if s == "counter"]
        if not counters:
            return self.poll_interval_s
        period_s = probe_update_period_s(
            lambda: self._energy_mj(counters[0]), self._clock, timeout_s=timeout_s
        )
        return max(period_s, self.poll_interval_s) if self._integrators else period_s

    def sample_power(self) -> None:
        """Take one power sample of every polled GPU (the background thread calls this)."""
        readings = [(label, self._power_w(label)) for label in self._integrators]
        now_s = self._clock()
        with self._lock:
            for label, power_w in readings:
                self._integrators[label].add(now_s, power_w)

    def read_devices(self) -> dict[str, float]:
        """Cumulative joules per GPU, keyed by NVML index (``"0"``, ``"1"``...)."""
        error = self._sampler.error if self._sampler is not None else None
        if isinstance(error, MeterError):
            raise error
        if error is not None:
            raise NvmlError(f"NVML power polling failed ({error}); rerun the session")
        now_s = self._clock()
        readings: dict[str, float] = {}
        for label in self.devices:
            if self.sources[label] == "counter":
                readings[label] = self._energy_mj(label) / 1000
            else:
                with self._lock:
                    readings[label] = self._integrators[label].total_j(now_s)
        return readings

    def read(self) -> float:
        return sum(self.read_devices().values())

    def check_window(self, energy_j: float, duration_s: float) -> None:
        """Refuse windows that cannot be a measurement (called by ``EnergyMeter``)."""
        gpus = f"GPU {','.join(self.devices)}"
        if duration_s <= 0:
            raise MeasurementError(f"nvml window on {gpus} has zero length; measure more work")
        if energy_j <= 0:
            raise MeasurementError(
                f"nvml counted {energy_j:.3f} J in {duration_s * 1000:.1f} ms on {gpus}; a GPU "
                "always draws power, so the counter did not advance; measure a larger workload"
            )
        limit_w = MAX_PLAUSIBLE_W_PER_GPU * len(self.devices)
        if energy_j / duration_s > limit_w:
            raise MeasurementError(
                f"nvml counted {energy_j / duration_s:.0f} W on average on {gpus}, above the "
                f"plausible {limit_w:.0f} W; the counter jumped (driver reload or GPU reset?)"
            )

    def other_processes(self, own_pids: Collection[int] | None = None) -> list[GpuProcess]:
        """Compute processes on the measured GPUs other than ``own_pids`` (default: this one).

        In a container NVML may report host PIDs, so this process can appear too.
        """
        own = {os.getpid()} if own_pids is None else set(own_pids)
        nv = self._nvml
        found: list[GpuProcess] = []
        for label, handle in self._handles.items():
            try:
                processes = nv.nvmlDeviceGetComputeRunningProcesses(handle)
            except nv.NVMLError as exc:
                error = translate_error(nv, exc, f"listing processes on GPU {label}")
                if isinstance(error, NvmlNotSupportedError):
                    continue
                raise error from None
            for process in processes:
                if int(process.pid) not in own:
                    memory = getattr(process, "usedGpuMemory", None)
                    found.append(GpuProcess(int(process.pid), label, memory))
        return found

    def fingerprint(self) -> dict[str, str]:
        """Hardware identity for baselines: stable values only (max clocks, not current)."""
        nv = self._nvml
        per_gpu = [self._gpu_facts(handle) for handle in self._handles.values()]
        cuda = self._optional(nv.nvmlSystemGetCudaDriverVersion)
        driver = self._optional(nv.nvmlSystemGetDriverVersion)
        return {
            "gpu_count": str(len(self.devices)),
            "gpu_uuid": ",".join(self._uuids.values()),
            "nvidia_driver": "n/a" if driver is None else _text(driver),
            "cuda_driver": "n/a" if cuda is None else f"{cuda // 1000}.{cuda % 1000 // 10}",
            **{key: ",".join(facts[key] for facts in per_gpu) for key in per_gpu[0]},
            "energy_source": ",".join(_SOURCE_LABELS[s] for s in self.sources.values()),
        }

    def _gpu_facts(self, handle: Any) -> dict[str, str]:
        nv = self._nvml

        def get(function: Callable[..., Any], *args: Any) -> str:
            value = self._optional(function, handle, *args)
            return "n/a" if value is None else _text(value)

        limit_mw = self._optional(nv.nvmlDeviceGetEnforcedPowerLimit, handle)
        persistence = self._optional(nv.nvmlDeviceGetPersistenceMode, handle)
        mig = self._optional(nv.nvmlDeviceGetMigMode, handle)
        return {
            "gpu": get(nv.nvmlDeviceGetName),
            "power_limit_w": "n/a" if limit_mw is None else f"{limit_mw / 1000:g}",
            "max_sm_clock_mhz": get(nv.nvmlDeviceGetMaxClockInfo, nv.NVML_CLOCK_SM),
            "max_mem_clock_mhz": get(nv.nvmlDeviceGetMaxClockInfo, nv.NVML_CLOCK_MEM),
            "persistence_mode": "n/a"
            if persistence is None
            else ("on" if persistence == nv.NVML_FEATURE_ENABLED else "off"),
            "mig_mode": "n/a"
            if mig is None
            else ("enabled" if mig[0] == nv.NVML_DEVICE_MIG_ENABLE else "disabled"),
        }

    def current_clocks_mhz(self) -> dict[str, str]:
        """Current SM and memory clocks (for run metadata; they vary, so not in the fingerprint)."""
        nv = self._nvml
        return {
            f"gpu{label}_{kind}_clock_mhz": str(self._optional(nv.nvmlDeviceGetClockInfo, h, clk))
            for label, h in self._handles.items()
            for kind, clk in (("sm", nv.NVML_CLOCK_SM), ("mem", nv.NVML_CLOCK_MEM))
        }

    def close(self) -> None:
        """Stop power polling and shut NVML down (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._sampler is not None:
            self._sampler.close()
        self._optional(self._nvml.nvmlShutdown)
