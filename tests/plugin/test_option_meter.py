"""``--energy-meter``: a named meter works or is a usage error; ``auto`` falls back
with one warning; a conftest can supply its own meter through a hook."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

RunEnergy = Callable[..., pytest.RunResult]

MEASURE_SOMETHING = """
def test_measure(energy_meter):
    with energy_meter.window() as window:
        sum(i * i for i in range(200_000))
    assert window.energy_j > 0


def test_plain():
    pass
"""

PDU_CONFTEST = """
import time


class BenchPdu:
    name = "bench-pdu"
    estimated = False

    def read(self):
        return time.process_time() * 5.0


def pytest_energy_make_meter(settings):
    return BenchPdu()
"""


@pytest.fixture
def no_powercap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty powercap folder: a machine without RAPL, whatever runs the tests."""
    root = tmp_path / "powercap"
    root.mkdir()
    monkeypatch.setenv("PYTEST_ENERGY_POWERCAP_ROOT", str(root))
    return root


def test_rapl_without_powercap_counters_is_a_one_line_usage_error(
    pytester: pytest.Pytester, no_powercap: Path
) -> None:
    pytester.makepyfile(MEASURE_SOMETHING)

    result = pytester.runpytest("--energy-budget", "--energy-meter", "rapl")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            f"ERROR: no RAPL powercap counters under {no_powercap}; "
            "use --energy-meter cpu-estimate or nvml"
        ]
    )
    assert len([line for line in result.stderr.lines if line.strip()]) == 1


def test_rapl_is_not_built_when_energy_testing_is_off(
    pytester: pytest.Pytester, no_powercap: Path
) -> None:
    pytester.makepyfile(MEASURE_SOMETHING)

    result = pytester.runpytest("--energy-meter", "rapl")

    result.assert_outcomes(passed=1, skipped=1)


def test_auto_falls_back_to_an_estimate_with_exactly_one_warning(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, no_powercap: Path
) -> None:
    monkeypatch.setenv("PYTEST_ENERGY_DEVICE", "cpu")  # no NVML probe, even on a GPU runner
    pytester.makepyfile(MEASURE_SOMETHING)

    result = pytester.runpytest("--energy-budget", "--energy-meter=auto")

    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "energy: meter cpu-estimate (estimated)*",
            "*EnergyEstimateWarning: no energy sensor available, energy is estimated by "
            "cpu-estimate (10 W per busy core)*"
            f"rapl: no RAPL powercap counters under {no_powercap}*",
        ]
    )


def test_a_named_meter_does_not_warn(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(MEASURE_SOMETHING)

    result = pytester.runpytest("--energy-budget", "--energy-meter=cpu-estimate")

    result.assert_outcomes(passed=2)
    result.stdout.no_fnmatch_line("*EnergyEstimateWarning*")


def test_custom_meter_from_the_hook_measures_the_evaluation(
    pytester: pytest.Pytester, run_energy: RunEnergy
) -> None:
    pytester.makeconftest(PDU_CONFTEST)
    pytester.makepyfile(
        """
        def test_meter_is_the_pdu(energy_meter):
            assert energy_meter.name == "bench-pdu"
            assert not energy_meter.estimated


        def test_direct(energy_eval):
            result = energy_eval("smollm2-135m", "direct", n=1, subjects="world_religions")
            assert result.meter == "bench-pdu"
            assert not result.estimated
            assert result.energy_j > 0
        """
    )

    result = run_energy()

    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        ["energy: meter bench-pdu (measured)*", "*= energy =*", "*bench-pdu*", "*test_direct*"]
    )
