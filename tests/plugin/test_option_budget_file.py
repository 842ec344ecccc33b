"""``--energy-budget FILE``: budgets from a YAML file select tests and fail breaches;
a malformed file is a usage error naming the file and the key."""

from __future__ import annotations

from collections.abc import Callable
from fnmatch import fnmatch

import pytest

RunEnergy = Callable[..., pytest.RunResult]
FailureLines = Callable[[pytest.RunResult, str], list[str]]

BUDGETS = """
defaults:
  max_j_per_token: 1000.0
tests:
  - match: "*::test_over"
    max_j_per_question: 0.000001
  - strategy: direct
    min_accuracy: 0.0
"""

TWO_TESTS = """
def test_over(energy_eval):
    energy_eval("smollm2-135m", "direct", n=1, subjects="world_religions")


def test_within(energy_eval):
    energy_eval("smollm2-135m", "direct", n=1, subjects="world_religions")
"""

SHOW_BUDGETS_FILE = """
from pytest_energy.stash import settings_key


def test_show(pytestconfig):
    print("BUDGETS", pytestconfig.stash[settings_key].budgets_file)
"""


def test_budgets_file_breach_fails_the_selected_test_with_one_line(
    pytester: pytest.Pytester, run_energy: RunEnergy, failure_lines: FailureLines
) -> None:
    pytester.makefile(".yaml", budgets=BUDGETS)
    pytester.makepyfile(test_budgeted=TWO_TESTS)

    result = run_energy("--energy-budget=budgets.yaml", "--energy-meter=cpu-estimate")

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["FAILED test_budgeted.py::test_over*"])
    lines = failure_lines(result, "test_over")
    assert len(lines) == 1
    assert fnmatch(
        lines[0],
        "energy per question * J exceeds budget 1.00e-06 J "
        "(direct, smollm2-135m, meter=cpu-estimate, estimated)",
    )


def test_energy_budgets_yaml_at_rootdir_is_the_default_file(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", **{"energy-budgets": BUDGETS})
    pytester.makepyfile(SHOW_BUDGETS_FILE)

    result = pytester.runpytest("-s", "--energy-budget", "--energy-meter=cpu-estimate")

    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([f"*BUDGETS {pytester.path / 'energy-budgets.yaml'}*"])


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "tests:\n  - match: '*'\n    max_j_per_tokn: 1.0\n",
            "tests[[]0[]].max_j_per_tokn: unknown key (did you mean 'max_j_per_token'?); "
            "allowed keys: *",
        ),
        (
            "defaults:\n  min_accuracy: 2\n",
            "defaults.min_accuracy: invalid accuracy 2 (above 1*); give a fraction between 0 and 1*",  # noqa: E501
        ),
        ("defaults: [1, 2\n", "not valid YAML (*); fix the syntax"),
    ],
    ids=["misspelt-key", "bad-value", "bad-yaml"],
)
def test_malformed_budgets_file_is_a_usage_error_naming_file_and_key(
    pytester: pytest.Pytester, text: str, problem: str
) -> None:
    budgets = pytester.makefile(".yaml", budgets=text)
    pytester.makepyfile("def test_plain():\n    pass\n")

    result = pytester.runpytest("--energy-budget=budgets.yaml", "--energy-meter=cpu-estimate")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {budgets}: {problem}"])
    assert len([line for line in result.stderr.lines if line.strip()]) == 1
