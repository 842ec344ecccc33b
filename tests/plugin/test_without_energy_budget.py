"""Without ``--energy-budget`` energy tests are skipped, others run, and nothing heavy loads."""

from __future__ import annotations

import sys

import pytest

HEAVY = ("torch", "transformers", "pynvml")

ENERGY_AND_PLAIN_TESTS = """
import pytest


@pytest.fixture
def wrapped(mmlu):
    return mmlu


@pytest.mark.energy(max_j_per_token=0.5)
def test_marked():
    pass


def test_eval(energy_eval):
    pass


def test_data(mmlu):
    pass


def test_meter(energy_meter):
    pass


def test_indirect(wrapped):
    pass


def test_plain():
    pass
"""

REPORT_HEAVY_IMPORTS = f"""
import sys


def pytest_sessionfinish(session):
    loaded = sorted(m for m in {HEAVY!r} if m in sys.modules)
    print(f"HEAVY={{loaded}}")
"""


def test_energy_tests_are_skipped_with_the_reason_and_plain_tests_run(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(ENERGY_AND_PLAIN_TESTS)

    reprec = pytester.inline_run()

    reprec.assertoutcome(passed=1, skipped=5)
    skipped = {
        report.nodeid.rpartition("::")[2]: report.longrepr[2]  # type: ignore[index]
        for report in reprec.getreports("pytest_runtest_logreport")
        if report.skipped
    }
    assert skipped == {
        name: "Skipped: run with --energy-budget"
        for name in ("test_marked", "test_eval", "test_data", "test_meter", "test_indirect")
    }


def test_energy_budget_false_from_the_environment_keeps_energy_tests_skipped(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_ENERGY_BUDGET", "false")
    pytester.makepyfile(ENERGY_AND_PLAIN_TESTS)

    result = pytester.runpytest()

    result.assert_outcomes(passed=1, skipped=5)


def test_importing_the_plugin_imports_no_model_or_gpu_library(pytester: pytest.Pytester) -> None:
    code = f"import pytest_energy.plugin, sys; print(any(m in sys.modules for m in {HEAVY!r}))"

    result = pytester.run(sys.executable, "-c", code)

    assert result.ret == 0
    assert result.outlines == ["False"]


LIGHT_ENERGY_TESTS = """
import pytest


@pytest.mark.energy
def test_marked():
    pass


def test_meter(energy_meter):
    with energy_meter.window() as window:
        sum(range(100_000))
    assert window.closed


def test_plain():
    pass
"""


@pytest.mark.parametrize(
    "args",
    [(), ("--energy-budget", "--energy-meter=cpu-estimate")],
    ids=["disabled", "enabled-without-evaluations"],
)
def test_a_session_without_evaluations_imports_no_model_or_gpu_library(
    pytester: pytest.Pytester, args: tuple[str, ...]
) -> None:
    pytester.makeconftest(REPORT_HEAVY_IMPORTS)
    pytester.makepyfile(LIGHT_ENERGY_TESTS)

    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider", *args)

    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*HEAVY=[[][]]"])
