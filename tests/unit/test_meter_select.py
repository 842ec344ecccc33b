from __future__ import annotations

import subprocess
import sys
import time
import types
import warnings
from pathlib import Path

import pytest

from pytest_energy.errors import MeterError
from pytest_energy.meters.base import EnergyMeter
from pytest_energy.meters.nvml import NvmlMeter
from pytest_energy.meters.nvml_library import NvmlDriverError
from pytest_energy.meters.select import (
    MIN_WINDOW_PERIODS,
    EnergyEstimateWarning,
    close_meter,
    create_meter,
)
from pytest_energy.settings import Settings
from pytest_energy.testing import FakeGpu, FakeMeter, FakeNvml


def powercap(root: Path) -> Path:
    zone = root / "intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").write_text("1000\n")
    (zone / "max_energy_range_uj").write_text("262143328850\n")
    return root


def working_gpu() -> FakeNvml:
    """Two GPUs on the real clock whose counters step every 10 ms, so the probe ends quickly."""
    gpus = [FakeGpu(uuid=f"GPU-{i}", counter_period_s=0.01) for i in range(2)]
    return FakeNvml(gpus, clock=time.monotonic)


def test_auto_prefers_nvml_when_a_gpu_answers(tmp_path: Path) -> None:
    meter = create_meter(
        "auto", Settings(powercap_root=powercap(tmp_path)), nvml_module=working_gpu()
    )
    try:
        assert meter.name == "nvml"
        assert not meter.estimated
        assert isinstance(meter.meter, NvmlMeter)
        assert meter.min_window_s == pytest.approx(MIN_WINDOW_PERIODS * 0.01, rel=0.3)
    finally:
        close_meter(meter)


def test_auto_uses_rapl_without_a_gpu_and_does_not_warn(tmp_path: Path) -> None:
    settings = Settings(powercap_root=powercap(tmp_path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        meter = create_meter("auto", settings, nvml_module=FakeNvml(init_error=9))
    close_meter(meter)
    assert meter.name == "rapl"
    assert caught == []


def test_auto_skips_nvml_when_the_model_runs_on_the_cpu(tmp_path: Path) -> None:
    nvml = working_gpu()
    meter = create_meter(
        "auto", Settings(powercap_root=powercap(tmp_path), device="cpu"), nvml_module=nvml
    )
    close_meter(meter)
    assert meter.name == "rapl"
    assert nvml.calls["nvmlInit"] == 0


def test_auto_falls_back_to_the_estimate_with_one_warning_naming_each_reason(
    tmp_path: Path,
) -> None:
    settings = Settings(powercap_root=tmp_path / "none", watts_per_core=12.0)
    with pytest.warns(EnergyEstimateWarning) as record:
        meter = create_meter("auto", settings, nvml_module=FakeNvml(init_error=12))
    assert len(record) == 1
    message = str(record[0].message)
    assert "nvml: NVML library libnvidia-ml.so.1 not found" in message
    assert f"rapl: no RAPL powercap counters under {tmp_path / 'none'}" in message
    assert "12 W per busy core" in message
    assert "\n" not in message
    assert meter.name == "cpu-estimate"
    assert meter.estimated


def test_estimate_warning_is_a_user_warning() -> None:
    assert issubclass(EnergyEstimateWarning, UserWarning)


def test_explicit_rapl_without_powercap_is_a_one_line_error_not_a_fallback(
    tmp_path: Path,
) -> None:
    with pytest.raises(MeterError) as info:
        create_meter("rapl", Settings(powercap_root=tmp_path / "none"))
    assert "\n" not in str(info.value)
    assert "use --energy-meter cpu-estimate or nvml" in str(info.value)


def test_explicit_nvml_without_driver_raises(tmp_path: Path) -> None:
    with pytest.raises(NvmlDriverError, match="not loaded"):
        create_meter(
            "nvml", Settings(powercap_root=powercap(tmp_path)), nvml_module=FakeNvml(init_error=9)
        )


def test_explicit_rapl_sets_the_minimum_window(tmp_path: Path) -> None:
    meter = create_meter("rapl", Settings(powercap_root=powercap(tmp_path)))
    close_meter(meter)
    assert meter.min_window_s == pytest.approx(MIN_WINDOW_PERIODS * 0.001)


def test_cpu_estimate_is_labelled_estimated() -> None:
    meter = create_meter("cpu-estimate", Settings(watts_per_core=7.0))
    assert meter.name == "cpu-estimate"
    assert meter.estimated
    assert meter.fingerprint()["watts_per_core"] == "7"


def test_cuda_device_setting_selects_that_gpu() -> None:
    meter = create_meter("nvml", Settings(device="cuda:1"), nvml_module=working_gpu())
    close_meter(meter)
    assert isinstance(meter.meter, NvmlMeter)
    assert meter.meter.devices == ["1"]


def test_curve_is_built_by_the_curve_module(monkeypatch: pytest.MonkeyPatch) -> None:
    curve = FakeMeter("curve", estimated=True)
    module = types.ModuleType("pytest_energy.meters.curve")
    module.create_curve_meter = lambda settings: curve  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pytest_energy.meters.curve", module)
    meter = create_meter("curve", Settings())
    assert isinstance(meter, EnergyMeter)
    assert meter.meter is curve


def test_close_meter_stops_polling_and_releases_nvml() -> None:
    nvml = FakeNvml([FakeGpu(energy_counter_supported=False)])
    meter = create_meter("nvml", Settings(), nvml_module=nvml)
    close_meter(meter)
    assert not nvml.initialized
    close_meter(create_meter("cpu-estimate", Settings()))  # nothing to close: no error


def test_importing_the_meters_does_not_import_pynvml() -> None:
    code = (
        "import sys, pytest_energy.meters.select, pytest_energy.meters.idle; "
        "print('pynvml' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
