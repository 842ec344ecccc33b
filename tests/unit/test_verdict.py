"""The verdict on real runners: library bumps are compared and attributed, other
hardware is named and not compared, noise is reported as noise."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from factories import ENERGY_J, FINGERPRINT, make_result
from pytest_energy.baseline_entry import entry_from_result
from pytest_energy.budgets import Budgets
from pytest_energy.outcome import Outcome
from pytest_energy.report import baseline_state_text, comparison_summary
from pytest_energy.settings import Tolerance
from pytest_energy.verdict import judge

TOLERANCE = Tolerance(0.10)
# cpu-estimate joules of one evaluation (16 questions, direct), two sessions of 12
# repeats on a 2-core runner while two busy-loop processes kept both cores busy.
NOISY = json.loads((Path(__file__).parent / "data" / "noisy_cpu_series.json").read_text())


def verdict(base_fp: dict[str, str], head_fp: dict[str, str], scale: float = 1.0):  # type: ignore[no-untyped-def]
    entry = entry_from_result(make_result(fingerprint=base_fp))
    head = make_result(tuple(e * scale for e in ENERGY_J), fingerprint=head_fp)
    return judge(head, budgets=Budgets(), entry=entry, tolerance=TOLERANCE)


def test_a_library_bump_is_compared_and_the_change_attributed_to_it() -> None:
    base = {**FINGERPRINT, "transformers": "5.24.0"}
    outcome = verdict(base, {**base, "transformers": "5.25.0"}, scale=1.3)
    assert outcome.baseline == "compared"
    assert outcome.status == "fail"
    assert outcome.attribution == ("transformers 5.24.0 -> 5.25.0",)
    assert verdict(base, base).attribution == ()


def test_other_hardware_is_not_compared_is_counted_and_fails_under_strict_baselines() -> None:
    other = {**FINGERPRINT, "gpu": "H100"}
    outcome = verdict(FINGERPRINT, other, scale=3.0)
    assert (outcome.baseline, outcome.status) == ("mismatch", "pass")
    assert baseline_state_text(outcome) == "not compared"
    assert comparison_summary([outcome, verdict(FINGERPRINT, FINGERPRINT)]) == (
        "1 compared, 1 not compared (other hardware or setup)"
    )
    entry = entry_from_result(make_result())
    strict = judge(
        make_result(fingerprint=other),
        budgets=Budgets(),
        entry=entry,
        tolerance=TOLERANCE,
        strict_baseline=True,
    )
    assert strict.status == "fail"
    assert "not compared: the baseline was recorded on a different setup (gpu:" in strict.notes[-1]


def _cpu_result(energy: list[float], load: list[float] | float | None):  # type: ignore[no-untyped-def]
    return make_result(energy, meter="cpu-estimate", estimated=True, other_load=load)


def test_repeats_that_disagree_beyond_the_tolerance_are_too_noisy_to_compare() -> None:
    base = entry_from_result(_cpu_result([100.0, 101.0, 99.0, 100.5, 100.2], None))
    head = _cpu_result([100.0, 160.0, 70.0, 130.0, 95.0], None)
    outcome = judge(head, budgets=Budgets(), entry=base, tolerance=TOLERANCE)
    assert outcome.baseline == "noisy"
    assert outcome.status == "pass"
    assert not any(c.metric.startswith("j_") for c in outcome.checks)
    assert baseline_state_text(outcome).startswith("too noisy to compare (CV ")
    assert head.summary()["energy_cv"] is not None


def test_a_recorded_noisy_series_never_passes_or_fails_on_noise() -> None:
    """Every pair of 5-repeat windows of two recorded sessions under load: the
    sessions differ by up to 4x in their medians, and no window pair may end in a
    regression or an improvement; each is too noisy to compare."""
    first, second = NOISY["sessions"]
    windows = [
        (session["energy_j"][i : i + 5], session["other_load"][i : i + 5])
        for session in (first, second)
        for i in range(0, len(session["energy_j"]) - 4)
    ]
    assert len(windows) == 16
    for (base_e, base_l), (head_e, head_l) in itertools.permutations(windows, 2):
        entry = entry_from_result(_cpu_result(base_e, base_l))
        outcome = judge(
            _cpu_result(head_e, head_l), budgets=Budgets(), entry=entry, tolerance=TOLERANCE
        )
        assert outcome.baseline == "noisy", (base_e, head_e)
        assert not outcome.regressions
        assert not outcome.improvements


@pytest.mark.parametrize(("load", "noisy"), [(0.05, False), (0.4, False), (1.2, True)])
def test_other_load_on_the_cpu_makes_a_cpu_meter_too_noisy(load: float, noisy: bool) -> None:
    entry = entry_from_result(_cpu_result(list(ENERGY_J), 0.0))
    outcome = judge(
        _cpu_result(list(ENERGY_J), load), budgets=Budgets(), entry=entry, tolerance=TOLERANCE
    )
    assert (outcome.baseline == "noisy") is noisy
    if noisy:
        assert outcome.noise == f"other load {load:.1f} cores"
    # A GPU meter's joules are not the CPU's: host load does not stop its comparison.
    gpu = make_result(other_load=load)
    assert (
        judge(
            gpu, budgets=Budgets(), entry=entry_from_result(make_result()), tolerance=TOLERANCE
        ).baseline
        == "compared"
    )


def _prompted(fields: dict[str, object], fingerprint: str, input_tokens: int):  # type: ignore[no-untyped-def]
    prompt = {"name": "ours", "fingerprint": fingerprint, "fields": fields}
    return make_result(input_tokens=input_tokens, prompt=prompt)


def test_a_changed_prompt_is_compared_and_named_with_its_input_tokens() -> None:
    entry = entry_from_result(_prompted({"shots": 0}, "aaaa", 80))
    head = _prompted({"shots": 5}, "bbbb", 400)
    outcome = judge(head, budgets=Budgets(), entry=entry, tolerance=TOLERANCE)
    assert outcome.baseline == "compared"
    assert outcome.prompt_change == "shots 0 -> 5; input tokens per question 80 -> 400"
    same = judge(
        _prompted({"shots": 0}, "aaaa", 80), budgets=Budgets(), entry=entry, tolerance=TOLERANCE
    )
    assert same.prompt_change is None


def test_a_baseline_without_a_prompt_fingerprint_is_prompt_not_recorded() -> None:
    entry = entry_from_result(make_result())
    outcome = judge(
        _prompted({"shots": 5}, "bbbb", 80), budgets=Budgets(), entry=entry, tolerance=TOLERANCE
    )
    assert outcome.prompt_change is None
    assert outcome.baseline == "compared"
    assert not any("prompt" in note for note in outcome.notes)


def test_an_update_run_names_a_failed_test_as_not_recorded() -> None:
    """With --energy-update-baseline a failing test is no reference: its row says so."""
    outcome = judge(
        make_result(), budgets=Budgets(), entry=None, tolerance=TOLERANCE, update_baseline=True
    )
    assert baseline_state_text(outcome) == "baseline updated"
    assert outcome.notes == ("baseline entry will be recorded",)
    failed = outcome.of_failed_test()
    assert baseline_state_text(failed) == "not recorded: test failed"
    assert not any("will be recorded" in note for note in failed.notes)


def test_a_longer_prompt_fails_on_input_tokens_when_energy_is_too_noisy() -> None:
    """Under other load the joules are no evidence, but the prompt's tokens on the same
    questions are exact: five shots still fail the gate, an unchanged prompt passes."""
    entry = entry_from_result(_cpu_result(list(ENERGY_J), 0.0))

    def judged(input_tokens: int) -> Outcome:
        energy = [e * 6 for e in ENERGY_J]  # six times the joules, under load
        head = make_result(
            energy, input_tokens=input_tokens, meter="cpu-estimate", estimated=True, other_load=1.0
        )
        return judge(head, budgets=Budgets(), entry=entry, tolerance=TOLERANCE)

    longer, same = judged(400), judged(80)
    assert (longer.baseline, same.baseline) == ("noisy", "noisy")
    assert [c.metric for c in longer.regressions] == ["input_tokens_per_question"]
    assert longer.status == "fail"
    assert same.status == "pass"
    assert not any(c.metric.startswith("j_") for c in longer.checks + same.checks)
