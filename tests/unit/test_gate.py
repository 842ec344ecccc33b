from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest

import factories
from factories import baseline_check, budget_check
from pytest_energy import gate, stats
from pytest_energy.baseline_entry import BaselineEntry, entry_from_result
from pytest_energy.budget_checks import check_budgets
from pytest_energy.budgets import Budgets
from pytest_energy.gate import compare
from pytest_energy.metrics import EvalResult
from pytest_energy.outcome import Check
from pytest_energy.settings import Tolerance
from pytest_energy.stats import binomial_upper, fisher_less, mann_whitney_greater, screen_outliers
from pytest_energy.verdict import decide, failure_message, judge

TEN = Tolerance(0.10)
BASE_J = (118.0, 119.0, 120.0, 121.0, 122.0)  # 100 questions x 100 tokens: 0.0120 J/token
NOISY_J = (117.0, 123.5, 120.2, 118.4, 121.9)
FINGERPRINT = {"gpu": "A100", "meter": "nvml"}


def make_result(
    energy_j: Sequence[float] = BASE_J, *, output_tokens: int = 20, **kwargs: Any
) -> EvalResult:
    """100 questions of 100 tokens each, half right, 20 of them output (by default)."""
    kwargs.setdefault("questions", 100)
    kwargs.setdefault("correct", 50)
    kwargs.setdefault("fingerprint", FINGERPRINT)
    return factories.make_result(
        energy_j, input_tokens=100 - output_tokens, output_tokens=output_tokens, **kwargs
    )


def base_entry(**kwargs: object) -> BaselineEntry:
    return entry_from_result(make_result(**kwargs))  # type: ignore[arg-type]


def by_metric(checks: Sequence[Check]) -> dict[str, Check]:
    return {c.metric: c for c in checks}


def scaled(values: Sequence[float], factor: float) -> tuple[float, ...]:
    return tuple(v * factor for v in values)


# -- statistics ------------------------------------------------------------------


def test_complete_separation_of_five_vs_five_has_the_exact_p_value() -> None:
    assert mann_whitney_greater([6, 7, 8, 9, 10], [1, 2, 3, 4, 5]) == pytest.approx(1 / 252)
    assert mann_whitney_greater([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(1.0)
    assert mann_whitney_greater([4, 5, 6], [1, 2, 3]) == pytest.approx(1 / 20)


def test_identical_samples_give_no_evidence() -> None:
    assert mann_whitney_greater([1.0] * 5, [1.0] * 5) == pytest.approx(1.0)


def test_ties_use_the_exact_conditional_distribution() -> None:
    # Mid-ranks 1, 3.5 x4, 6; head sums 3.5+3.5+6 = 13, reached by 6 of the 20 splits.
    assert mann_whitney_greater([2, 2, 3], [1, 2, 2]) == pytest.approx(6 / 20)


def test_normal_approximation_agrees_with_the_exact_distribution(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    head = [1.0 + 0.013 * i for i in range(15)]
    base = [0.95 + 0.012 * i for i in range(15)]
    exact = mann_whitney_greater(head, base)
    monkeypatch.setattr(stats, "EXACT_LIMIT", 0)
    approx = mann_whitney_greater(head, base)
    assert 0.001 < exact < 0.2
    assert approx == pytest.approx(exact, abs=0.005)


def test_fisher_and_binomial_match_hand_computed_values() -> None:
    assert fisher_less(8, 10, 2, 10) == pytest.approx(2126 / 184756)
    assert fisher_less(5, 10, 5, 10) > 0.5
    assert binomial_upper(8, 10) == pytest.approx(56 / 1024)
    assert binomial_upper(0, 0) == 1.0


def test_outlier_screen_drops_a_disturbed_repeat_only() -> None:
    assert screen_outliers([1.0, 1.01, 0.99, 1.02, 1.5]) == (1.0, 1.01, 0.99, 1.02)
    assert screen_outliers([1.0, 1.0, 1.0, 1.0, 1.5]) == (1.0, 1.0, 1.0, 1.0, 1.5)  # MAD 0
    assert screen_outliers([1.0, 1.01, 1.5]) == (1.0, 1.01, 1.5)  # would leave too few


# -- energy metrics ------------------------------------------------------------------


def test_measurement_noise_does_not_fail() -> None:
    checks = compare(make_result(NOISY_J), base_entry(), TEN)
    assert all(c.passed and not c.improved for c in checks)
    assert {c.metric for c in checks} == {
        "j_per_token",
        "j_per_output_token",
        "j_per_question",
        "energy_j",
        "output_tokens_per_question",
        "accuracy",
    }


def test_thirty_percent_regression_fails_with_the_full_message() -> None:
    check = by_metric(compare(make_result(scaled(BASE_J, 1.3)), base_entry(), TEN))["j_per_token"]
    assert not check.passed
    assert check.message == (
        "j_per_token regressed +30.0% (base 0.0120 J, head 0.0156 J, tolerance 10%, "
        "Mann-Whitney p=0.004, 5 vs 5 repeats)"
    )
    assert check.change == pytest.approx(0.30)
    assert (check.value, check.limit, check.tolerance) == pytest.approx((0.0156, 0.0120, 0.10))


def test_one_disturbed_baseline_repeat_does_not_hide_a_regression() -> None:
    base = (*BASE_J[:4], 200.0)  # one repeat hit by background work, above every head repeat
    check = by_metric(compare(make_result(scaled(BASE_J, 1.3)), base_entry(energy_j=base), TEN))[
        "energy_j"
    ]
    assert not check.passed
    assert check.statistic == "Mann-Whitney p=0.008, 5 vs 5 repeats (1 outlier set aside)"


def test_change_beyond_tolerance_inside_the_noise_passes() -> None:
    base = (100.0, 80.0, 130.0, 95.0, 125.0)
    # Hodges-Lehmann shift +12.5%, but the repeats overlap (Mann-Whitney p=0.23)
    head = (140.0, 90.0, 150.0, 100.0, 120.0)
    check = by_metric(compare(make_result(head), base_entry(energy_j=base), TEN))["energy_j"]
    assert check.passed
    assert check.message.startswith("energy_j +12.5% is beyond the tolerance but within noise")
    assert check.statistic is not None
    assert check.statistic.startswith("Mann-Whitney p=0.")


def test_change_within_tolerance_passes_even_when_significant() -> None:
    check = by_metric(compare(make_result(scaled(BASE_J, 1.08)), base_entry(), TEN))["energy_j"]
    assert check.passed
    assert check.message.startswith("energy_j +8.0% within tolerance")


def test_improvement_beyond_tolerance_is_reported() -> None:
    check = by_metric(compare(make_result(scaled(BASE_J, 0.7)), base_entry(), TEN))["j_per_token"]
    assert check.passed
    assert check.improved
    assert check.message.startswith("j_per_token improved -30.0% (base 0.0120 J, head 0.00840 J")
    assert check.message.endswith("; record it with --energy-update-baseline")


def test_one_sample_per_side_decides_by_tolerance_alone() -> None:
    check = by_metric(compare(make_result([150.0]), base_entry(energy_j=[120.0]), TEN))["energy_j"]
    assert not check.passed
    assert check.statistic == "1 sample per side: no noise estimate"
    assert check.message.endswith("tolerance 10%, 1 sample per side: no noise estimate)")


def test_too_few_repeats_on_one_side_say_so() -> None:
    check = by_metric(compare(make_result([150.0, 151.0]), base_entry(), TEN))["energy_j"]
    assert not check.passed
    assert check.statistic == "5 vs 2 repeats: too few for a noise estimate (need 3 per side)"


def test_absolute_floor_ignores_tiny_changes() -> None:
    base = base_entry(energy_j=[1.0, 1.01, 0.99])
    head = make_result([1.5, 1.51, 1.49])
    floored = by_metric(compare(head, base, Tolerance(0.10, abs=1.0)))["energy_j"]
    assert floored.passed
    assert "tolerance 10% and 1.00 J" in floored.message
    assert not by_metric(compare(head, base, Tolerance(0.10, abs=0.1)))["energy_j"].passed


def test_total_energy_is_not_compared_across_question_sets() -> None:
    checks = by_metric(compare(make_result(subject="virology"), base_entry(), TEN))
    assert "energy_j" not in checks
    assert "j_per_token" in checks


# -- tokens and accuracy ------------------------------------------------------------


def test_more_output_tokens_with_greedy_decoding_fail_deterministically() -> None:
    check = by_metric(compare(make_result(output_tokens=25), base_entry(), TEN))[
        "output_tokens_per_question"
    ]
    assert not check.passed
    assert check.message == (
        "output_tokens_per_question regressed +25.0% (base 20.0 tokens, head 25.0 tokens, "
        "tolerance 10%, deterministic: same 100 questions, greedy decoding)"
    )


def test_greedy_accuracy_drop_beyond_tolerance_fails_exactly() -> None:
    check = by_metric(compare(make_result(correct=44), base_entry(), TEN))["accuracy"]
    assert not check.passed
    assert check.message == (
        "accuracy regressed -12.0% (base 50.0% (50/100), head 44.0% (44/100), tolerance 10%, "
        "deterministic: same 100 questions, greedy decoding)"
    )
    assert by_metric(compare(make_result(correct=46), base_entry(), TEN))["accuracy"].passed


def test_sampled_accuracy_drop_inside_binomial_noise_passes() -> None:
    base = [i < 50 for i in range(100)]
    head = list(base)
    for i in range(8):
        head[i] = False  # 8 lost
    head[60], head[61] = True, True  # 2 gained: 44/100, McNemar p=56/1024
    check = by_metric(
        compare(
            make_result(correct=head, strategy="vote:k=5", sampled=True),
            base_entry(correct=base, strategy="vote:k=5", sampled=True),
            TEN,
        )
    )["accuracy"]
    assert check.passed
    assert "within noise" in check.message
    assert check.statistic == "McNemar exact p=0.055, 8 lost vs 2 gained of 100 questions"


def test_sampled_accuracy_collapse_fails() -> None:
    check = by_metric(
        compare(
            make_result(correct=30, strategy="vote:k=5", sampled=True),
            base_entry(strategy="vote:k=5", sampled=True),
            TEN,
        )
    )["accuracy"]
    assert not check.passed
    assert check.statistic == "McNemar exact p<0.001, 20 lost vs 0 gained of 100 questions"


def test_accuracy_on_different_questions_uses_fisher() -> None:
    check = by_metric(compare(make_result(correct=44, subject="virology"), base_entry(), TEN))[
        "accuracy"
    ]
    assert check.passed
    assert check.statistic is not None
    assert check.statistic.startswith("Fisher exact p=0.")
    assert check.statistic.endswith("100 vs 100 questions")


# -- budgets ---------------------------------------------------------------------


def test_budget_breach_message_names_value_budget_and_provenance() -> None:
    result = make_result([8400.0], estimated=True, meter="cpu-estimate")
    (check,) = check_budgets(result, Budgets(max_j_per_token=0.5))
    assert not check.passed
    assert check.message == (
        "energy per token 0.840 J exceeds budget 0.500 J "
        "(cot, smollm2-135m, meter=cpu-estimate, estimated)"
    )


def test_every_budget_is_checked() -> None:
    budgets = Budgets(
        max_j_per_token=0.05, max_j_per_question=1.0, min_accuracy=0.6, max_output_tokens=30
    )
    checks = by_metric(check_budgets(make_result(), budgets))
    assert checks["j_per_token"].passed
    assert checks["j_per_token"].message.startswith("energy per token 0.0120 J is within budget")
    assert not checks["j_per_question"].passed
    assert checks["j_per_question"].message.startswith(
        "energy per question 1.20 J exceeds budget 1.00 J (cot, smollm2-135m, meter=nvml)"
    )
    assert not checks["accuracy"].passed
    assert checks["accuracy"].message.startswith(
        "accuracy 50.0% (50/100, 95% CI 40.4%-59.6%) is below budget 60.0%"
    )
    assert checks["output_tokens_per_question"].passed


def test_unset_budgets_produce_no_checks() -> None:
    assert check_budgets(make_result(), Budgets()) == ()


# -- the verdict -----------------------------------------------------------------


def breach() -> Check:
    return budget_check(message="energy per token 1.00 J exceeds")


def regression() -> Check:
    return baseline_check(message="j_per_token regressed +30.0%")


def test_regression_fails_unless_accepted() -> None:
    assert decide([regression()]).status == "fail"
    accepted = decide([regression()], "bigger model, see #12")
    assert accepted.status == "accepted"
    assert accepted.accepted_reason == "bigger model, see #12"


def test_budget_breach_cannot_be_accepted() -> None:
    outcome = decide([breach(), regression()], "bigger model")
    assert outcome.status == "fail"
    assert outcome.accepted_reason is None
    assert failure_message(outcome) == (
        "energy per token 1.00 J exceeds; j_per_token regressed +30.0%"
    )


def test_passing_checks_pass() -> None:
    outcome = decide([], "unused reason")
    assert outcome.status == "pass"
    assert outcome.accepted_reason is None
    assert failure_message(outcome) is None


def test_judge_fails_a_regression_against_the_baseline() -> None:
    outcome = judge(
        make_result(scaled(BASE_J, 1.3)), budgets=Budgets(), entry=base_entry(), tolerance=TEN
    )
    assert outcome.baseline == "compared"
    message = failure_message(outcome)
    assert message is not None
    assert message.startswith("j_per_token regressed +30.0%")
    assert "\n" not in message


def test_budgets_tolerance_overrides_the_option() -> None:
    outcome = judge(
        make_result(scaled(BASE_J, 1.3)),
        budgets=Budgets(tolerance=Tolerance(0.5)),
        entry=base_entry(),
        tolerance=TEN,
    )
    assert outcome.status == "pass"


def test_missing_baseline_is_a_note_or_a_failure_when_strict() -> None:
    relaxed = judge(make_result(), budgets=Budgets(), entry=None, tolerance=TEN)
    assert (relaxed.status, relaxed.baseline) == ("pass", "missing")
    assert relaxed.notes == (
        "no baseline entry for this test; record one with --energy-update-baseline",
    )
    strict = judge(
        make_result(), budgets=Budgets(), entry=None, tolerance=TEN, strict_baseline=True
    )
    assert strict.status == "fail"
    assert failure_message(strict) == relaxed.notes[0]


def test_hardware_mismatch_skips_the_comparison_with_a_note() -> None:
    head = make_result(scaled(BASE_J, 2.0), fingerprint={"gpu": "H100", "meter": "nvml"})
    outcome = judge(head, budgets=Budgets(), entry=base_entry(), tolerance=TEN)
    assert (outcome.status, outcome.baseline, outcome.checks) == ("pass", "mismatch", ())
    assert "gpu: 'A100' -> 'H100'" in outcome.notes[0]


def test_estimate_against_measured_baseline_is_refused() -> None:
    head = make_result(estimated=True, meter="cpu-estimate")
    outcome = judge(head, budgets=Budgets(), entry=base_entry(), tolerance=TEN)
    assert outcome.baseline == "estimated"
    assert "estimates are never compared with measurements" in outcome.notes[0]


def test_updating_the_baseline_does_not_compare() -> None:
    outcome = judge(
        make_result(scaled(BASE_J, 2.0)),
        budgets=Budgets(),
        entry=base_entry(),
        tolerance=TEN,
        update_baseline=True,
    )
    assert (outcome.status, outcome.baseline) == ("pass", "updated")
    assert outcome.notes == ("baseline entry will be refreshed",)


def test_changed_model_is_noted_and_still_gated() -> None:
    head = make_result(scaled(BASE_J, 1.3))
    entry = base_entry()
    moved = BaselineEntry(**{**entry.__dict__, "model": "smollm2-360m"})
    outcome = judge(head, budgets=Budgets(), entry=moved, tolerance=TEN)
    assert outcome.status == "fail"
    assert "model changed since the baseline: smollm2-360m -> smollm2-135m" in outcome.notes


def test_relative_change_from_zero_is_infinite() -> None:
    check = gate.compare_values("energy_j", 0.0, 1.0, TEN, gate.Evidence(None, None, "x"))
    assert math.isinf(check.change or 0.0)
    assert not check.passed


def test_change_is_the_hodges_lehmann_shift_of_all_repeats() -> None:
    # Medians say +12%, but four of five pairs of repeats moved ~+6%: the shift
    # estimate uses every repeat, and the gate does not fail on one lucky median.
    base = (100.0, 80.0, 130.0, 95.0, 125.0)
    head = (130.0, 85.0, 150.0, 100.0, 112.0)
    check = by_metric(compare(make_result(head), base_entry(energy_j=base), TEN))["energy_j"]
    assert check.change == pytest.approx(0.0625)
    assert check.passed
