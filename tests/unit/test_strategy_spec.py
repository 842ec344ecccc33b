from __future__ import annotations

from typing import Any

import pytest

from pytest_energy.errors import StrategyError
from pytest_energy.strategies.spec import parse_strategy

# -- parsing ------------------------------------------------------------------------


def test_direct_has_letter_scoring_defaults() -> None:
    spec = parse_strategy("direct")
    assert spec.name == "direct"
    assert spec["generate"] is False
    assert spec["max_tokens"] == 8
    assert str(spec) == "direct"


def test_direct_generate_is_a_flag() -> None:
    spec = parse_strategy("direct:generate")
    assert spec["generate"] is True
    assert str(spec) == "direct:generate"


def test_cot_max_tokens_is_an_int() -> None:
    spec = parse_strategy("cot:max_tokens=256")
    assert spec.name == "cot"
    assert spec["max_tokens"] == 256
    assert isinstance(spec["max_tokens"], int)
    assert spec["budget_j"] is None


def test_cot_budget_is_float_joules() -> None:
    spec = parse_strategy("cot:budget_j=2.5")
    assert spec["budget_j"] == 2.5
    assert spec["max_tokens"] == 256
    assert str(spec) == "cot:budget_j=2.5"


def test_vote_parses_every_option() -> None:
    spec = parse_strategy("vote:k=5,temperature=0.7,max_tokens=64")
    assert (spec["k"], spec["temperature"], spec["max_tokens"]) == (5, 0.7, 64)


def test_vote_defaults() -> None:
    spec = parse_strategy("vote")
    assert (spec["k"], spec["temperature"], spec["max_tokens"]) == (5, 0.7, 256)


def test_name_and_spacing_are_forgiving() -> None:
    spec = parse_strategy("  COT : max_tokens = 64 ")
    assert spec.name == "cot"
    assert spec["max_tokens"] == 64


def test_temperature_zero_is_allowed_for_greedy_votes() -> None:
    assert parse_strategy("vote:temperature=0")["temperature"] == 0.0


# -- overrides from energy_eval(..., **generation) ---------------------------------------


def test_keyword_override_sets_an_option() -> None:
    spec = parse_strategy("cot", {"max_tokens": 64})
    assert spec["max_tokens"] == 64
    assert str(spec) == "cot:max_tokens=64"


def test_keyword_override_beats_the_text() -> None:
    spec = parse_strategy("vote:k=5,max_tokens=256", {"max_tokens": 32, "k": 3})
    assert (spec["k"], spec["max_tokens"]) == (3, 32)
    assert str(spec) == "vote:k=3,max_tokens=32"


def test_unknown_keyword_override_is_an_error() -> None:
    with pytest.raises(StrategyError, match="strategy cot has no option 'top_p'"):
        parse_strategy("cot", {"top_p": 0.9})


# -- canonical text ------------------------------------------------------------------------


def test_canonical_text_sorts_options_whatever_the_input_order() -> None:
    texts = [
        "vote:k=5,temperature=0.7,max_tokens=64",
        "vote:max_tokens=64,k=5,temperature=0.7",
        "vote:temperature=0.70,max_tokens=064,k=5",
    ]
    assert {str(parse_strategy(t)) for t in texts} == {"vote:k=5,max_tokens=64,temperature=0.7"}


@pytest.mark.parametrize(
    "text",
    [
        "direct",
        "direct:generate",
        "direct:generate,max_tokens=4",
        "cot",
        "cot:max_tokens=256",
        "cot:budget_j=2.5",
        "vote:k=5,max_tokens=64,temperature=0.7",
        "vote:temperature=0",
    ],
)
def test_canonical_text_parses_back_to_itself(text: str) -> None:
    spec = parse_strategy(text)
    again = parse_strategy(str(spec))
    assert str(again) == str(spec) == text
    assert dict(again.options) == dict(spec.options)


@pytest.mark.parametrize("value", ["2.0625125", "1234567.5", "0.000123456789"])
def test_canonical_text_keeps_every_digit_of_a_float(value: str) -> None:
    # The canonical text is the baseline key: two different budgets must not
    # share one, and the text must parse back to the same budget.
    spec = parse_strategy(f"cot:budget_j={value}")
    assert parse_strategy(str(spec))["budget_j"] == spec["budget_j"] == float(value)


def test_specs_with_equal_text_compare_equal() -> None:
    assert parse_strategy("cot:max_tokens=64") == parse_strategy("cot:max_tokens=64")


# -- errors ----------------------------------------------------------------------------------


def test_unknown_strategy_lists_the_known_ones() -> None:
    with pytest.raises(StrategyError) as info:
        parse_strategy("beam:width=4")
    message = str(info.value)
    assert "unknown strategy 'beam'" in message
    assert "cot, direct, route, vote" in message


def test_unknown_option_names_strategy_option_and_the_valid_options() -> None:
    with pytest.raises(StrategyError) as info:
        parse_strategy("cot:k=3")
    message = str(info.value)
    assert "strategy cot has no option 'k'" in message
    assert "max_tokens, budget_j" in message


@pytest.mark.parametrize(
    ("text", "option"),
    [
        ("cot:max_tokens=lots", "max_tokens"),
        ("cot:max_tokens=2.5", "max_tokens"),
        ("vote:k=three", "k"),
        ("vote:temperature=hot", "temperature"),
        ("cot:budget_j=2.5J", "budget_j"),
        ("direct:generate=maybe", "generate"),
    ],
)
def test_value_of_the_wrong_type_is_an_error_naming_the_option(text: str, option: str) -> None:
    with pytest.raises(StrategyError, match=f"option {option}=.* is not a valid"):
        parse_strategy(text)


@pytest.mark.parametrize(
    "text",
    [
        "cot:max_tokens=0",
        "cot:max_tokens=-8",
        "vote:k=0",
        "vote:k=-1",
        "cot:budget_j=0",
        "cot:budget_j=-2.5",
        "vote:temperature=-0.1",
    ],
)
def test_non_positive_numbers_are_rejected(text: str) -> None:
    with pytest.raises(StrategyError, match="must be positive"):
        parse_strategy(text)


@pytest.mark.parametrize("text", ["cot:budget_j=nan", "cot:budget_j=inf", "vote:temperature=nan"])
def test_non_finite_numbers_are_rejected(text: str) -> None:
    with pytest.raises(StrategyError):
        parse_strategy(text)


@pytest.mark.parametrize("text", ["cot:max_tokens", "vote:k", "vote:temperature"])
def test_a_numeric_option_without_a_value_is_an_error(text: str) -> None:
    # "cot:max_tokens" must not silently mean max_tokens=1 (int(True)).
    with pytest.raises(StrategyError):
        parse_strategy(text)


@pytest.mark.parametrize(
    ("overrides"), [{"max_tokens": 2.7}, {"max_tokens": True}, {"max_tokens": "many"}]
)
def test_an_override_that_is_not_a_whole_number_is_an_error(overrides: dict[str, Any]) -> None:
    # energy_eval("cot", max_tokens=2.7) must not silently run with 2 tokens.
    with pytest.raises(StrategyError):
        parse_strategy("cot", overrides)


def test_errors_are_one_line() -> None:
    for text in ("nope", "cot:nope=1", "cot:max_tokens=x", "vote:k=0"):
        with pytest.raises(StrategyError) as info:
            parse_strategy(text)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("strategy", "sampled"),
    [
        ("direct", False),
        ("direct:generate", False),
        ("cot:max_tokens=256", False),
        ("vote:k=5", True),
        ("vote:k=5,temperature=0", False),
        ("route:candidates=m/direct+m/cot", False),
        ("route:candidates=m/direct+m/vote:k=3", True),
    ],
)
def test_whether_a_strategy_samples_is_decided_when_it_is_parsed(
    strategy: str, sampled: bool
) -> None:
    assert parse_strategy(strategy).sampled is sampled


def test_every_strategy_takes_a_prompt_and_direct_a_scoring_rule() -> None:
    spec = parse_strategy("cot:prompt=terse")
    assert (spec["prompt"], str(spec)) == ("terse", "cot:prompt=terse")
    assert parse_strategy("direct")["score"] == "letters"
    assert parse_strategy("direct:score=cloze")["score"] == "cloze"
    with pytest.raises(StrategyError, match="score='logits' must be one of letters, cloze"):
        parse_strategy("direct:score=logits")
