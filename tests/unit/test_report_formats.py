"""Number formats, labels and the Pareto front every report shares."""

from __future__ import annotations

import pytest

from factories import baseline_check, budget_check, make_result, outcome
from pytest_energy.budget_checks import sig
from pytest_energy.outcome import Outcome
from pytest_energy.report import (
    describe_check,
    device_label,
    format_accuracy,
    format_change,
    format_j,
    format_sig,
    pareto_front,
    strategy_label,
    verdict,
)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0123456, "0.01235"),
        (1.23456e-5, "0.00001235"),
        (9.99996, "10.00"),
        (123.456, "123.5"),
        (123456.0, "123456"),
        (-0.5, "-0.5000"),
        (0.0, "0"),
    ],
)
def test_joules_have_four_significant_digits_and_no_exponent(value: float, text: str) -> None:
    assert format_sig(value) == text


def test_undefined_ratio_is_a_dash() -> None:
    assert format_j(None) == "\N{EM DASH}"


def test_accuracy_is_a_percentage_with_its_interval() -> None:
    assert format_accuracy(make_result(questions=4, correct=3)) == "75.0% [30.1\N{EN DASH}95.4]"


def test_change_is_signed() -> None:
    assert (format_change(0.12), format_change(-0.035), format_change(0)) == (
        "+12.0%",
        "-3.5%",
        "+0.0%",
    )


def test_pareto_front_keeps_points_no_other_point_beats() -> None:
    points = [(1.0, 0.5), (2.0, 0.7), (3.0, 0.6), (2.0, 0.7), (0.5, 0.5)]
    assert pareto_front(points) == [False, True, False, True, True]


def test_budget_check_description_shows_the_direction() -> None:
    over = budget_check("j_per_token", 0.84, 0.5)
    under = budget_check("accuracy", 0.4, 0.5)
    fine = budget_check("accuracy", 0.6, 0.5)
    assert describe_check(over) == "J/token 0.8400 > 0.5000"
    assert describe_check(under) == "accuracy 40.0% < 50.0%"
    assert describe_check(fine) == "accuracy 60.0% >= 50.0%"


def test_failed_verdict_names_what_failed() -> None:
    assert verdict(outcome(baseline_check(change=0.2))) == "fail: regression"
    assert verdict(Outcome(status="accepted")) == "accepted"


def test_device_prefers_the_gpu_name() -> None:
    assert device_label({"cpu": "EPYC", "gpu": "H200"}) == "H200"
    assert device_label({"cpu": "EPYC"}) == "EPYC"
    # A CPU shows its vector extension, which tells CPUs of one family apart.
    assert device_label({"cpu": "AMD EPYC", "cpu_isa": "avx2"}) == "AMD EPYC (avx2)"
    assert device_label({"cpu": "EPYC", "cpu_isa": "avx2", "gpu": "H200"}) == "H200"
    assert device_label({}) == "unknown"


def test_a_strategy_label_names_a_prompt_other_than_the_default() -> None:
    assert strategy_label(make_result(strategy="direct")) == "smollm2-135m / direct"
    default = make_result(strategy="direct", prompt={"name": "default"})
    assert strategy_label(default) == "smollm2-135m / direct"
    ours = make_result(strategy="direct", prompt={"name": "five-shot"})
    assert strategy_label(ours) == "smollm2-135m / direct / prompt five-shot"


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.012, "0.0120"), (0.84, "0.840"), (40.0, "40.0"), (103.4, "103"), (446.2, "446")],
)
def test_check_messages_show_three_significant_digits_without_a_trailing_point(
    value: float, text: str
) -> None:
    assert sig(value) == text
