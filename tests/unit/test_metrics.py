from __future__ import annotations

import json
import statistics
from dataclasses import replace

import pytest

from factories import make_result
from pytest_energy.metrics import EvalResult, QuestionRecord, RepeatSample, wilson_interval


def record(
    gold: str = "A",
    predicted: str | None = "A",
    input_tokens: int = 10,
    output_tokens: int = 1,
    subject: str = "astronomy",
) -> QuestionRecord:
    return QuestionRecord(subject, gold, predicted, input_tokens, output_tokens)


def repeat(energy_j: float, prefill_j: float = 0.0, duration_s: float = 1.0) -> RepeatSample:
    return RepeatSample(energy_j, prefill_j, energy_j - prefill_j, duration_s)


def result(
    records: tuple[QuestionRecord, ...] = (),
    repeats: tuple[RepeatSample, ...] = (),
) -> EvalResult:
    estimate = make_result(
        records=records,
        strategy="cot:max_tokens=64",
        meter="cpu-estimate",
        estimated=True,
        fingerprint={"cpu": "test cpu", "meter": "cpu-estimate"},
        test_id="tests/test_x.py::test_cot",
        details={"budget_tokens": [12, 40]},
    )
    return replace(estimate, repeats=repeats)


# -- energy per token is a ratio of sums ------------------------------------------


def test_j_per_token_is_total_joules_over_total_tokens_not_a_mean_of_ratios() -> None:
    # A short and a long question; 100 J in all.
    short, long = (
        record(input_tokens=10, output_tokens=0),
        record(input_tokens=90, output_tokens=900),
    )
    r = result((short, long), (repeat(100.0),))
    assert r.j_per_token == pytest.approx(100.0 / 1000)
    # Splitting the joules per question and averaging the per-question ratios
    # gives a very different figure; the metric must not be that one.
    mean_of_ratios = statistics.mean(
        50.0 / (q.input_tokens + q.output_tokens) for q in (short, long)
    )
    assert mean_of_ratios == pytest.approx(2.5252525)
    assert r.j_per_token != pytest.approx(mean_of_ratios)


def test_per_output_token_question_and_correct_use_totals() -> None:
    records = (
        record(gold="A", predicted="A", input_tokens=20, output_tokens=30),
        record(gold="B", predicted="C", input_tokens=40, output_tokens=10),
        record(gold="D", predicted="D", input_tokens=40, output_tokens=60),
        record(gold="C", predicted=None, input_tokens=0, output_tokens=0),
    )
    r = result(records, (repeat(50.0),))
    assert r.input_tokens == 100
    assert r.output_tokens == 100
    assert r.total_tokens == 200
    assert r.j_per_token == pytest.approx(0.25)
    assert r.j_per_output_token == pytest.approx(0.5)
    assert r.j_per_question == pytest.approx(12.5)
    assert r.j_per_correct == pytest.approx(25.0)
    assert r.output_tokens_per_question == pytest.approx(25.0)


def test_counts_correct_and_invalid_answers() -> None:
    records = (record("A", "A"), record("B", "C"), record("C", None), record("D", None))
    r = result(records)
    assert (r.questions, r.correct, r.invalid) == (4, 1, 2)
    assert r.accuracy == pytest.approx(0.25)


def test_an_invalid_answer_is_wrong() -> None:
    assert record(gold="A", predicted=None).correct is False
    assert record(gold="A", predicted=None).valid is False


def test_j_per_correct_is_none_without_a_correct_answer() -> None:
    r = result((record("A", "B"), record("C", None)), (repeat(10.0),))
    assert r.correct == 0
    assert r.j_per_correct is None
    assert r.metric("j_per_correct") is None
    assert r.samples("j_per_correct") == ()


def test_ratios_are_none_rather_than_a_division_by_zero_when_nothing_ran() -> None:
    r = result()
    assert r.accuracy == 0.0
    assert r.energy_j == 0.0
    assert r.j_per_token is None
    assert r.j_per_output_token is None
    assert r.j_per_question is None


# -- repeats ---------------------------------------------------------------------


def test_energy_is_the_median_repeat_not_the_mean() -> None:
    repeats = (repeat(10.0, 2.0, 1.0), repeat(100.0, 30.0, 9.0), repeat(12.0, 3.0, 1.5))
    r = result((record(),), repeats)
    assert r.energy_j == 12.0
    assert r.prefill_j == 3.0
    assert r.decode_j == 9.0
    assert r.duration_s == 1.5


def test_median_of_an_even_number_of_repeats_averages_the_middle_two() -> None:
    r = result((record(),), (repeat(10.0), repeat(20.0), repeat(30.0), repeat(1000.0)))
    assert r.energy_j == pytest.approx(25.0)


def test_energy_samples_keep_every_repeat_in_order() -> None:
    r = result((record(),), (repeat(3.0), repeat(1.0), repeat(2.0)))
    assert r.energy_samples_j == (3.0, 1.0, 2.0)


def test_samples_of_a_per_token_metric_divide_each_repeat_by_the_same_tokens() -> None:
    records = (record(input_tokens=30, output_tokens=10), record(input_tokens=50, output_tokens=10))
    r = result(records, (repeat(10.0), repeat(20.0), repeat(40.0)))
    assert r.samples("j_per_token") == pytest.approx((0.1, 0.2, 0.4))
    assert r.samples("j_per_output_token") == pytest.approx((0.5, 1.0, 2.0))
    assert r.samples("j_per_question") == pytest.approx((5.0, 10.0, 20.0))
    assert r.samples("energy_j") == (10.0, 20.0, 40.0)
    assert r.samples("decode_j") == (10.0, 20.0, 40.0)


def test_samples_of_a_token_or_accuracy_metric_is_the_single_value() -> None:
    r = result((record("A", "A"), record("B", "C")), (repeat(1.0), repeat(2.0)))
    assert r.samples("accuracy") == (0.5,)
    assert r.samples("output_tokens") == (2.0,)


# -- Wilson interval -----------------------------------------------------------------


def test_wilson_interval_with_no_success_starts_at_zero_and_is_not_degenerate() -> None:
    low, high = wilson_interval(0, 10)
    assert low == 0.0
    # Upper bound z^2/n / (1 + z^2/n) for 0 successes.
    z2 = 1.959964**2
    assert high == pytest.approx((z2 / 10) / (1 + z2 / 10))
    assert high == pytest.approx(0.2775, abs=1e-4)


def test_wilson_interval_with_all_successes_ends_at_one_and_is_not_degenerate() -> None:
    low, high = wilson_interval(10, 10)
    assert high == 1.0
    assert low == pytest.approx(1 - 0.2775, abs=1e-4)


@pytest.mark.parametrize("trials", [1, 4, 10, 69, 75, 200])
def test_wilson_interval_always_contains_the_observed_proportion(trials: int) -> None:
    # At 0/n and n/n the bound must be exactly 0 or 1; float rounding must not
    # leave the point estimate outside its own interval.
    for successes in range(trials + 1):
        low, high = wilson_interval(successes, trials)
        assert low <= successes / trials <= high, (successes, trials, low, high)


def test_wilson_interval_is_symmetric_around_one_half() -> None:
    low, high = wilson_interval(5, 10)
    assert low + high == pytest.approx(1.0)
    assert low == pytest.approx(0.2366, abs=1e-4)


def test_wilson_interval_without_trials_is_the_whole_range() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_wilson_interval_narrows_with_more_trials() -> None:
    small = wilson_interval(5, 10)
    large = wilson_interval(500, 1000)
    assert large[1] - large[0] < small[1] - small[0]
    assert large[0] < 0.5 < large[1]


def test_accuracy_ci_is_the_wilson_interval_of_the_records() -> None:
    r = result((record("A", "A"), record("B", "B"), record("C", "D")))
    assert r.accuracy_ci == wilson_interval(2, 3)


# -- per subject and serialisation -----------------------------------------------------


def test_subject_accuracy_is_sorted_by_subject() -> None:
    records = (
        record("A", "A", subject="virology"),
        record("A", "B", subject="anatomy"),
        record("A", "A", subject="virology"),
        record("A", "A", subject="anatomy"),
    )
    acc = result(records).subject_accuracy()
    assert list(acc) == ["anatomy", "virology"]
    assert acc == {"anatomy": (1, 2), "virology": (2, 2)}


def test_to_dict_and_from_dict_round_trip_through_json() -> None:
    records = (
        record("A", "A", 12, 40, "anatomy"),
        record("B", None, 15, 64, "virology"),
        record("C", "D", 9, 3, "virology"),
    )
    original = result(records, (repeat(3.0, 1.0, 0.5), repeat(3.5, 1.2, 0.6)))
    data = json.loads(json.dumps(original.to_dict()))
    restored = EvalResult.from_dict(data)
    assert restored == original
    assert restored.summary() == original.summary()
    assert restored.j_per_token == original.j_per_token


def test_to_dict_summary_carries_the_derived_metrics_with_units() -> None:
    r = result((record("A", "A", 10, 10),), (repeat(4.0, 1.0),))
    summary = r.to_dict()["summary"]
    assert summary["energy_j"] == 4.0
    assert summary["prefill_j"] == 1.0
    assert summary["decode_j"] == 3.0
    assert summary["j_per_token"] == pytest.approx(0.2)
    assert summary["accuracy_ci95"] == list(wilson_interval(1, 1))


def test_from_dict_accepts_a_result_without_records_or_repeats() -> None:
    data = {"model": "m", "strategy": "direct", "meter": "nvml", "estimated": False}
    r = EvalResult.from_dict(data)
    assert r.questions == 0
    assert r.repeats == ()
    assert r.test_id == ""


def test_question_set_round_trips_and_old_files_keep_theirs_in_the_details() -> None:
    r = replace(result((record(),), (repeat(1.0),)), question_set="0a68c2de2df6d993")
    assert EvalResult.from_dict(r.to_dict()).question_set == "0a68c2de2df6d993"
    old = {**r.to_dict(), "details": {"question_set": "abc"}}
    del old["question_set"]
    assert EvalResult.from_dict(old).question_set == "abc"
