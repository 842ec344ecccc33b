from __future__ import annotations

import pytest

from pytest_energy.curves import Curve
from pytest_energy.errors import ConfigError, StrategyError
from pytest_energy.metrics import QuestionRecord
from pytest_energy.routing import (
    Candidate,
    Decision,
    Profile,
    parse_route_options,
    route,
    summarise,
)

# 1 J per generated token, nothing else: predicted energy = mean_output_tokens.
PER_TOKEN = Curve(0.0, 0.0, 1.0, 0.0)


def profile(
    strategy: str,
    accuracy: float,
    tokens: float,
    groups: dict[str, float] | None = None,
    model: str = "small",
) -> Profile:
    return Profile(model, strategy, groups or {}, accuracy, 100, tokens, PER_TOKEN)


DIRECT = profile("direct", 0.30, 1, {"anatomy": 0.25, "stem": 0.28})
COT = profile("cot", 0.40, 60, {"anatomy": 0.45, "stem": 0.42})
VOTE = profile("vote:k=5", 0.45, 300, {"anatomy": 0.55, "stem": 0.50})
ALL = [DIRECT, COT, VOTE]


def test_cheapest_candidate_meeting_the_target_is_chosen() -> None:
    decision = route("anatomy", 80, ALL, target_accuracy=0.44)
    assert decision.chosen == ("small", "cot")
    assert decision.met_target is True
    assert decision.predicted_energy_j == pytest.approx(60.0)
    assert decision.expected_accuracy == pytest.approx(0.45)
    assert "cheapest of 2/3" in decision.reason


def test_low_target_takes_the_cheapest_overall() -> None:
    assert route("anatomy", 80, ALL, target_accuracy=0.2).chosen == ("small", "direct")


def test_target_met_exactly_counts_as_met() -> None:
    assert route("anatomy", 80, ALL, target_accuracy=0.55).strategy == "vote:k=5"


def test_unreachable_target_takes_the_most_accurate_and_says_so() -> None:
    decision = route("anatomy", 80, ALL, target_accuracy=0.9)
    assert decision.strategy == "vote:k=5"
    assert decision.met_target is False
    assert "no candidate expected to reach 0.900" in decision.reason


def test_equal_energy_ties_go_to_candidate_order() -> None:
    first = profile("a", 0.5, 10, model="m1")
    second = profile("b", 0.5, 10, model="m2")
    assert route("x", 5, [first, second], target_accuracy=0.5).model == "m1"
    assert route("x", 5, [second, first], target_accuracy=0.5).model == "m2"


def test_unmet_target_ties_on_accuracy_go_to_lower_energy() -> None:
    costly = profile("a", 0.5, 90)
    cheap = profile("b", 0.5, 10)
    assert route("x", 5, [costly, cheap], target_accuracy=0.9).strategy == "b"


def test_lambda_trades_accuracy_against_joules() -> None:
    # scores at lam=0.001: direct 0.25-0.001, cot 0.45-0.06, vote 0.55-0.3
    decision = route("anatomy", 80, ALL, lam=0.001)
    assert decision.strategy == "cot"
    assert decision.met_target is None
    assert "0.390" in decision.reason
    assert route("anatomy", 80, ALL, lam=0.0).strategy == "vote:k=5"
    assert route("anatomy", 80, ALL, lam=1.0).strategy == "direct"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one"),
        ({"target_accuracy": 0.3, "lam": 0.1}, "exactly one"),
        ({"lam": -1.0}, "lam must be"),
        ({"target_accuracy": 2.0}, "target_accuracy must"),
    ],
)
def test_route_needs_exactly_one_valid_criterion(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        route("anatomy", 80, ALL, **kwargs)


def test_unprofiled_group_falls_back_to_category_then_overall() -> None:
    by_category = route("physics", 80, ALL, target_accuracy=0.41, category="stem")
    assert (by_category.strategy, by_category.accuracy_source) == ("cot", "category")
    overall = route("physics", 80, ALL, target_accuracy=0.41, category="humanities")
    assert (overall.strategy, overall.accuracy_source) == ("vote:k=5", "overall")
    assert overall.expected_accuracy == pytest.approx(0.45)


def test_small_groups_shrink_toward_overall_accuracy() -> None:
    lucky = Profile("m", "cot", {"law": 1.0}, 0.4, 50, 10, PER_TOKEN, n_by_group={"law": 5})
    accuracy, source = lucky.expected_accuracy("law", prior_questions=5.0)
    assert source == "group"
    assert accuracy == pytest.approx((5 * 1.0 + 5 * 0.4) / 10)
    assert lucky.expected_accuracy("law", prior_questions=0.0)[0] == pytest.approx(1.0)


def test_profile_from_records_counts_subjects_and_categories() -> None:
    records = [
        QuestionRecord("anatomy", "A", "A", 100, 20),
        QuestionRecord("anatomy", "B", "C", 120, 40),
        QuestionRecord("physics", "C", "C", 80, 30),
        QuestionRecord("law", "D", None, 90, 10),
    ]
    categories = {"anatomy": "stem", "physics": "stem", "law": "humanities"}
    prof = Profile.from_records("m", "cot", records, PER_TOKEN, category_of=categories)
    assert prof.accuracy == pytest.approx(0.5)
    assert prof.accuracy_by_group["anatomy"] == pytest.approx(0.5)
    assert prof.accuracy_by_group["stem"] == pytest.approx(2 / 3)
    assert prof.n_by_group == {"anatomy": 2, "humanities": 1, "law": 1, "physics": 1, "stem": 3}
    assert prof.mean_output_tokens == pytest.approx(25.0)
    assert prof.predicted_energy_j(100) == pytest.approx(25.0)


def test_profile_without_records_is_refused() -> None:
    with pytest.raises(ConfigError, match="calibration question"):
        Profile.from_records("m", "cot", [], PER_TOKEN)


def test_energy_predictor_may_be_any_callable() -> None:
    prof = Profile("m", "vote:k=5", {}, 0.5, 10, 50, lambda n_in, n_out: 2.0 + n_in + n_out)
    assert prof.predicted_energy_j(10) == pytest.approx(62.0)


def test_summary_reports_savings_against_the_most_accurate_candidate() -> None:
    decisions = [
        route("anatomy", 80, ALL, target_accuracy=0.44),  # cot, 60 J
        route("anatomy", 80, ALL, target_accuracy=0.2),  # direct, 1 J
        route("anatomy", 80, ALL, target_accuracy=0.9),  # vote, 300 J
        route("anatomy", 80, ALL, target_accuracy=0.2),  # direct, 1 J
    ]
    summary = summarise(decisions, [True, False, True, True], measured_energy_j=350.0)
    assert (summary.questions, summary.correct) == (4, 3)
    assert summary.accuracy == pytest.approx(0.75)
    assert summary.predicted_energy_j == pytest.approx(362.0)
    assert summary.reference == "small/vote:k=5"
    assert summary.reference_energy_j == pytest.approx(1200.0)
    assert summary.savings_j == pytest.approx(838.0)
    assert summary.savings_fraction == pytest.approx(838.0 / 1200.0)
    assert summary.share == {"small/cot": 0.25, "small/direct": 0.5, "small/vote:k=5": 0.25}
    assert summary.met_target_share == pytest.approx(0.75)
    assert summary.measured_energy_j == 350.0


def test_summary_in_lambda_mode_has_no_target_share() -> None:
    summary = summarise([route("anatomy", 80, ALL, lam=1.0)], [False])
    assert summary.met_target_share is None
    assert summary.savings_j == pytest.approx(299.0)


def test_summary_needs_one_outcome_per_decision() -> None:
    decision: Decision = route("anatomy", 80, ALL, lam=1.0)
    with pytest.raises(ValueError, match="1 decisions but 2 outcomes"):
        summarise([decision], [True, False])


def test_route_options_parse_candidates_and_target() -> None:
    options = parse_route_options(
        {
            "candidates": "smollm2-135m/direct+HuggingFaceTB/SmolLM2-360M/cot",
            "target_accuracy": "0.3",
        }
    )
    assert options.candidates == (
        Candidate("smollm2-135m", "direct"),
        Candidate("HuggingFaceTB/SmolLM2-360M", "cot"),
    )
    assert (options.target_accuracy, options.lam) == (0.3, None)
    assert options.target_for(ALL) == 0.3


def test_route_options_parse_lambda() -> None:
    options = parse_route_options({"candidates": "m/direct+m/cot:max_tokens=64", "lambda": "0.05"})
    assert options.lam == 0.05
    assert options.candidates[1] == Candidate("m", "cot:max_tokens=64")
    assert options.target_for(ALL) is None


def test_bare_route_uses_the_default_model_and_the_best_accuracy() -> None:
    options = parse_route_options({}, default_model="smollm2-135m")
    assert [c.label for c in options.candidates] == ["smollm2-135m/direct", "smollm2-135m/cot"]
    assert options.target_for(ALL) == pytest.approx(0.45)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "route needs candidates"),
        ({"candidates": "m/cot", "speed": "1"}, "unknown option 'speed'"),
        ({"candidates": "cot"}, "must be MODEL/STRATEGY"),
        ({"candidates": "m/cot+m/route"}, "cannot itself be route"),
        ({"candidates": "m/cot+m/cot"}, "listed twice"),
        ({"candidates": "m/cot", "target_accuracy": "0.3", "lambda": "1"}, "not both"),
        ({"candidates": "m/cot", "target_accuracy": "high"}, "not a number"),
        ({"candidates": "m/cot", "target_accuracy": "30"}, r"must lie in \[0, 1\]"),
        ({"candidates": "m/cot", "lambda": "-0.1"}, "must be >= 0"),
        ({"candidates": "m/cot", "lambda": "nan"}, "not finite"),
        ({"candidates": "m/cot", "calibration": "2.5"}, "whole number"),
    ],
)
def test_bad_route_options_are_refused(options: dict[str, str], message: str) -> None:
    with pytest.raises(StrategyError, match=message):
        parse_route_options(options)


def test_calibration_size_is_parsed() -> None:
    assert parse_route_options({"candidates": "m/cot", "calibration": "40"}).calibration_n == 40
