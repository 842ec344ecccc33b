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


KEYS = "max_j_per_token, max_j_per_question, min_accuracy, max_output_tokens, tolerance"

# The body would fail loudly if it ran: the marker's error must come first.
MARKED = """
import pytest


@pytest.mark.energy({arguments})
def test_marked(energy_eval):
    energy_eval("no-such-model", "direct", n=1)


def test_plain():
    pass
"""

BAD_MARKERS = {
    "positional": (
        "0.5",
        "positional argument 0.5 names no budget; give budgets as keyword arguments, "
        f"e.g. @pytest.mark.energy(max_j_per_token=0.5); allowed keys: {KEYS}",
    ),
    "misspelt": (
        "max_j_per_tokn=1.0",
        f"max_j_per_tokn: unknown key (did you mean 'max_j_per_token'?); allowed keys: {KEYS}",
    ),
    "negative": (
        "max_j_per_question=-40",
        "max_j_per_question: must be positive, got -40 (no evaluation can stay within it); "
        "give a positive number of joules, e.g. 0.05",
    ),
    "not a number": (
        "max_j_per_token='0.05 J'",
        "max_j_per_token: must be a number, got '0.05 J'; "
        "give a positive number of joules, e.g. 0.05",
    ),
    "bad tolerance": (
        "tolerance='-5%'",
        "tolerance: invalid tolerance '-5%' (negative: a tolerance is the regression allowed "
        "over the baseline, 0% or more); give a percentage such as '10%' "
        "(a number below 1 is a fraction: 0.1 is 10%)",
    ),
}


def collection_error_lines(result: pytest.RunResult) -> list[str]:
    """The lines under ``ERROR collecting test_marked.py`` (up to the next section)."""
    out = result.outlines
    header = next(i for i, line in enumerate(out) if "ERROR collecting test_marked.py" in line)
    body = []
    for line in out[header + 1 :]:
        if line[:3] in ("___", "---", "===", "!!!"):
            break
        body.append(line)
    return body


@pytest.mark.parametrize("case", sorted(BAD_MARKERS))
def test_bad_marker_is_a_collection_error_naming_the_test_marker_and_fix(
    pytester: pytest.Pytester, case: str
) -> None:
    arguments, problem = BAD_MARKERS[case]
    pytester.makepyfile(test_marked=MARKED.format(arguments=arguments))

    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--energy-budget", "--energy-meter=cpu-estimate"
    )

    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.assert_outcomes(errors=1)
    assert collection_error_lines(result) == [
        f"test_marked.py::test_marked: @pytest.mark.energy: {problem}"
    ]
    result.stdout.fnmatch_lines(["*Interrupted: 1 error during collection*"])


def test_bad_marker_on_a_class_names_each_of_its_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_marked="""
        import pytest


        @pytest.mark.energy(0.5)
        class TestBudgeted:
            def test_a(self):
                pass

            def test_b(self):
                pass
        """
    )

    result = pytester.runpytest("-p", "no:cacheprovider", "--energy-budget")

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "test_marked.py::TestBudgeted::test_a: @pytest.mark.energy: positional argument 0.5 *",
            "test_marked.py::TestBudgeted::test_b: @pytest.mark.energy: positional argument 0.5 *",
        ]
    )


def test_bad_marker_is_an_error_without_energy_budget_too(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_marked=MARKED.format(arguments="0.5"))

    result = pytester.runpytest("-p", "no:cacheprovider")

    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["test_marked.py::test_marked: @pytest.mark.energy: positional*"])


def test_bad_marker_under_xdist_is_reported_and_its_test_never_runs(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_marked=MARKED.format(arguments="0.5"))

    result = pytester.runpytest(
        "-p", "no:cacheprovider", "-n", "2", "--energy-budget", "--energy-meter=cpu-estimate"
    )

    assert result.ret != pytest.ExitCode.OK
    result.assert_outcomes(errors=1)
    assert collection_error_lines(result) == [
        "test_marked.py::test_marked: @pytest.mark.energy: " + BAD_MARKERS["positional"][1]
    ]
    result.stdout.no_fnmatch_line("*no-such-model*")
