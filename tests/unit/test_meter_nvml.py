from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from pytest_energy.errors import MeasurementError
from pytest_energy.meters.nvml import GpuProcess, NvmlMeter
from pytest_energy.meters.nvml_library import (
    NvmlDriverError,
    NvmlError,
    NvmlMigError,
    NvmlNotInstalledError,
    NvmlNotSupportedError,
    NvmlPermissionError,
    load_pynvml,
    visible_devices,
)
from pytest_energy.meters.sampling import PowerIntegrator, probe_update_period_s
from pytest_energy.testing import FakeClock, FakeGpu, FakeNvml

UUIDS = [
    "GPU-aaaa1111-0000-0000-0000-000000000000",
    "GPU-bbbb2222-0000-0000-0000-000000000000",
    "GPU-bbbb3333-0000-0000-0000-000000000000",
]


def three_gpus() -> FakeNvml:
    return FakeNvml([FakeGpu(uuid=uuid, energy_mj=1000 * (i + 1)) for i, uuid in enumerate(UUIDS)])


def make_meter(nvml: FakeNvml, devices: list[int] | None = None, **kwargs: Any) -> NvmlMeter:
    options: dict[str, Any] = {"environ": {}, "update_period_s": 0.1, "background": False}
    options.update(kwargs)
    return NvmlMeter(devices, nvml=nvml, **options)


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        time.sleep(0.005)


def test_energy_is_the_counter_summed_over_gpus() -> None:
    meter = make_meter(three_gpus())
    assert meter.read_devices() == {"0": 1.0, "1": 2.0, "2": 3.0}
    assert meter.read() == pytest.approx(6.0)


def test_counter_advance_is_read_in_joules() -> None:
    nvml = FakeNvml([FakeGpu(energy_mj=5_000)])
    meter = make_meter(nvml)
    before = meter.read()
    nvml.gpus[0].energy_mj += 2_500
    assert meter.read() - before == pytest.approx(2.5)
    assert meter.sources == {"0": "counter"}


def test_cuda_visible_devices_integer_indices_choose_and_order_gpus() -> None:
    meter = make_meter(three_gpus(), environ={"CUDA_VISIBLE_DEVICES": "2,0"})
    assert meter.devices == ["2", "0"]
    assert meter.read() == pytest.approx(4.0)


def test_device_ordinals_are_cuda_ordinals_within_the_visible_gpus() -> None:
    meter = make_meter(three_gpus(), [1], environ={"CUDA_VISIBLE_DEVICES": "2,0"})
    assert meter.devices == ["0"]


def test_cuda_visible_devices_accepts_uuids_and_unique_prefixes() -> None:
    assert visible_devices(f"{UUIDS[2]},GPU-aaaa", UUIDS) == [2, 0]


def test_cuda_visible_devices_list_ends_at_first_unknown_or_ambiguous_entry() -> None:
    assert visible_devices("1,7,0", UUIDS) == [1]
    assert visible_devices("0,GPU-bbbb", UUIDS) == [0]
    assert visible_devices(None, UUIDS) == [0, 1, 2]


def test_cuda_visible_devices_naming_a_mig_instance_is_refused() -> None:
    with pytest.raises(NvmlMigError, match="per physical GPU"):
        visible_devices("MIG-1234", UUIDS)


def test_cuda_visible_devices_hiding_every_gpu_is_a_driver_error() -> None:
    with pytest.raises(NvmlDriverError, match="hides every GPU"):
        make_meter(three_gpus(), environ={"CUDA_VISIBLE_DEVICES": ""})


def test_ordinal_beyond_the_visible_gpus_is_an_error_naming_the_range() -> None:
    with pytest.raises(NvmlError, match=r"cuda:3 is not a visible GPU .*cuda:0 to cuda:2"):
        make_meter(three_gpus(), [3])


def test_gpu_without_energy_counter_integrates_instant_power() -> None:
    clock = FakeClock(start_s=10.0)
    nvml = FakeNvml([FakeGpu(energy_counter_supported=False, power_w=100.0)], clock=clock)
    meter = make_meter(nvml, clock=clock)
    assert meter.sources == {"0": "power_instant"}
    start = meter.read()
    clock.advance(1.0)
    nvml.gpus[0].power_w = 200.0
    meter.sample_power()
    assert meter.read() - start == pytest.approx(150.0)  # trapezoid of 100 W -> 200 W over 1 s
    assert nvml.calls["nvmlDeviceGetPowerUsage"] == 0


def test_read_between_power_samples_holds_the_last_power() -> None:
    clock = FakeClock()
    nvml = FakeNvml([FakeGpu(energy_counter_supported=False, power_w=80.0)], clock=clock)
    meter = make_meter(nvml, clock=clock)
    start = meter.read()
    clock.advance(0.5)
    nvml.gpus[0].power_w = 300.0  # not sampled yet
    assert meter.read() - start == pytest.approx(40.0)


def test_power_usage_is_polled_only_when_the_instant_field_is_unsupported() -> None:
    clock = FakeClock()
    gpu = FakeGpu(energy_counter_supported=False, power_instant_supported=False, power_w=50.0)
    nvml = FakeNvml([gpu], clock=clock)
    meter = make_meter(nvml, clock=clock)
    assert meter.sources == {"0": "power_usage"}
    assert meter.fingerprint()["energy_source"] == "polled power_usage (1 s average)"
    start = meter.read()
    clock.advance(2.0)
    meter.sample_power()
    assert meter.read() - start == pytest.approx(100.0)
    assert nvml.calls["nvmlDeviceGetPowerUsage"] >= 2


def test_polled_source_can_be_forced_where_the_counter_exists() -> None:
    meter = make_meter(FakeNvml([FakeGpu()]), source="polled")
    assert meter.sources == {"0": "power_instant"}
    assert meter.fingerprint()["energy_source"] == "polled power_instant"


def test_gpu_without_counter_or_power_sensor_is_not_supported() -> None:
    gpu = FakeGpu(
        energy_counter_supported=False,
        power_instant_supported=False,
        errors={"nvmlDeviceGetPowerUsage": FakeNvml.NVML_ERROR_NOT_SUPPORTED},
    )
    with pytest.raises(NvmlNotSupportedError, match="GPU 0's power is not supported"):
        make_meter(FakeNvml([gpu]))


def test_background_thread_polls_power_until_closed() -> None:
    nvml = FakeNvml([FakeGpu(energy_counter_supported=False)])
    meter = NvmlMeter(nvml=nvml, environ={}, poll_interval_s=0.002, clock=time.monotonic)
    wait_until(lambda: nvml.calls["nvmlDeviceGetFieldValues"] >= 6)
    meter.close()
    polls = nvml.calls["nvmlDeviceGetFieldValues"]
    time.sleep(0.02)
    assert nvml.calls["nvmlDeviceGetFieldValues"] == polls
    assert not nvml.initialized


def test_failure_in_the_polling_thread_surfaces_on_read() -> None:
    nvml = FakeNvml([FakeGpu(energy_counter_supported=False)])
    meter = NvmlMeter(nvml=nvml, environ={}, poll_interval_s=0.002, clock=time.monotonic)
    nvml.gpus[0].errors["nvmlDeviceGetFieldValues"] = FakeNvml.NVML_ERROR_GPU_IS_LOST

    def read_fails() -> bool:
        try:
            meter.read()
        except NvmlError as exc:
            return "GPU 0's power" in str(exc)
        return False

    wait_until(read_fails)
    meter.close()


def test_update_period_is_probed_from_counter_steps() -> None:
    clock = FakeClock(tick_s=0.001)
    nvml = FakeNvml([FakeGpu(counter_period_s=0.05)], clock=clock)
    meter = NvmlMeter(nvml=nvml, environ={}, clock=clock, background=False)
    assert meter.update_period_s == pytest.approx(0.05, rel=0.05)


def test_probe_of_a_frozen_counter_gives_the_time_waited() -> None:
    assert probe_update_period_s(lambda: 1.0, FakeClock(tick_s=0.01), timeout_s=0.5) == 0.5


def test_polled_meter_update_period_is_the_poll_interval() -> None:
    meter = make_meter(
        FakeNvml([FakeGpu()]), source="polled", poll_interval_s=0.03, update_period_s=None
    )
    assert meter.update_period_s == 0.03


def test_trapezoid_integration_of_changing_power() -> None:
    integrator = PowerIntegrator()
    assert integrator.total_j(5.0) == 0.0
    for time_s, power_w in [(0.0, 0.0), (1.0, 100.0), (3.0, 100.0)]:
        integrator.add(time_s, power_w)
    assert integrator.total_j(3.0) == pytest.approx(250.0)
    assert integrator.total_j(4.0) == pytest.approx(350.0)


@pytest.mark.parametrize(
    ("energy_j", "duration_s", "reason"),
    [
        (5.0, 0.0, "zero length"),
        (0.0, 1.0, "did not advance"),
        (-1.0, 1.0, "did not advance"),
        (4500.0, 1.0, "above the plausible 4000 W"),
    ],
)
def test_windows_that_cannot_be_measurements_are_refused(
    energy_j: float, duration_s: float, reason: str
) -> None:
    meter = make_meter(FakeNvml([FakeGpu(), FakeGpu(uuid="GPU-1")]))
    with pytest.raises(MeasurementError, match=reason):
        meter.check_window(energy_j, duration_s)


def test_plausible_window_passes_the_check() -> None:
    make_meter(FakeNvml([FakeGpu()])).check_window(300.0, 1.0)


def test_other_processes_lists_foreign_pids_on_the_measured_gpus() -> None:
    nvml = FakeNvml(
        [FakeGpu(processes=[os.getpid(), 4242]), FakeGpu(uuid="GPU-1", processes=[777])]
    )
    assert make_meter(nvml).other_processes() == [
        GpuProcess(4242, "0", 1 << 30),
        GpuProcess(777, "1", 1 << 30),
    ]
    assert make_meter(nvml, [0]).other_processes(own_pids={4242}) == [
        GpuProcess(os.getpid(), "0", 1 << 30)
    ]


def test_other_processes_is_empty_where_the_listing_is_unsupported() -> None:
    gpu = FakeGpu(
        processes=[4242],
        errors={"nvmlDeviceGetComputeRunningProcesses": FakeNvml.NVML_ERROR_NOT_SUPPORTED},
    )
    assert make_meter(FakeNvml([gpu])).other_processes() == []


def test_fingerprint_describes_the_gpus_driver_and_energy_source() -> None:
    gpus = [FakeGpu(uuid="GPU-a"), FakeGpu(uuid="GPU-b", persistence=False, power_limit_w=350.5)]
    assert make_meter(FakeNvml(gpus)).fingerprint() == {
        "gpu": "NVIDIA H100 80GB HBM3,NVIDIA H100 80GB HBM3",
        "gpu_count": "2",
        "gpu_uuid": "GPU-a,GPU-b",
        "nvidia_driver": "550.54.15",
        "cuda_driver": "12.4",
        "power_limit_w": "700,350.5",
        "max_sm_clock_mhz": "1980,1980",
        "max_mem_clock_mhz": "2619,2619",
        "persistence_mode": "on,off",
        "mig_mode": "disabled,disabled",
        "energy_source": "counter,counter",
    }


def test_fingerprint_marks_queries_the_gpu_cannot_answer() -> None:
    gpu = FakeGpu(mig=None, errors={"nvmlDeviceGetEnforcedPowerLimit": 3})
    fingerprint = make_meter(FakeNvml([gpu])).fingerprint()
    assert fingerprint["mig_mode"] == "n/a"
    assert fingerprint["power_limit_w"] == "n/a"


def test_current_clocks_are_reported_outside_the_fingerprint() -> None:
    meter = make_meter(FakeNvml([FakeGpu(sm_clock_mhz=1410)]))
    assert meter.current_clocks_mhz() == {"gpu0_sm_clock_mhz": "1410", "gpu0_mem_clock_mhz": "2619"}


def test_mig_enabled_gpu_is_refused_and_nvml_shut_down() -> None:
    nvml = FakeNvml([FakeGpu(mig=True)])
    with pytest.raises(NvmlMigError, match="whole physical GPU") as info:
        make_meter(nvml)
    assert "nvidia-smi -i 0 -mig 0" in str(info.value)
    assert not nvml.initialized


def test_mig_can_be_allowed_and_is_then_in_the_fingerprint() -> None:
    meter = make_meter(FakeNvml([FakeGpu(mig=True)]), allow_mig=True)
    assert meter.fingerprint()["mig_mode"] == "enabled"


@pytest.mark.parametrize(
    ("init_error", "error_type", "hint"),
    [
        (FakeNvml.NVML_ERROR_DRIVER_NOT_LOADED, NvmlDriverError, "nvidia-smi"),
        (FakeNvml.NVML_ERROR_LIBRARY_NOT_FOUND, NvmlDriverError, "libnvidia-ml.so.1 not found"),
        (FakeNvml.NVML_ERROR_NO_PERMISSION, NvmlPermissionError, "/dev/nvidia"),
    ],
)
def test_nvml_start_failures_are_typed_one_line_errors(
    init_error: int, error_type: type[NvmlError], hint: str
) -> None:
    with pytest.raises(error_type, match=hint) as info:
        make_meter(FakeNvml(init_error=init_error))
    assert "\n" not in str(info.value)
    assert "--energy-meter" in str(info.value)


def test_permission_denied_on_the_counter_is_a_permission_error() -> None:
    gpu = FakeGpu(errors={"nvmlDeviceGetTotalEnergyConsumption": 4})
    with pytest.raises(NvmlPermissionError, match="GPU 0's energy counter"):
        make_meter(FakeNvml([gpu]))


def test_missing_nvidia_ml_py_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(NvmlNotInstalledError, match=r"pip install 'pytest-energy\[nvml\]'"):
        load_pynvml()


def test_close_shuts_nvml_down_once() -> None:
    nvml = FakeNvml([FakeGpu()])
    meter = make_meter(nvml)
    meter.close()
    meter.close()
    assert not nvml.initialized
    assert nvml.calls["nvmlShutdown"] == 1


def test_closing_one_meter_leaves_another_on_the_same_nvml_working() -> None:
    nvml = FakeNvml([FakeGpu(energy_mj=3_000)])
    first, second = make_meter(nvml), make_meter(nvml)
    first.close()
    assert second.read() == pytest.approx(3.0)
    second.close()
    assert not nvml.initialized


def test_instant_power_field_failing_mid_run_is_a_meter_error() -> None:
    clock = FakeClock()
    nvml = FakeNvml([FakeGpu(energy_counter_supported=False)], clock=clock)
    meter = make_meter(nvml, clock=clock)
    nvml.gpus[0].power_instant_supported = False
    with pytest.raises(NvmlError, match="GPU 0's instantaneous power failed"):
        meter.sample_power()
