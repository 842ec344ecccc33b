"""Cells of the markdown report's main table: the comparison and budget columns.

Pure functions of one row (see :mod:`pytest_energy.report.markdown`). A result
whose served model's server also served other clients during its window says
``shared`` in the comparison column, whatever the baseline did, and gets a
footnote (``§``) with the reason.
"""

from __future__ import annotations

from pytest_energy.fingerprint import differing_fields
from pytest_energy.metrics import EvalResult
from pytest_energy.outcome import Outcome
from pytest_energy.report import (
    DASH,
    baseline_state_text,
    describe_check,
    format_change,
)
from pytest_energy.report.escape import escape_md

ICONS = {
    "pass": "\N{WHITE HEAVY CHECK MARK}",
    "fail": "\N{CROSS MARK}",
    "accepted": "\N{WARNING SIGN}\N{VARIATION SELECTOR-16}",
}
SHARED_MARK = "\N{SECTION SIGN}"


def change_from_outcome(outcome: Outcome, result: EvalResult | None = None) -> str:
    """The comparison column from the run's baseline checks."""
    # A prompt change is named whether or not the energy could be compared.
    prompt = (
        ["prompt changed: " + escape_md(outcome.prompt_change)] if outcome.prompt_change else []
    )
    shared = (
        [f"shared {SHARED_MARK}"]
        if result is not None and result.exclusive is False and outcome.baseline != "shared"
        else []
    )
    if outcome.baseline != "compared":
        marks = {"mismatch": " \N{DOUBLE DAGGER}", "shared": f" {SHARED_MARK}"}
        state = baseline_state_text(outcome) + marks.get(outcome.baseline, "")
        return "<br>".join([*prompt, *shared, state])
    failed = ICONS["accepted"] if outcome.status == "accepted" else ICONS["fail"]
    parts = []
    for check in outcome.checks:
        # J/token always; other metrics when they moved beyond the tolerance.
        if check.kind != "baseline" or (
            check.metric != "j_per_token" and check.passed and not check.improved
        ):
            continue
        mark = f" {failed}" if not check.passed else " (improved)" if check.improved else ""
        parts.append(escape_md(describe_check(check)) + mark)
    parts = [*prompt, *parts]
    if outcome.attribution:
        parts.append("since the baseline: " + escape_md(", ".join(outcome.attribution)))
    return "<br>".join(parts) or "within tolerance"


def change_from_base(result: EvalResult, base: EvalResult | None) -> str:
    """The comparison column against the base branch's result of the same test."""
    if base is None:
        return "new test"
    if base.estimated != result.estimated:
        return "not comparable (estimated vs measured)"
    if result.exclusive is False or base.exclusive is False:
        return f"shared {SHARED_MARK}, not comparable"
    parts = []
    for metric, label in (("j_per_token", "J/token"), ("j_per_question", "J/question")):
        head, before = result.metric(metric), base.metric(metric)
        if head is not None and before:
            parts.append(f"{label} {format_change(head / before - 1)}")
    points = (result.accuracy - base.accuracy) * 100
    parts.append(f"accuracy {points:+.1f} pt")
    if differing_fields(base.fingerprint, result.fingerprint):
        parts.append("fingerprint differs \N{DOUBLE DAGGER}")
    return "<br>".join(parts)


def budget_cell(outcome: Outcome) -> str:
    """``ok (N)`` or the budgets breached."""
    budgets = [c for c in outcome.checks if c.kind == "budget"]
    if not budgets:
        return DASH
    breaches = [c for c in budgets if not c.passed]
    if not breaches:
        return f"ok ({len(budgets)})"
    return "<br>".join(escape_md(describe_check(c)) + " \N{CROSS MARK}" for c in breaches)


def shared_footnote(result: EvalResult, outcome: Outcome) -> str:
    """The footnote of a result whose window, or whose baseline's, was shared."""
    note = next((n for n in outcome.notes if n.startswith("shared:")), None)
    detail = escape_md(note.removeprefix("shared: ")) if note else "the server was shared"
    return f"{SHARED_MARK} {escape_md(result.test_id)}: {detail}."
