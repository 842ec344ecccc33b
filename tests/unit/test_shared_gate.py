"""A window the server shared with other clients: the gate, the baseline entry and the
reports say ``shared`` and never compare its energy with an exclusive baseline."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from factories import ENERGY_J, make_result
from pytest_energy.baseline_entry import BaselineEntry, entry_from_result
from pytest_energy.budgets import Budgets
from pytest_energy.metrics import EvalResult
from pytest_energy.outcome import Outcome
from pytest_energy.report import baseline_state_text, comparison_summary
from pytest_energy.report.markdown import render_markdown
from pytest_energy.report.results import parse_document, results_document
from pytest_energy.report.terminal import render_terminal
from pytest_energy.settings import Tolerance
from pytest_energy.verdict import failure_message, judge

TOLERANCE = Tolerance(0.10)


def served(exclusive: bool | None, scale: float = 1.0, *, correct: int = 5) -> EvalResult:
    """A served result whose repeats were exclusive (or shared, or unknown)."""
    result = make_result(tuple(e * scale for e in ENERGY_J), correct=correct)
    other = None if exclusive is None else 0 if exclusive else 1200
    repeats = tuple(replace(s, exclusive=exclusive, other_tokens=other) for s in result.repeats)
    return replace(result, repeats=repeats)


def gate(head: EvalResult, base: EvalResult | None, **options: bool) -> Outcome:
    entry = entry_from_result(base) if base is not None else None
    return judge(head, budgets=Budgets(), entry=entry, tolerance=TOLERANCE, **options)


def test_a_shared_window_is_not_compared_on_energy_with_an_exclusive_baseline() -> None:
    outcome = gate(served(False, scale=2.0), served(True))  # twice the joules: no regression
    assert (outcome.baseline, outcome.status) == ("shared", "pass")
    assert not any(c.metric.startswith(("j_", "energy")) for c in outcome.checks)
    assert {c.metric for c in outcome.checks} >= {"accuracy"}  # the rest is still compared
    assert outcome.noise is None
    note = outcome.notes[-1]
    assert note.startswith("shared: the model's server also served other clients")
    assert "1,200 tokens beyond ours" in note
    assert "not compared with an exclusive baseline" in note
    assert baseline_state_text(outcome) == "shared, not compared"
    assert comparison_summary([outcome, gate(served(True), served(True))]) == (
        "1 compared, 1 not compared (server shared with other clients)"
    )


def test_a_shared_window_still_fails_on_what_other_traffic_cannot_change() -> None:
    outcome = gate(served(False, correct=1), served(True, correct=9))
    assert outcome.baseline == "shared"
    assert outcome.status == "fail"
    assert [c.metric for c in outcome.regressions] == ["accuracy"]
    assert failure_message(outcome) is not None


def test_an_exclusive_window_is_not_compared_with_a_shared_baseline_either() -> None:
    outcome = gate(served(True, scale=0.5), served(False))
    assert (outcome.baseline, outcome.status) == ("shared", "pass")
    assert not any(c.metric.startswith("j_") for c in outcome.checks)
    assert "when the baseline was recorded" in outcome.notes[-1]
    assert "re-record it with --energy-update-baseline" in outcome.notes[-1]


@pytest.mark.parametrize(("head", "base"), [(True, True), (None, True), (True, None)])
def test_exclusive_or_unknown_windows_are_compared_as_before(
    head: bool | None, base: bool | None
) -> None:
    outcome = gate(served(head, scale=1.5), served(base))
    assert outcome.baseline == "compared"
    assert outcome.status == "fail"  # +50% energy is a regression
    assert any(c.metric == "j_per_token" and not c.passed for c in outcome.checks)


def test_a_shared_window_without_a_comparison_still_says_so() -> None:
    missing = gate(served(False), None)
    assert missing.baseline == "missing"
    assert missing.notes[-1].startswith("shared: ")
    updated = gate(served(False), served(True), update_baseline=True)
    assert updated.baseline == "updated"
    assert updated.notes[-1].startswith("shared: ")


def test_the_baseline_entry_records_exclusivity_only_when_known() -> None:
    shared = entry_from_result(served(False))
    assert shared.exclusive is False
    assert shared.to_dict()["exclusive"] is False
    assert BaselineEntry.from_dict(shared.to_dict()) == shared
    unknown = entry_from_result(served(None))
    assert "exclusive" not in unknown.to_dict()  # in-process baselines do not change
    assert BaselineEntry.from_dict(unknown.to_dict()).exclusive is None
    with pytest.raises(ValueError, match="'exclusive' must be true, false or null"):
        BaselineEntry.from_dict({**shared.to_dict(), "exclusive": "no"})


def test_reports_show_shared_and_the_results_json_reads_back() -> None:
    rows = [
        (replace(served(False), test_id="t.py::test_busy"), None),
        (replace(served(True), test_id="t.py::test_alone"), None),
    ]
    judged = [(r, gate(r, served(True))) for r, _ in rows]
    for width in (80, 160):
        text = render_terminal(judged, width=width, color=False)
        assert "shared, not compared" in text
        assert text.count("shared") == 1  # the exclusive row says nothing
    markdown = render_markdown(judged)
    assert "shared, not compared \N{SECTION SIGN}" in markdown
    assert "\N{SECTION SIGN} t.py::test\\_busy: the model's server also served" in markdown
    assert "**Pass**: 2 tests within budgets. Baseline: 1 compared, 1 not compared" in markdown
    document = json.loads(json.dumps(results_document(judged)))
    assert [r["exclusive"] for r in document["results"]] == [True, False]
    assert document["results"][1]["outcome"]["baseline"] == "shared"
    parsed = parse_document(document, source="results.json")
    assert sorted(r.exclusive for r, _ in parsed.rows) == [False, True]


def test_a_shared_result_without_a_baseline_comparison_is_marked_in_both_reports() -> None:
    result = replace(served(False), test_id="t.py::test_busy")
    row = (result, gate(result, None))
    assert "shared" in render_terminal([row], width=80, color=False)
    assert "shared" in render_terminal([row], width=160, color=False)
    markdown = render_markdown([row])
    assert "shared \N{SECTION SIGN}<br>no baseline" in markdown
    assert "\N{SECTION SIGN} t.py::test\\_busy" in markdown


def test_against_a_base_branch_a_shared_side_is_not_comparable() -> None:
    head = replace(served(False), test_id="t.py::test_a")
    base = replace(served(True), test_id="t.py::test_a")
    markdown = render_markdown([(head, Outcome())], base_rows=[(base, Outcome())])
    assert "shared \N{SECTION SIGN}, not comparable" in markdown
