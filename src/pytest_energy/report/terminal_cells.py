"""What a row shows in the terminal, whatever the layout.

The rich table (:mod:`pytest_energy.report.terminal_table`) and the compact
layout (:mod:`pytest_energy.report.terminal_compact`) arrange the same cells:
the verdict's colour, the joules and the meter (``~`` before an estimate), the
change against the baseline and the failed checks listed under the table.
"""

from __future__ import annotations

from pytest_energy.metrics import EvalResult
from pytest_energy.outcome import Check, Outcome
from pytest_energy.report import baseline_state_text, describe_check, format_j
from pytest_energy.report.terminal_text import clean

VERDICT_STYLES = {"pass": "green", "fail": "bold red", "accepted": "yellow"}
ESTIMATED_CAPTION = "~ estimated: joules from a model of power, not a sensor"


def energy_cells(result: EvalResult) -> tuple[str, str]:
    """J/token and J/question of ``result``, ``~`` before an estimate, ``-`` where unknown."""
    per_token, per_question = (
        _estimate_mark(result) + format_j(v) if v is not None else "-"
        for v in (result.j_per_token, result.j_per_question)
    )
    return per_token, per_question


def meter_label(result: EvalResult) -> str:
    """The meter of ``result``, ``~`` before an estimating one."""
    return _estimate_mark(result) + clean(result.meter)


def change_items(outcome: Outcome, result: EvalResult | None = None) -> list[tuple[str, str]]:
    """The "vs base" column of ``outcome``: ``(text, style)`` items, most important first.

    A ``result`` whose server also served other clients during its window says
    ``shared`` whatever the baseline did."""
    if result is not None and result.exclusive is False and outcome.baseline != "shared":
        return [("shared", "yellow"), *change_items(outcome)]
    if outcome.baseline != "compared":
        return [(clean(baseline_state_text(outcome)), "")]
    # The headline metric always; any other only when it failed (the full list,
    # improvements included, is in the markdown report and the JSON). Failures first.
    checks = [
        c
        for c in outcome.checks
        if c.kind == "baseline" and (c.metric == "j_per_token" or not c.passed)
    ]
    checks.sort(key=lambda c: c.passed)
    items = [
        (
            clean(describe_check(c)) + (" !" if not c.passed else ""),
            "red" if not c.passed else "green" if c.improved else "",
        )
        for c in checks
    ]
    return items or [("within tolerance", "")]


def failed_checks(outcome: Outcome) -> list[tuple[str, tuple[Check, ...]]]:
    """The checks of ``outcome`` listed under the table, by label: budget breaches, then
    regressions; a label comes even where it has no checks."""
    return [("over budget", outcome.budget_breaches), ("regression", outcome.regressions)]


def _estimate_mark(result: EvalResult) -> str:
    return "~" if result.estimated else ""
