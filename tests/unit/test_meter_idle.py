from __future__ import annotations

import time

import pytest

from pytest_energy.errors import MeasurementError
from pytest_energy.meters.base import EnergyMeter
from pytest_energy.meters.idle import IdlePower, measure_idle_power_w, net_energy_j
from pytest_energy.testing import FakeMeter


class SteadyMeter:
    """A meter whose counter grows at a constant power on the real clock."""

    name = "steady"
    estimated = False

    def __init__(self, power_w: float) -> None:
        self.power_w = power_w
        self.reads = 0

    def read(self) -> float:
        self.reads += 1
        return self.power_w * time.perf_counter()


def test_idle_power_is_the_mean_power_of_a_quiet_window() -> None:
    meter = EnergyMeter(SteadyMeter(42.0))
    assert measure_idle_power_w(meter, duration_s=0.1) == pytest.approx(42.0, rel=0.05)


def test_idle_window_is_stretched_to_twice_the_minimum_window() -> None:
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    meter = EnergyMeter(SteadyMeter(10.0), min_window_s=0.004)
    measure_idle_power_w(meter, duration_s=0.001, sleep=sleep)
    assert slept == [0.008]


def test_estimated_meters_have_no_idle_power() -> None:
    assert measure_idle_power_w(EnergyMeter(FakeMeter(estimated=True)), duration_s=0.0) is None


def test_idle_window_that_cannot_be_measured_raises() -> None:
    meter = EnergyMeter(SteadyMeter(5.0), min_window_s=10.0)
    with pytest.raises(MeasurementError, match="shorter than"):
        measure_idle_power_w(meter, duration_s=0.0, sleep=lambda s: None)


def test_net_energy_subtracts_the_idle_floor_but_never_goes_negative() -> None:
    assert net_energy_j(100.0, 2.0, 30.0) == pytest.approx(40.0)
    assert net_energy_j(10.0, 2.0, 30.0) == 0.0
    assert net_energy_j(10.0, 2.0, None) == 10.0


def test_idle_power_is_measured_once_per_session() -> None:
    steady = SteadyMeter(20.0)
    idle = IdlePower(EnergyMeter(steady), duration_s=0.01)
    first = idle.power_w()
    reads = steady.reads
    assert idle.power_w() == first
    assert steady.reads == reads == 2
