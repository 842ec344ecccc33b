"""``@pytest.mark.energy``: an absolute budget on the test it marks."""

from __future__ import annotations

from collections.abc import Callable
from fnmatch import fnmatch

import pytest

RunEnergy = Callable[..., pytest.RunResult]
FailureLines = Callable[[pytest.RunResult, str], list[str]]

MARKED_TESTS = """
import pytest


@pytest.mark.energy(max_j_per_token=1e-9)
def test_tight(energy_eval):
    energy_eval("smollm2-135m", "direct", n=1, subjects="world_religions")


@pytest.mark.energy(max_j_per_token=1000.0, max_j_per_question=1e6, min_accuracy=0.0)
def test_generous(energy_eval):
    energy_eval("smollm2-135m", "direct", n=1, subjects="world_religions")
"""

MISSPELT = """
import pytest


@pytest.mark.energy(max_j_per_tokn=1.0)
def test_misspelt(energy_eval):
    energy_eval("smollm2-135m", "direct", n=1, subjects="world_religions")
"""


def test_marker_budget_breach_fails_with_one_line_and_a_generous_budget_passes(
    pytester: pytest.Pytester, run_energy: RunEnergy, failure_lines: FailureLines
) -> None:
    pytester.makepyfile(test_marked=MARKED_TESTS)

    result = run_energy("--energy-meter=cpu-estimate")

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["FAILED test_marked.py::test_tight*"])
    result.stdout.no_fnmatch_line("FAILED test_marked.py::test_generous*")
    assert len(failure_lines(result, "test_tight")) == 1
    assert fnmatch(
        failure_lines(result, "test_tight")[0],
        "energy per token * J exceeds budget 1.00e-09 J "
        "(direct, smollm2-135m, meter=cpu-estimate, estimated)",
    )
    result.stdout.fnmatch_lines(["over budget: test_marked.py::test_tight: *"])


def test_misspelt_marker_argument_fails_the_test_naming_it_and_the_fix(
    pytester: pytest.Pytester, run_energy: RunEnergy, failure_lines: FailureLines
) -> None:
    pytester.makepyfile(test_marked=MISSPELT)

    result = run_energy("--energy-meter=cpu-estimate")

    result.assert_outcomes(failed=1)
    assert failure_lines(result, "test_misspelt") == [
        "test_marked.py::test_misspelt: @pytest.mark.energy: max_j_per_tokn: unknown key "
        "(did you mean 'max_j_per_token'?); allowed keys: max_j_per_token, max_j_per_question, "
        "min_accuracy, max_output_tokens, tolerance"
    ]
