from __future__ import annotations

import itertools
import random
import statistics

import pytest

from pytest_energy import gate, sequential
from pytest_energy.sequential import (
    FAMILY_ALPHA,
    SequentialRepeats,
    StopReason,
    corrected_alpha,
)
from pytest_energy.settings import Tolerance
from pytest_energy.stats import mann_whitney_greater

BASE = (100.0, 101.0, 99.0, 100.5, 99.5)
# Hovering at base x 1.1, the edge of a 10% tolerance: never clearly on either side.
AMBIGUOUS = (110.0, 109.0, 111.0, 110.5, 109.5, 110.2, 109.8, 110.1, 109.9, 110.3)


def reasons(policy: SequentialRepeats, head: tuple[float, ...]) -> list[StopReason | None]:
    return [policy.reason(head[:n]) for n in range(len(head) + 1)]


def repeats_taken(policy: SequentialRepeats, head: tuple[float, ...]) -> int:
    n = 0
    while not policy.done(head[:n]):
        n += 1
    return n


# -- when to stop ------------------------------------------------------------------


@pytest.mark.parametrize("base", [None, (), (100.0, 101.0)], ids=["new", "empty", "two"])
def test_without_a_testable_baseline_it_stops_at_the_minimum(
    base: tuple[float, ...] | None,
) -> None:
    policy = SequentialRepeats(base, 0.10)
    assert repeats_taken(policy, AMBIGUOUS) == 3
    assert policy.reason(AMBIGUOUS[:3]) == "no baseline"
    assert policy.alpha == gate.ALPHA
    assert repeats_taken(SequentialRepeats(base, 0.10, minimum=4), AMBIGUOUS) == 4


@pytest.mark.parametrize("base", [None, BASE], ids=["new", "with-baseline"])
def test_recording_the_baseline_measures_the_maximum_whatever_the_head_shows(
    base: tuple[float, ...] | None,
) -> None:
    # A clear regression would stop a checking run at 3; the reference takes all 10.
    head = (150.0, 151.0, 149.0, 150.5, 150.2, 149.8, 150.1, 149.9, 150.3, 150.4)
    policy = SequentialRepeats(base, 0.10, recording=True)
    assert reasons(policy, head) == [None] * 10 + ["recording the baseline"]
    assert policy.alpha == gate.ALPHA  # one look, at the maximum
    assert repeats_taken(SequentialRepeats(base, 0.10, maximum=6, recording=True), head) == 6


def test_a_clear_no_change_stops_at_the_first_look() -> None:
    policy = SequentialRepeats(BASE, 0.10)
    head = (100.2, 99.8, 100.1, 100.0)
    assert reasons(policy, head)[:4] == [None, None, None, "within tolerance"]
    assert repeats_taken(policy, head) == 3
    assert not policy.regressed(head[:3])


def test_a_clear_large_regression_stops_early_and_the_gate_agrees() -> None:
    policy = SequentialRepeats(BASE, 0.10)
    head = (150.0, 151.0, 149.0, 150.5)
    assert repeats_taken(policy, head) == 3
    assert policy.reason(head[:3]) == "beyond tolerance"
    assert policy.regressed(head[:3])
    evidence = gate.repeat_evidence(BASE, head[:3])
    check = gate.compare_values(
        "j_per_question",
        statistics.median(BASE),
        statistics.median(head[:3]),
        Tolerance(0.10),
        evidence,
        alpha=policy.alpha,
    )
    assert not check.passed


def test_an_ambiguous_change_is_measured_up_to_the_maximum() -> None:
    policy = SequentialRepeats(BASE, 0.10)
    assert reasons(policy, AMBIGUOUS) == [None] * 10 + ["maximum"]
    assert repeats_taken(policy, AMBIGUOUS) == 10


@pytest.mark.parametrize("maximum", [3, 4, 7])
def test_the_maximum_is_respected(maximum: int) -> None:
    policy = SequentialRepeats(BASE, 0.10, minimum=3, maximum=maximum)
    assert repeats_taken(policy, AMBIGUOUS) == maximum
    assert policy.done(AMBIGUOUS)  # more than the maximum: stop


def test_no_look_before_the_rank_test_has_its_repeats() -> None:
    # minimum 1 must not let one or two repeats decide against a baseline.
    policy = SequentialRepeats(BASE, 0.10, minimum=1)
    assert reasons(policy, (150.0, 151.0, 149.0))[:3] == [None, None, None]
    assert repeats_taken(policy, (150.0, 151.0, 149.0)) == 3


def test_a_policy_that_cannot_look_twice_keeps_the_fixed_alpha() -> None:
    assert SequentialRepeats(BASE, 0.10, minimum=5, maximum=5).alpha == gate.ALPHA
    assert SequentialRepeats(BASE, 0.10, minimum=1, maximum=2).alpha == gate.ALPHA


@pytest.mark.parametrize(
    ("minimum", "maximum", "tolerance"), [(0, 5, 0.1), (6, 5, 0.1), (3, 10, -0.1)]
)
def test_bad_settings_are_refused(minimum: int, maximum: int, tolerance: float) -> None:
    with pytest.raises(ValueError, match=r"minimum|tolerance"):
        SequentialRepeats(BASE, tolerance, minimum=minimum, maximum=maximum)


# -- the corrected threshold ---------------------------------------------------------


def test_the_corrected_alpha_is_below_the_fixed_alpha() -> None:
    assert FAMILY_ALPHA == gate.ALPHA
    policy = SequentialRepeats(BASE, 0.10)
    assert 0.02 < policy.alpha < gate.ALPHA
    assert policy.alpha == corrected_alpha(5, 3, 10)
    # More looks cost more: ten looks need a lower threshold than three.
    assert corrected_alpha(5, 3, 10) < corrected_alpha(5, 3, 5) < gate.ALPHA


def test_the_corrected_alpha_matches_a_brute_force_enumeration() -> None:
    # 3 baseline repeats, looks at 2, 3 and 4 head repeats: every ordering of 7 values.
    b, looks = 3, (2, 3, 4)

    def family_level(threshold: float) -> float:
        hits = total = 0
        for base_slots in itertools.combinations(range(7), b):
            base = [float(v) for v in base_slots]
            rest = [float(v) for v in range(7) if v not in base_slots]
            for head in itertools.permutations(rest):
                total += 1
                hits += any(mann_whitney_greater(head[:k], base) <= threshold for k in looks)
        return hits / total

    alpha = corrected_alpha(b, looks[0], looks[-1])
    attainable = sorted(
        {mann_whitney_greater(h, range(b)) for k in looks for h in _head_ranks(b, k)}
    )
    next_level = min(p for p in attainable if p > alpha)
    assert family_level(alpha) <= FAMILY_ALPHA < family_level(next_level)


def _head_ranks(b: int, k: int) -> list[list[float]]:
    """Every way ``k`` head values can sit among ``range(b)``, as half-integer positions."""
    return [[p - 0.5 for p in c] for c in itertools.combinations_with_replacement(range(b + 1), k)]


def test_large_designs_fall_back_to_bonferroni(monkeypatch: pytest.MonkeyPatch) -> None:
    corrected_alpha.cache_clear()
    monkeypatch.setattr(sequential, "MAX_STATES", 10)
    try:
        assert corrected_alpha(5, 3, 10) == pytest.approx(gate.ALPHA / 8)
    finally:
        corrected_alpha.cache_clear()


# -- the verdict mirrors the gate ------------------------------------------------------


def test_regressed_agrees_with_the_gate_at_the_corrected_alpha() -> None:
    rng = random.Random(7)
    policy_tolerance = Tolerance(0.10)
    verdicts = set()
    for _ in range(200):
        shift = rng.choice((1.0, 1.08, 1.12, 1.2))
        base = [rng.lognormvariate(0, 0.04) for _ in range(5)]
        head = [shift * rng.lognormvariate(0, 0.04) for _ in range(rng.randint(3, 10))]
        policy = SequentialRepeats(base, policy_tolerance.rel)
        check = gate.compare_values(
            "j_per_question",
            statistics.median(base),
            statistics.median(head),
            policy_tolerance,
            gate.repeat_evidence(base, head),
            alpha=policy.alpha,
        )
        assert policy.regressed(head) == (not check.passed)
        verdicts.add(check.passed)
    assert verdicts == {True, False}


# -- a small simulation ----------------------------------------------------------------


def _false_alarms(
    rng: random.Random, trials: int, tolerance: float, offset: float, outliers: float
) -> float:
    """Share of unchanged tests the policy measures into a regression."""

    def session(repeats: int) -> list[float]:
        shift = rng.lognormvariate(0, offset) if offset else 1.0
        return [
            shift * rng.lognormvariate(0, 0.03) * (1.3 if rng.random() < outliers else 1.0)
            for _ in range(repeats)
        ]

    alarms = 0
    for _ in range(trials):
        base, head = session(5), tuple(session(10))
        policy = SequentialRepeats(base, tolerance)
        alarms += policy.regressed(head[: repeats_taken(policy, head)])
    return alarms / trials


def test_optional_stopping_keeps_the_rank_tests_level(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tolerance 0 and no outlier screen: a false alarm is exactly "p <= alpha at the stop",
    # bounded by 0.05 over all looks (about 0.048 here); the uncorrected 0.05 gives about 0.09.
    monkeypatch.setattr(sequential, "screen_outliers", tuple)
    rate = _false_alarms(random.Random(20250401), 600, 0.0, 0.0, 0.0)
    assert rate <= 0.075


def test_false_alarms_stay_rare_on_noisy_sessions() -> None:
    # 3% repeat noise, 2% drift between sessions, 5% of repeats 30% slow: about 0.5%.
    rate = _false_alarms(random.Random(20250402), 400, 0.10, 0.02, 0.05)
    assert rate <= 0.03
