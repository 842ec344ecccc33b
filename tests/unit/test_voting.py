from __future__ import annotations

import pytest

from pytest_energy.strategies.voting import majority


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        (["B"], "B"),
        (["A", "C", "C"], "C"),
        (["D", "B", "D", "A", "D"], "D"),
        (["C", "A", "A", "C", "C"], "C"),
    ],
)
def test_most_common_answer_wins(answers: list[str | None], expected: str) -> None:
    assert majority(answers) == expected


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        (["B", "A"], "B"),
        (["A", "B"], "A"),
        (["C", "A", "A", "C"], "C"),
        (["D", "B", "C", "B", "C", "D"], "D"),
        (["A", "B", "C", "D"], "A"),
    ],
)
def test_a_tie_goes_to_the_answer_that_appeared_first(
    answers: list[str | None], expected: str
) -> None:
    assert majority(answers) == expected


def test_invalid_answers_do_not_vote() -> None:
    # Three invalid paths outnumber the one valid answer, but cast no vote.
    assert majority([None, None, "C", None]) == "C"
    assert majority([None, "A", None, "B", "B"]) == "B"


def test_an_invalid_first_answer_does_not_decide_a_tie() -> None:
    assert majority([None, "D", "C"]) == "D"


@pytest.mark.parametrize("answers", [[None], [None, None, None], []])
def test_no_valid_answer_gives_none(answers: list[str | None]) -> None:
    assert majority(answers) is None


def test_input_order_is_not_changed() -> None:
    answers: list[str | None] = ["B", None, "A", "A"]
    assert majority(answers) == "A"
    assert answers == ["B", None, "A", "A"]
