"""A fake of the ``pynvml`` calls that the ``nvml`` meter uses, for tests without a GPU.

Pass an instance where the meter takes an NVML module::

    nvml = FakeNvml([FakeGpu(power_w=120.0)])
    meter = NvmlMeter(nvml=nvml, update_period_s=0.1)
    nvml.gpus[0].energy_mj += 5_000  # the GPU drew 5 J

What each :class:`FakeGpu` field drives:

- ``energy_mj``: the cumulative counter (``nvmlDeviceGetTotalEnergyConsumption``);
  with ``counter_period_s`` set, the counter also advances by ``power_w`` for every
  whole period of the fake's clock, like a real counter that updates in steps.
- ``power_w``: instantaneous power (field ``NVML_FI_DEV_POWER_INSTANT`` and
  ``nvmlDeviceGetPowerUsage``, both in milliwatts).
- ``energy_counter_supported`` / ``power_instant_supported``: ``False`` makes the
  call (or the field) answer "not supported", as on pre-Volta GPUs or old drivers.
- ``processes``: PIDs that ``nvmlDeviceGetComputeRunningProcesses`` reports.
- ``errors``: NVML function name -> error code (``FakeNvml.NVML_ERROR_*``) that the
  function raises for this GPU, e.g. ``{"nvmlDeviceGetPowerUsage": 4}``.

``FakeNvml(init_error=...)`` makes ``nvmlInit`` fail (no driver, no library).
Errors are instances of the ``NVMLError_*`` classes on the fake, with the
integer code in ``.value``, as ``pynvml`` raises them. ``calls`` counts every
call by function name.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar


class FakeNVMLError(Exception):
    """Base of the fake's errors; ``value`` is the NVML return code."""

    value: int = 999

    def __init__(self, value: int | None = None) -> None:
        if value is not None:
            self.value = value
        super().__init__(f"NVML error {self.value}")


# pynvml's error classes by return code, as ``NVMLError_<Name>`` subclasses.
_ERROR_CODES = {
    "Uninitialized": 1,
    "NotSupported": 3,
    "NoPermission": 4,
    "NotFound": 6,
    "DriverNotLoaded": 9,
    "LibraryNotFound": 12,
    "FunctionNotFound": 13,
    "GpuIsLost": 15,
}
_ERRORS: dict[int, type[FakeNVMLError]] = {
    code: type(f"NVMLError_{name}", (FakeNVMLError,), {"value": code})
    for name, code in _ERROR_CODES.items()
}


def nvml_error(code: int) -> FakeNVMLError:
    """The fake's error for an NVML return code (the matching subclass when known)."""
    return _ERRORS.get(code, FakeNVMLError)(code)


class FakeClock:
    """A clock for the fake and the meter: ``advance(s)`` by hand, plus ``tick_s`` per call.

    A non-zero ``tick_s`` lets loops bounded by time (the update-period probe) end
    deterministically without sleeping.
    """

    def __init__(self, start_s: float = 0.0, tick_s: float = 0.0) -> None:
        self.now_s = start_s
        self.tick_s = tick_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds

    def __call__(self) -> float:
        self.now_s += self.tick_s
        return self.now_s


@dataclass
class FakeGpu:
    """One fake GPU; every field can be changed while a meter reads it."""

    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    energy_mj: int = 1_000_000
    power_w: float = 100.0
    counter_period_s: float | None = None
    energy_counter_supported: bool = True
    power_instant_supported: bool = True
    power_limit_w: float = 700.0
    sm_clock_mhz: int = 1755
    mem_clock_mhz: int = 2619
    max_sm_clock_mhz: int = 1980
    max_mem_clock_mhz: int = 2619
    persistence: bool = True
    mig: bool | None = False
    processes: list[int] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)


@dataclass
class FakeValue:
    uiVal: int = 0
    ullVal: int = 0
    dVal: float = 0.0


@dataclass
class FakeFieldValue:
    fieldId: int
    nvmlReturn: int
    valueType: int
    value: FakeValue


@dataclass
class FakeProcess:
    pid: int
    usedGpuMemory: int | None = None


class FakeNvml:
    """The subset of the ``pynvml`` module that the ``nvml`` meter calls."""

    NVML_SUCCESS: ClassVar[int] = 0
    NVML_FI_DEV_POWER_INSTANT: ClassVar[int] = 186
    NVML_CLOCK_SM: ClassVar[int] = 1
    NVML_CLOCK_MEM: ClassVar[int] = 2
    NVML_FEATURE_ENABLED: ClassVar[int] = 1
    NVML_DEVICE_MIG_ENABLE: ClassVar[int] = 1
    NVML_VALUE_TYPE_DOUBLE: ClassVar[int] = 0
    NVML_VALUE_TYPE_UNSIGNED_INT: ClassVar[int] = 1
    NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: ClassVar[int] = 3

    NVMLError = FakeNVMLError

    def __init__(
        self,
        gpus: Sequence[FakeGpu] | None = None,
        *,
        clock: Callable[[], float] | None = None,
        init_error: int | None = None,
        driver_version: str = "550.54.15",
        cuda_driver_version: int = 12040,
    ) -> None:
        self.gpus = list(gpus) if gpus is not None else [FakeGpu()]
        self.clock = clock if clock is not None else FakeClock()
        self.init_error = init_error
        self.driver_version = driver_version
        self.cuda_driver_version = cuda_driver_version
        self.init_count = 0
        self.calls: Counter[str] = Counter()

    @property
    def initialized(self) -> bool:
        """Like NVML, ``nvmlInit`` is counted and each ``nvmlShutdown`` undoes one."""
        return self.init_count > 0

    def _enter(self, function: str, gpu: FakeGpu | None = None) -> None:
        self.calls[function] += 1
        if not self.initialized:
            raise nvml_error(_ERROR_CODES["Uninitialized"])
        if gpu is not None and function in gpu.errors:
            raise nvml_error(gpu.errors[function])

    def nvmlInit(self) -> None:
        self.calls["nvmlInit"] += 1
        if self.init_error is not None:
            raise nvml_error(self.init_error)
        self.init_count += 1

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self.init_count -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        self._enter("nvmlSystemGetDriverVersion")
        return self.driver_version

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._enter("nvmlSystemGetCudaDriverVersion")
        return self.cuda_driver_version

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        self._enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            raise nvml_error(2)  # NVML_ERROR_INVALID_ARGUMENT
        return self.gpus[index]

    def nvmlDeviceGetIndex(self, handle: FakeGpu) -> int:
        self._enter("nvmlDeviceGetIndex", handle)
        return self.gpus.index(handle)

    def nvmlDeviceGetName(self, handle: FakeGpu) -> str:
        self._enter("nvmlDeviceGetName", handle)
        return handle.name

    def nvmlDeviceGetUUID(self, handle: FakeGpu) -> str:
        self._enter("nvmlDeviceGetUUID", handle)
        return handle.uuid

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: FakeGpu) -> int:
        self._enter("nvmlDeviceGetTotalEnergyConsumption", handle)
        if not handle.energy_counter_supported:
            raise nvml_error(_ERROR_CODES["NotSupported"])
        period = handle.counter_period_s
        if period is None:
            return handle.energy_mj
        steps = math.floor(self.clock() / period)
        return handle.energy_mj + round(steps * period * handle.power_w * 1000)

    def nvmlDeviceGetFieldValues(
        self, handle: FakeGpu, field_ids: Sequence[int]
    ) -> list[FakeFieldValue]:
        self._enter("nvmlDeviceGetFieldValues", handle)
        values = []
        for field_id in field_ids:
            if field_id == self.NVML_FI_DEV_POWER_INSTANT and handle.power_instant_supported:
                milliwatts = FakeValue(uiVal=round(handle.power_w * 1000))
                values.append(
                    FakeFieldValue(field_id, 0, self.NVML_VALUE_TYPE_UNSIGNED_INT, milliwatts)
                )
            else:
                values.append(
                    FakeFieldValue(field_id, _ERROR_CODES["NotSupported"], 0, FakeValue())
                )
        return values

    def nvmlDeviceGetPowerUsage(self, handle: FakeGpu) -> int:
        self._enter("nvmlDeviceGetPowerUsage", handle)
        return round(handle.power_w * 1000)

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: FakeGpu) -> int:
        self._enter("nvmlDeviceGetEnforcedPowerLimit", handle)
        return round(handle.power_limit_w * 1000)

    def nvmlDeviceGetClockInfo(self, handle: FakeGpu, clock_type: int) -> int:
        self._enter("nvmlDeviceGetClockInfo", handle)
        return handle.sm_clock_mhz if clock_type == self.NVML_CLOCK_SM else handle.mem_clock_mhz

    def nvmlDeviceGetMaxClockInfo(self, handle: FakeGpu, clock_type: int) -> int:
        self._enter("nvmlDeviceGetMaxClockInfo", handle)
        if clock_type == self.NVML_CLOCK_SM:
            return handle.max_sm_clock_mhz
        return handle.max_mem_clock_mhz

    def nvmlDeviceGetPersistenceMode(self, handle: FakeGpu) -> int:
        self._enter("nvmlDeviceGetPersistenceMode", handle)
        return self.NVML_FEATURE_ENABLED if handle.persistence else 0

    def nvmlDeviceGetMigMode(self, handle: FakeGpu) -> list[int]:
        self._enter("nvmlDeviceGetMigMode", handle)
        if handle.mig is None:
            raise nvml_error(_ERROR_CODES["NotSupported"])
        mode = self.NVML_DEVICE_MIG_ENABLE if handle.mig else 0
        return [mode, mode]

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeGpu) -> list[FakeProcess]:
        self._enter("nvmlDeviceGetComputeRunningProcesses", handle)
        return [FakeProcess(pid, 1 << 30) for pid in handle.processes]


# NVML_ERROR_<NAME> codes and NVMLError_<Name> classes, as the pynvml module has them.
for _name, _code in _ERROR_CODES.items():
    setattr(FakeNvml, "NVML_ERROR_" + re.sub(r"(?<!^)(?=[A-Z])", "_", _name).upper(), _code)
    setattr(FakeNvml, f"NVMLError_{_name}", _ERRORS[_code])
